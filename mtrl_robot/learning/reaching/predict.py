"""Reaching trajectories from a model: targets → joint trajectories a robot accepts.

The model -- a deployable model file (:mod:`mtrl_robot.models.model_file`), or anything else with ``joint_names``
and ``offsets(targets)``, such as a training checkpoint -- gives joint offsets from the start posture at the fixed
waypoints; the positions are clipped into the robot's joint limits and the first is set to the start posture
exactly. The time stamps are spread evenly over the planner's minimum-jerk duration for the move from the start to
the final posture (:func:`~mtrl_robot.motions.reach.move_duration`), velocities come from the positions by finite
differences (zero at both ends); if the model's waypoints are not spaced exactly like the planner's, time is
stretched until every joint stays within ``LIMIT_FRACTIONS`` of its velocity limit
(:func:`~mtrl_robot.backends.trajectory.retime`).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np

from mtrl_robot.arms.chain import Arm
from mtrl_robot.backends.trajectory import JointTrajectory, retime
from mtrl_robot.learning.reaching.calibrated_kinematics import placed_on_targets
from mtrl_robot.models.model_file import load_model_file
from mtrl_robot.motions import reach as planner


class OffsetModel(Protocol):
    """Targets (n, 3) → joint offsets (n, T, dof) for the joints it names."""

    @property
    def joint_names(self) -> tuple[str, ...]: ...

    def offsets(self, targets: np.ndarray) -> np.ndarray: ...


def predict_positions(model: OffsetModel, arm: Arm, targets: np.ndarray, start: np.ndarray | None = None,
                      params: dict | None = None) -> np.ndarray:
    """(n, T, dof) joint positions for ``arm``: start + offsets, clipped into its limits, exact start point;
    ``params`` (adapted parameters of a checkpoint's learner) are passed on to ``model.offsets``. A model with
    calibrated ``kinematics`` (an adapted one) has each path's end placed on its target through them."""
    if tuple(arm.joint_names) != tuple(model.joint_names):
        raise ValueError(f"{arm.robot_id} has the joints {list(arm.joint_names)}; the model was trained for "
                         f"{list(model.joint_names)}")
    targets = np.asarray(targets, dtype=float)
    if targets.ndim != 2 or targets.shape[1] != 3 or not np.isfinite(targets).all():
        raise ValueError(f"targets must be finite flange positions of shape (n, 3) in m, got shape {targets.shape}")
    start = arm.home_q if start is None else arm.check_q(start, "start posture")
    offsets = model.offsets(targets) if params is None else model.offsets(targets, params)
    positions = start + offsets
    positions[:, 0] = start
    positions = np.clip(positions, arm.lower, arm.upper)
    kinematics = getattr(model, "kinematics", None)
    if kinematics is None:
        return positions
    return placed_on_targets(kinematics if isinstance(kinematics, Arm) else Arm.from_dict(kinematics), positions,
                             targets)


def timed(arm: Arm, positions: np.ndarray) -> JointTrajectory:
    """A (T, dof) path timed over the planner's quintic duration, stretched if needed to respect velocity limits."""
    names = arm.joint_names
    times = planner.move_duration(arm, positions[-1] - positions[0]) * unit_grid(len(positions))
    times = retime(JointTrajectory(names, times, positions), arm.velocity_limits).times
    return JointTrajectory(names, times, positions, waypoint_velocities(times, positions))


@cache
def unit_grid(count: int) -> np.ndarray:
    """``np.linspace(0, 1, count)``, read-only, built once per count (planning a target runs it after idle spells,
    when numpy's set-up for it costs more than the rest of the step)."""
    grid = np.linspace(0.0, 1.0, count)
    grid.flags.writeable = False
    return grid


def waypoint_velocities(times: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Velocities (T, dof) through the points of a path, zero at both ends: ``np.gradient(positions, times,
    axis=0)`` inside (its second-order central differences, with the same arithmetic, value for value), without
    its generic set-up, which costs planning after an idle spell more than the differences themselves."""
    h = times[1:] - times[:-1]
    velocities = np.zeros(positions.shape)
    if (h == h[0]).all():
        velocities[1:-1] = (positions[2:] - positions[:-2]) / (2.0 * h[0])
    else:
        before, after = h[:-1, None], h[1:, None]
        velocities[1:-1] = (-after / (before * (before + after)) * positions[:-2]
                            + (after - before) / (before * after) * positions[1:-1]
                            + before / (after * (before + after)) * positions[2:])
    return velocities


def predict(model: str | Path | OffsetModel, arm: Arm, targets: np.ndarray,
            start: np.ndarray | None = None) -> list[JointTrajectory]:
    """One trajectory per target (n, 3) for ``arm``, from ``start`` (default: the arm's home posture); ``model`` is
    a model file's path or a loaded model."""
    model = load_model_file(model) if isinstance(model, (str, Path)) else model
    return [timed(arm, p) for p in predict_positions(model, arm, targets, start)]
