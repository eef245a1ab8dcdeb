"""Time-stamped joint trajectories: validation against limits, reordering by name, interpolation, retiming,
and the one check of whether an arm has settled at a trajectory's goal.

Semantics follow ros2_control's joint trajectory controller: joints are matched by name, times are
``time_from_start``; with velocities given, segments are cubic Hermite, otherwise linear (scipy splines).

- **Settled at the goal** (:class:`GoalTolerance`): every joint within its position (and velocity) tolerance,
  checked from the trajectory's end on; a goal not reached ``time`` s after the end has failed. Backends use
  :meth:`GoalTolerance.default` (``GOAL_TOLERANCE`` within ``SETTLE_TIME``), the controller a goal's own.
- **Retiming**: the shortest duration a motion of fixed shape may take with every joint under
  ``LIMIT_FRACTIONS`` of its limits (:func:`shortest_duration`), and a timed trajectory slowed down uniformly
  until it is (:func:`retime`).
- **Thinning** (:func:`thinned`): fewer of a trajectory's points, with their velocities, for a smaller goal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np
from scipy.interpolate import BSpline, PPoly, make_interp_spline

START_TOLERANCE = 0.05  # rad; a first point at time 0 must be this close to the measured position
GOAL_TOLERANCE = 0.01  # rad; a trajectory succeeds when every joint settles this close to its final point
SETTLE_TIME = 1.0  # s after the trajectory's end allowed for reaching GOAL_TOLERANCE
# Slack on limit checks, so a trajectory computed exactly at a limit is not refused for round-off.
POSITION_SLACK = 1e-6  # rad
VELOCITY_SLACK = 1.02  # ×, between-waypoint velocities are finite differences


@dataclass(frozen=True)
class LimitFractions:
    """The share of each joint's velocity and acceleration limits a planned motion may use."""

    velocity: float
    acceleration: float


LIMIT_FRACTIONS = LimitFractions(velocity=0.8, acceleration=0.8)


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
        return _hermite(self.times, self.positions, self.velocities)

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


def _hermite(times: np.ndarray, positions: np.ndarray, velocities: np.ndarray) -> PPoly:
    """The cubic Hermite spline through validated points: the coefficients of scipy's ``CubicHermiteSpline``,
    built directly, without its input checks."""
    h = np.diff(times)[:, None]
    slope = np.diff(positions, axis=0) / h
    t = (velocities[:-1] + velocities[1:] - 2 * slope) / h
    return PPoly.construct_fast(np.stack((t / h, (slope - velocities[:-1]) / h - t, velocities[:-1], positions[:-1])),
                                np.ascontiguousarray(times, dtype=float))


def well_formed(traj: JointTrajectory, robot_names: Sequence[str]) -> JointTrajectory:
    """``traj`` reordered to ``robot_names``, once its names, shapes, values and times are valid (no limit
    checked)."""
    names = tuple(traj.joint_names)
    if len(set(names)) != len(names):
        raise TrajectoryError(f"duplicate joint names in {list(names)}")
    unknown = [n for n in names if n not in robot_names]
    if unknown:
        raise TrajectoryError(f"unknown joints {unknown}; this robot has {list(robot_names)}")
    missing = [n for n in robot_names if n not in names]
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
    if not np.isfinite(times).all():
        raise TrajectoryError("times contain NaN or inf")
    for label, arr in (("position", positions), ("velocity", velocities)):
        if arr is not None and not np.isfinite(arr).all():
            k, j = np.argwhere(~np.isfinite(arr))[0]
            raise TrajectoryError(f"{names[j]}: {label} at point {k} is {arr[k, j]} (NaN or inf)")
    if times[0] < 0 or (times[1:] <= times[:-1]).any():
        raise TrajectoryError("times must start at or after 0 and increase strictly")
    return JointTrajectory(names, times, positions, velocities).reordered(robot_names)


def check_trajectory(traj: JointTrajectory, limits: JointLimits) -> JointTrajectory:
    """Validate ``traj`` against ``limits`` and return it reordered to the robot's joint order."""
    ordered = well_formed(traj, limits.names)
    outside = ((ordered.positions < limits.lower - POSITION_SLACK)
               | (ordered.positions > limits.upper + POSITION_SLACK))
    if outside.any():
        j = int(np.flatnonzero(outside.any(axis=0))[0])  # the first joint in the robot's order, at its first point
        k = int(np.flatnonzero(outside[:, j])[0])
        lo, hi = limits.lower[j], limits.upper[j]
        raise TrajectoryError(f"{limits.names[j]}: position {ordered.positions[k, j]:.4f} rad at point {k} is outside "
                              f"[{lo:.4f}, {hi:.4f}]")
    vmax = limits.velocity * VELOCITY_SLACK
    if len(ordered.times) > 1:
        times, positions = ordered.times, ordered.positions
        speed = np.abs(positions[1:] - positions[:-1]) / (times[1:] - times[:-1])[:, None]
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
    return anchor(check_trajectory(traj, limits), limits, measured)


def anchor(traj: JointTrajectory, limits: JointLimits, measured: np.ndarray) -> JointTrajectory:
    """:func:`start_from` for a trajectory :func:`check_trajectory` has already validated (in ``limits``' joint
    order); a first point after time 0 is validated again with the segment from the measured position."""
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


def shortest_duration(velocity_demand: np.ndarray, velocity_limits: np.ndarray,
                      acceleration_demand: np.ndarray | None = None, acceleration_limits: np.ndarray | None = None,
                      fractions: LimitFractions = LIMIT_FRACTIONS, minimum: float = 0.0) -> np.ndarray:
    """The shortest duration (s) of motions of a fixed shape that keep every joint under ``fractions`` of its limits.

    Stretched to duration T, a motion's peak speed is ``velocity_demand / T`` and its peak acceleration
    ``acceleration_demand / T²`` (per joint, on the last axis; e.g. 15/8·|Δq| and 10/√3·|Δq| for a
    minimum-jerk move by Δq). Without acceleration demand only speed is bounded. Returns one duration per
    motion (the leading axes), at least ``minimum``.
    """
    by_velocity = velocity_demand / (fractions.velocity * velocity_limits)
    if acceleration_demand is not None:
        by_velocity = np.maximum(by_velocity,
                                 np.sqrt(acceleration_demand / (fractions.acceleration * acceleration_limits)))
    return np.maximum(by_velocity.max(axis=-1), minimum)


def segment_extremes(trajectory: JointTrajectory) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What the controller commands within each segment, (segments, dof) each: the peak |velocity|, the
    acceleration at the segment's start and at its end, and the (constant) jerk.

    With velocities the segments are cubic Hermite: velocity quadratic (extreme at an end or at its one
    stationary point), acceleration linear, jerk constant. Without, they are linear: constant velocity, no
    acceleration or jerk inside (the steps at the waypoints are the caller's to price).
    """
    times, positions = trajectory.times, trajectory.positions
    h = (times[1:] - times[:-1])[:, None]
    dp = positions[1:] - positions[:-1]
    if trajectory.velocities is None:
        zero = np.zeros(dp.shape)
        return np.abs(dp) / h, zero, zero, zero
    v0, v1 = trajectory.velocities[:-1], trajectory.velocities[1:]
    c2 = (3 * dp / h - 2 * v0 - v1) / h  # p(s) = p0 + v0 s + c2 s² + c3 s³ on [0, h]
    c3 = (v0 + v1 - 2 * dp / h) / h**2
    s = np.divide(-c2, 3 * c3, out=np.zeros(c2.shape), where=c3 != 0)
    stationary = np.where((s > 0) & (s < h), np.abs(v0 + 2 * c2 * s + 3 * c3 * s**2), 0.0)
    speed = np.maximum(np.maximum(np.abs(v0), np.abs(v1)), stationary)
    start_acceleration = 2 * c2
    return speed, start_acceleration, start_acceleration + 6 * c3 * h, 6 * c3


def retime(trajectory: JointTrajectory, velocity_limits: np.ndarray, acceleration_limits: np.ndarray | None = None,
           fractions: LimitFractions = LIMIT_FRACTIONS) -> JointTrajectory:
    """``trajectory`` slowed down uniformly (never sped up) until every segment keeps under ``fractions`` of the
    limits (given in the trajectory's joint order).

    With velocities, the bounds hold over the whole of each cubic Hermite segment the controller runs
    (:func:`segment_extremes`): its peak speed and its acceleration (extreme at the ends). Without, segments are
    linear: their speed is bounded, and ``acceleration_limits`` cannot apply (the velocity steps at every waypoint
    whatever the timing).
    """
    if len(trajectory.times) < 2:
        return trajectory
    speed, start_acceleration, end_acceleration, _ = segment_extremes(trajectory)
    acceleration = None
    if trajectory.velocities is not None and acceleration_limits is not None:
        acceleration = np.maximum(np.abs(start_acceleration), np.abs(end_acceleration))
    scale = float(shortest_duration(speed, velocity_limits, acceleration,
                                    None if acceleration is None else acceleration_limits, fractions,
                                    minimum=1.0).max())
    velocities = None if trajectory.velocities is None else trajectory.velocities / scale
    return JointTrajectory(trajectory.joint_names, trajectory.times * scale, trajectory.positions, velocities)


def thinned(trajectory: JointTrajectory, points: int) -> JointTrajectory:
    """``points`` of ``trajectory``'s points spread evenly over them, the first and the last included, with their
    velocities: the cubic Hermite segments through them are what a controller runs. Fewer points make a smaller
    goal; the segments between them follow the trajectory's own velocities, not its intermediate points. A trajectory
    with no more points, or without velocities, is returned as it is."""
    if points < 2:
        raise ValueError(f"a thinned trajectory needs at least 2 points, got {points}")
    if len(trajectory.times) <= points or trajectory.velocities is None:
        return trajectory
    index = _thinning_index(len(trajectory.times), points)
    return JointTrajectory(trajectory.joint_names, trajectory.times[index], trajectory.positions[index],
                           trajectory.velocities[index])


@cache
def _thinning_index(count: int, points: int) -> np.ndarray:
    """Indices of ``points`` of ``count`` points spread evenly, read-only, built once per pair (a policy thins every
    trajectory it plans the same way)."""
    index = np.round(np.linspace(0, count - 1, points)).astype(int)
    index.flags.writeable = False
    return index


def tolerance_violation(names: Sequence[str], position_error: np.ndarray, position_tolerance: np.ndarray,
                        velocity_error: np.ndarray | None = None, velocity_tolerance: np.ndarray | None = None,
                        kind: str = "goal") -> str | None:
    """The first joint whose error exceeds its (non-zero) ``kind`` tolerance, described; None if all are within."""
    checks = [("position", "rad", position_error, position_tolerance)]
    if velocity_error is not None:
        checks.append(("velocity", "rad/s", velocity_error, velocity_tolerance))
    for label, unit, error, tolerance in checks:
        tolerance = np.broadcast_to(tolerance, np.shape(error))
        over = np.flatnonzero((tolerance > 0) & ~(np.abs(error) <= tolerance))  # NaN counts as outside
        if over.size:
            j = over[0]
            return (f"{names[j]}: {label} error {error[j]:+.4g} {unit} exceeds the {kind} tolerance "
                    f"{tolerance[j]:.4g} {unit}")
    return None


@dataclass(frozen=True)
class GoalTolerance:
    """When an arm has settled at a trajectory's goal: every joint within ``position`` (rad) and ``velocity``
    (rad/s) of the final point (per joint; 0 is not checked) no later than ``time`` s after the trajectory's end
    (0: no deadline)."""

    position: np.ndarray
    velocity: np.ndarray
    time: float

    @classmethod
    def default(cls, dof: int) -> GoalTolerance:
        """``GOAL_TOLERANCE`` on every joint's position within ``SETTLE_TIME``, as every backend asks."""
        return cls(np.full(dof, GOAL_TOLERANCE), np.zeros(dof), SETTLE_TIME)

    def violation(self, names: Sequence[str], position_error: np.ndarray,
                  velocity_error: np.ndarray | None = None) -> str | None:
        """The first joint not settled, described; None once every joint is within its tolerances."""
        return tolerance_violation(names, position_error, self.position, velocity_error, self.velocity, "goal")

    def verdict(self, names: Sequence[str], late: float, position_error: np.ndarray,
                velocity_error: np.ndarray | None = None) -> tuple[bool, str] | None:
        """``late`` s after the trajectory's end: (True, ...) once settled, (False, why) once past the deadline,
        None while still settling."""
        problem = self.violation(names, position_error, velocity_error)
        if problem is None:
            return True, "goal reached"
        if self.time > 0 and late > self.time:
            return False, f"{problem} {late:.3f} s after the trajectory's end (allowed: {self.time:.3f} s)"
        return None
