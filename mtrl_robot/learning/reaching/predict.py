"""Reaching trajectories from a (possibly adapted) checkpoint: targets → joint trajectories a robot accepts.

The model gives joint offsets from the start posture at the fixed waypoints; the positions are clipped into
the robot's joint limits and the first is set to the start posture exactly. The time stamps come from the
planner's minimum-jerk time scaling for the move from the start to the final posture
(:func:`~mtrl_robot.motions.reach.time_scale`), velocities from the positions by finite differences (zero at
both ends); if the model's waypoints are not spaced exactly like the planner's, time is stretched until every
joint stays within ``planner.VELOCITY_FRACTION`` of its velocity limit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mtrl_robot.arms.chain import Arm
from mtrl_robot.backends.trajectory import JointTrajectory
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.checkpoint import ReachingCheckpoint
from mtrl_robot.meta import MAML
from mtrl_robot.motions import reach as planner


def predict_offsets(state: ReachingCheckpoint, targets: np.ndarray, params: dict | None = None) -> np.ndarray:
    """(n, 3) targets → (n, T, dof) joint offsets from the start posture; ``params`` from ``learner.adapt``."""
    x = torch.as_tensor(np.asarray(targets, dtype=np.float32).reshape(-1, 3))
    learner: MAML = state.learner
    with torch.no_grad():
        if params is not None:
            flat = learner.predict(params, x)
        else:
            flat = state.model(state.model.inputs(x, state.task_latent))
        return state.model.offsets(flat).double().numpy()


def predict_positions(state: ReachingCheckpoint, arm: Arm, targets: np.ndarray, start: np.ndarray | None = None,
                      params: dict | None = None) -> np.ndarray:
    """(n, T, dof) joint positions for ``arm``: start + offsets, clipped into its limits, exact start point."""
    if tuple(arm.joint_names) != state.joint_names:
        raise ValueError(f"{arm.robot_id} has the joints {list(arm.joint_names)}; the model was trained for "
                         f"{list(state.joint_names)}")
    targets = np.asarray(targets, dtype=float)
    if targets.ndim != 2 or targets.shape[1] != 3 or not np.isfinite(targets).all():
        raise ValueError(f"targets must be finite flange positions of shape (n, 3) in m, got shape {targets.shape}")
    start = arm.home_q if start is None else arm.check_q(start, "start posture")
    positions = start + predict_offsets(state, targets, params)
    positions[:, 0] = start
    return np.clip(positions, arm.lower, arm.upper)


def timed(arm: Arm, positions: np.ndarray) -> JointTrajectory:
    """A (T, dof) path timed by the planner's quintic scaling, stretched if needed to respect velocity limits."""
    times = planner.time_scale(arm, positions[None, 0], positions[None, -1], len(positions))[0][0]
    limit = planner.VELOCITY_FRACTION * arm.velocity_limits
    speed = np.abs(np.diff(positions, axis=0)) / np.diff(times)[:, None]
    times = times * max(1.0, float((speed / limit).max()))
    velocities = np.gradient(positions, times, axis=0)
    velocities[[0, -1]] = 0.0
    return JointTrajectory(arm.joint_names, times, positions, velocities)


def predict(checkpoint: str | Path | ReachingCheckpoint, arm: Arm, targets: np.ndarray,
            start: np.ndarray | None = None) -> list[JointTrajectory]:
    """One trajectory per target (n, 3) for ``arm``, from ``start`` (default: the arm's home posture)."""
    state = checkpoint if isinstance(checkpoint, ReachingCheckpoint) else checkpoints.load(checkpoint)
    return [timed(arm, p) for p in predict_positions(state, arm, targets, start)]
