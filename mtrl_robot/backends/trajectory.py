"""Time-stamped joint trajectories: validation against limits, reordering by name, interpolation.

Semantics follow ros2_control's joint trajectory controller: joints are matched by name, times are
``time_from_start``; with velocities given, segments are cubic Hermite, otherwise linear (scipy splines).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.interpolate import BSpline, CubicHermiteSpline, PPoly, make_interp_spline

START_TOLERANCE = 0.05  # rad; a first point at time 0 must be this close to the measured position
GOAL_TOLERANCE = 0.01  # rad; a trajectory succeeds when every joint settles this close to its final point
SETTLE_TIME = 1.0  # s after the trajectory's end allowed for reaching GOAL_TOLERANCE
# Slack on limit checks, so a trajectory computed exactly at a limit is not refused for round-off.
POSITION_SLACK = 1e-6  # rad
VELOCITY_SLACK = 1.02  # ×, between-waypoint velocities are finite differences


class TrajectoryError(ValueError):
    """A trajectory the robot refuses to execute; the message names the joint and the limit."""


@dataclass(frozen=True)
class JointLimits:
    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    acceleration: np.ndarray | None = None  # rad/s²; None: not known


@dataclass(frozen=True)
class JointState:
    names: tuple[str, ...]
    positions: np.ndarray
    velocities: np.ndarray
    stamp: float  # seconds, on the backend's clock


@dataclass(frozen=True)
class JointTrajectory:
    joint_names: tuple[str, ...]
    times: np.ndarray  # (T,) seconds from start, strictly increasing
    positions: np.ndarray  # (T, n)
    velocities: np.ndarray | None = None  # (T, n)

    @property
    def duration(self) -> float:
        return float(self.times[-1])

    def reordered(self, names: Sequence[str]) -> JointTrajectory:
        """The same trajectory with columns in the order of ``names`` (all must be present)."""
        index = [self.joint_names.index(n) for n in names]
        vel = None if self.velocities is None else self.velocities[:, index]
        return JointTrajectory(tuple(names), self.times, self.positions[:, index], vel)

    @cached_property
    def _curve(self) -> BSpline | PPoly:
        """The interpolating spline, built once per trajectory (backends sample it every control step)."""
        if self.velocities is None:
            return make_interp_spline(self.times, self.positions, k=1)
        return CubicHermiteSpline(self.times, self.positions, self.velocities)

    def sample(self, t: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions and velocities at ``t`` seconds from start (a scalar or an array of times).

        The arm is held still before the first point and from the last point on.
        """
        t = np.asarray(t, dtype=float)
        times = np.atleast_1d(t)
        if len(self.times) == 1:
            positions = np.repeat(self.positions[:1], len(times), axis=0)
            velocities = np.zeros_like(positions)
        else:
            inside = np.clip(times, self.times[0], self.times[-1])
            positions, velocities = self._curve(inside), self._curve(inside, 1)
            velocities[(times <= self.times[0]) | (times >= self.times[-1])] = 0.0
        return (positions, velocities) if t.ndim else (positions[0], velocities[0])


def check_trajectory(traj: JointTrajectory, limits: JointLimits) -> JointTrajectory:
    """Validate ``traj`` against ``limits`` and return it reordered to the robot's joint order."""
    names = tuple(traj.joint_names)
    if len(set(names)) != len(names):
        raise TrajectoryError(f"duplicate joint names in {list(names)}")
    unknown = [n for n in names if n not in limits.names]
    if unknown:
        raise TrajectoryError(f"unknown joints {unknown}; this robot has {list(limits.names)}")
    missing = [n for n in limits.names if n not in names]
    if missing:
        raise TrajectoryError(f"trajectory is missing joints {missing}")
    times = np.asarray(traj.times, dtype=float)
    positions = np.asarray(traj.positions, dtype=float)
    if times.ndim != 1 or len(times) == 0:
        raise TrajectoryError("trajectory has no points")
    if positions.shape != (len(times), len(names)):
        raise TrajectoryError(f"positions must have shape {(len(times), len(names))}, got {positions.shape}")
    velocities = None if traj.velocities is None else np.asarray(traj.velocities, dtype=float)
    if velocities is not None and velocities.shape != positions.shape:
        raise TrajectoryError(f"velocities must have shape {positions.shape}, got {velocities.shape}")
    if not np.all(np.isfinite(times)):
        raise TrajectoryError("times contain NaN or inf")
    for label, arr in (("position", positions), ("velocity", velocities)):
        if arr is not None and not np.all(np.isfinite(arr)):
            k, j = np.argwhere(~np.isfinite(arr))[0]
            raise TrajectoryError(f"{names[j]}: {label} at point {k} is {arr[k, j]} (NaN or inf)")
    if times[0] < 0 or np.any(np.diff(times) <= 0):
        raise TrajectoryError("times must start at or after 0 and increase strictly")
    ordered = JointTrajectory(names, times, positions, velocities).reordered(limits.names)
    for j, name in enumerate(limits.names):
        col = ordered.positions[:, j]
        lo, hi = limits.lower[j], limits.upper[j]
        bad = np.flatnonzero((col < lo - POSITION_SLACK) | (col > hi + POSITION_SLACK))
        if bad.size:
            k = bad[0]
            raise TrajectoryError(f"{name}: position {col[k]:.4f} rad at point {k} is outside [{lo:.4f}, {hi:.4f}]")
    vmax = limits.velocity * VELOCITY_SLACK
    if len(times) > 1:
        dt = np.diff(ordered.times)[:, None]
        speed = np.abs(np.diff(ordered.positions, axis=0)) / dt
        if ordered.velocities is not None:
            speed = np.maximum(speed, np.abs(ordered.velocities[1:]))
        over = np.argwhere(speed > vmax)
        if over.size:
            k, j = over[0]
            raise TrajectoryError(f"{limits.names[j]}: velocity {speed[k, j]:.3f} rad/s between points {k} and {k + 1} "
                                  f"exceeds the limit {limits.velocity[j]:.3f} rad/s")
    return ordered


def start_from(traj: JointTrajectory, limits: JointLimits, measured: np.ndarray) -> JointTrajectory:
    """Validate ``traj`` and anchor it at the measured position, as ros2_control does.

    A first point after time 0 is reached from the measured position (the added segment must respect
    the limits too); a first point at time 0 must lie within ``START_TOLERANCE`` of it.
    """
    traj = check_trajectory(traj, limits)
    if traj.times[0] > 0:
        start = np.clip(measured, limits.lower, limits.upper)
        velocities = None if traj.velocities is None else np.vstack([np.zeros(len(start)), traj.velocities])
        anchored = JointTrajectory(traj.joint_names, np.concatenate([[0.0], traj.times]),
                                   np.vstack([start, traj.positions]), velocities)
        try:
            return check_trajectory(anchored, limits)
        except TrajectoryError as exc:
            raise TrajectoryError(f"moving from the current position to the first point: {exc}") from None
    gap = np.abs(traj.positions[0] - measured)
    j = int(np.argmax(gap))
    if gap[j] > START_TOLERANCE:
        raise TrajectoryError(f"{traj.joint_names[j]}: first point {traj.positions[0, j]:.4f} rad at time 0 is "
                              f"{gap[j]:.4f} rad from the current position {measured[j]:.4f} "
                              f"(limit {START_TOLERANCE}); give it a time_from_start > 0")
    return traj
