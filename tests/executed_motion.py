"""What a controller commands and what an arm executed, measured independently of the safety layer's bounds.

- :func:`commanded_peaks`: the reference for the safety layer. The controller samples the trajectory's
  interpolation (:meth:`JointTrajectory.sample`) once per control period; velocity, acceleration and jerk are
  the first, second and third differences of those commanded positions, over a clock of any phase.
- :func:`executed_peaks`: peak |velocity| and |acceleration| per joint of a recorded joint-state stream (the
  velocity each message reports, and its difference between messages), as ``/joint_states`` shows them.
- :func:`run_in_mujoco`: a trajectory executed by the in-process MuJoCo arm (the simulated arm node's physics),
  sampled at the joint-state rate of the ``sim_panda`` preset.
"""

from __future__ import annotations

import numpy as np

from mtrl_robot.backends.mujoco_backend import MujocoBackend
from mtrl_robot.backends.trajectory import JointTrajectory

REST_AFTER = 0.3  # s recorded after a trajectory's end (the arm settles into its hold)


def commanded_peaks(trajectory: JointTrajectory, period: float, phase: float = 0.0) -> dict[str, np.ndarray]:
    """Peak |v|, |a|, |j| per joint of the positions the controller commands every ``period`` s (clock offset
    ``phase`` in [0, period)), the arm at rest before time 0 and held after the end; ``trajectory`` starts at 0."""
    ticks = np.arange(-4, int(np.ceil(trajectory.duration / period)) + 5) * period + phase
    positions = trajectory.sample(ticks)[0]
    velocity = np.diff(positions, axis=0) / period
    acceleration = np.diff(velocity, axis=0) / period
    jerk = np.diff(acceleration, axis=0) / period
    return {name: np.abs(values).max(axis=0) for name, values in
            (("velocity", velocity), ("acceleration", acceleration), ("jerk", jerk))}


def executed_peaks(stamps: np.ndarray, velocities: np.ndarray, baseline: float = 0.0) -> dict[str, np.ndarray]:
    """Peak |velocity| and |acceleration| per joint from joint states: stamps (T,) s, velocities (T, n) rad/s.

    Accelerations are velocity differences between each message and the first one at least ``baseline`` s later
    (the next one with 0).
    """
    later = np.maximum(np.searchsorted(stamps, stamps + baseline, side="left"), np.arange(len(stamps)) + 1)
    valid = later < len(stamps)
    first, second = np.flatnonzero(valid), later[valid]
    acceleration = (velocities[second] - velocities[first]) / (stamps[second] - stamps[first])[:, None]
    return {"velocity": np.abs(velocities).max(axis=0), "acceleration": np.abs(acceleration).max(axis=0)}


def run_in_mujoco(backend: MujocoBackend, trajectory: JointTrajectory, state_period: float) -> dict[str, np.ndarray]:
    """Execute ``trajectory`` (anchored at the arm's state, joints in the arm's order) and return the executed
    peaks from joint states every ``state_period`` s (a whole number of control steps)."""
    every = round(state_period / backend.control_dt)
    backend.send_trajectory(trajectory)
    steps = int(np.ceil((trajectory.duration + REST_AFTER) / state_period))
    stamps, velocities = [], []
    for _ in range(steps):
        backend.step(every)
        state = backend.read_state()
        stamps.append(state.stamp)
        velocities.append(state.velocities)
    return executed_peaks(np.array(stamps), np.array(velocities))
