"""Trajectories that once got past the limit checks (each accepted by the old waypoint-only checks), and the
same paths timed to pass the bound on what the controller commands.

Each moves joint ``j`` only, from ``start``, for velocity limit ``v`` and acceleration limit ``a`` of that joint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from mtrl_robot.backends.limits import MotionLimits, motion_peaks
from mtrl_robot.backends.trajectory import JointTrajectory


def _moving(start: np.ndarray, j: int, offsets: Sequence[float]) -> np.ndarray:
    positions = np.repeat(start[None, :], len(offsets), axis=0)
    positions[:, j] += offsets
    return positions


def _velocities(n_joints: int, j: int, values: Sequence[float]) -> np.ndarray:
    velocities = np.zeros((len(values), n_joints))
    velocities[:, j] = values
    return velocities


def cubic_overshoot(names: tuple[str, ...], start: np.ndarray, j: int, v: float) -> JointTrajectory:
    """Rest to rest in 1 s, averaging 0.999 v: the cubic peaks at 1.5 × 0.999 v."""
    return JointTrajectory(names, np.array([0.0, 1.0]), _moving(start, j, [0.0, 0.999 * v]),
                           np.zeros((2, len(names))))


def three_cubics(names: tuple[str, ...], start: np.ndarray, j: int, v: float, a: float) -> JointTrajectory:
    """Rest → -v, a middle segment averaging +0.999 v between end velocities -v (its end accelerations exactly
    ``a``), -v → rest: the middle cubic peaks at about 2 v."""
    ramp, middle = 2 * v / a, 11.994 * v / a
    offsets = np.cumsum([0.0, -v * ramp / 2, 0.999 * v * middle, -v * ramp / 2])
    return JointTrajectory(names, np.cumsum([0.0, ramp, middle, ramp]), _moving(start, j, offsets),
                           _velocities(len(names), j, [0.0, -v, -v, 0.0]))


def position_only(names: tuple[str, ...], start: np.ndarray, j: int, v: float) -> JointTrajectory:
    """Two waypoints without velocities, 0.95 v for 2 s: the linear segment steps the velocity at both ends."""
    return JointTrajectory(names, np.array([0.0, 2.0]), _moving(start, j, [0.0, 1.9 * v]))


def at_rest_between(trajectory: JointTrajectory) -> JointTrajectory:
    """The same waypoints with zero velocities at each (rest-to-rest cubic segments)."""
    return replace(trajectory, velocities=np.zeros_like(trajectory.positions))


def slowed_to_fit(trajectory: JointTrajectory, limits: MotionLimits) -> JointTrajectory:
    """``trajectory`` slowed down uniformly (times × s, velocities / s) just enough to pass ``limits``."""
    scale = 1.0
    while True:
        timed = replace(trajectory, times=trajectory.times * scale, velocities=trajectory.velocities / scale)
        peaks = motion_peaks(timed, limits.control_period)
        ratio = max(float(np.max(peaks.peak(q) / getattr(limits, q))) for q in ("velocity", "acceleration", "jerk"))
        if ratio <= 1.0:
            return timed
        scale *= min(ratio, 1.05)
