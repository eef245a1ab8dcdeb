"""The motion a joint trajectory controller commands between waypoints, checked against velocity, acceleration
and jerk limits: the one check of both the safety layer and the simulated controller.

The controller (ros2_control's joint trajectory controller, and :mod:`mtrl_robot.backends.controller`) samples
:meth:`JointTrajectory.sample <mtrl_robot.backends.trajectory.JointTrajectory.sample>` once per control period:
cubic Hermite segments where velocities are given, linear segments where only positions are, the arm at rest
before the first point and from the last point on.

- **Within a segment** the extremes are closed-form: on a cubic the velocity is quadratic (extreme at the ends or
  at the one stationary point), the acceleration linear (extreme at an end) and the jerk constant; on a linear
  segment the velocity is constant.
- **At a waypoint** the interpolation may not be smooth: a linear segment's velocity differs from its neighbour's,
  a cubic's acceleration differs from its neighbour's, and the arm leaves rest and returns to it. The controller
  makes such a change within one control period, so a velocity step Δv counts as an acceleration of
  \\|Δv\\| / period and a jerk of \\|Δv\\| / period², an acceleration step Δa as a jerk of \\|Δa\\| / period, on
  top of the largest value of the segments next to it. Steps less than ``WINDOW`` periods apart are added up,
  because the controller's successive commands see them together.

These bounds are never below the finite differences of the positions the controller commands, whatever the
phase of its clock; :func:`check_motion` refuses a trajectory whose bound exceeds a limit, naming the joint, the
segment or waypoint, the peak and the limit. The trajectory is taken as the controller runs it: starting at time 0
(anchored at the measured position), the arm at rest before. Not covered: the jump to a first point at time 0
that differs from where the arm is (the safety layer bounds that distance by its ``max_start_deviation``), and a
trajectory that preempts a moving arm (checked as if from rest).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mtrl_robot.backends.trajectory import JointTrajectory, TrajectoryError, segment_extremes

TOLERANCE = 1e-6  # relative slack, so that a trajectory timed exactly at a limit is not refused for round-off
WINDOW = 3  # control periods spanned by the third difference of commanded positions (jerk)
QUANTITIES = (("velocity", "rad/s"), ("acceleration", "rad/s²"), ("jerk", "rad/s³"))


@dataclass(frozen=True)
class MotionLimits:
    """Per-joint limits (inf: not limited) and the controller's period (s), which prices steps at waypoints."""

    velocity: np.ndarray  # rad/s
    acceleration: np.ndarray  # rad/s²
    jerk: np.ndarray  # rad/s³
    control_period: float  # s

    def __post_init__(self) -> None:
        for name, _ in QUANTITIES:
            values = np.asarray(getattr(self, name), dtype=float)
            if values.ndim != 1 or np.any(np.isnan(values)) or np.any(values <= 0):
                raise ValueError(f"{name} limits must be positive numbers (inf: not limited), got {values}")
            object.__setattr__(self, name, values)
        if not np.isfinite(self.control_period) or self.control_period <= 0:
            raise ValueError(f"the control period must be a positive number of seconds, got {self.control_period}")


@dataclass(frozen=True)
class MotionPeaks:
    """Bounds on |velocity|, |acceleration| and |jerk| per joint: (segments, n) within segments, (points, n) at
    waypoints; ``velocity_steps`` and ``acceleration_steps`` (points, n) are the steps priced at each waypoint
    (its own and those within ``WINDOW`` control periods of it)."""

    segment: dict[str, np.ndarray]
    point: dict[str, np.ndarray]
    velocity_steps: np.ndarray
    acceleration_steps: np.ndarray

    def peak(self, quantity: str) -> np.ndarray:
        """The largest bound per joint over the whole trajectory."""
        return np.maximum(self.segment[quantity].max(axis=0, initial=0.0), self.point[quantity].max(axis=0))


def motion_peaks(trajectory: JointTrajectory, control_period: float) -> MotionPeaks:
    """Bounds of what the controller commands for ``trajectory`` (validated: finite, times increasing)."""
    times, (count, n) = trajectory.times, trajectory.positions.shape
    seg_v, seg_a0, seg_a1, seg_j = segment_extremes(trajectory)
    v_left, v_right = np.zeros((count, n)), np.zeros((count, n))  # velocity arriving at each point and leaving it
    if trajectory.velocities is None:
        positions = trajectory.positions
        v_left[1:] = v_right[:-1] = (positions[1:] - positions[:-1]) / (times[1:] - times[:-1])[:, None]
    else:
        v_left[1:], v_right[:-1] = trajectory.velocities[1:], trajectory.velocities[:-1]
    a_left, a_right = np.zeros((count, n)), np.zeros((count, n))  # acceleration arriving and leaving
    a_left[1:], a_right[:-1] = seg_a1, seg_a0
    velocity_steps = np.abs(v_right - v_left)
    acceleration_steps = np.abs(a_right - a_left)
    segment = {"velocity": seg_v, "acceleration": np.maximum(np.abs(seg_a0), np.abs(seg_a1)),
               "jerk": np.abs(seg_j)}
    # At each point: the steps within WINDOW periods of it, plus the largest value of the segments overlapping
    # that window (the commanded differences mix the smooth motion nearby with the steps).
    reach = WINDOW * control_period
    first = np.searchsorted(times, times - reach, side="right")
    last = np.searchsorted(times, times + reach, side="left") - 1
    dv_sum = _window_sums(velocity_steps, first, last)
    da_sum = _window_sums(acceleration_steps, first, last)
    near_a = _window_max(segment["acceleration"], first, last)
    near_j = _window_max(segment["jerk"], first, last)
    point = {"velocity": np.maximum(np.abs(v_left), np.abs(v_right)),
             "acceleration": dv_sum / control_period + near_a,
             "jerk": dv_sum / control_period**2 + da_sum / control_period + near_j}
    if len(times) == 1:
        point["velocity"] = np.zeros((1, n))
    return MotionPeaks(segment, point, dv_sum, da_sum)


def _window_sums(steps: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Row k: the sum of ``steps`` rows first[k] … last[k]."""
    total = np.zeros((len(steps) + 1, steps.shape[1]))
    np.cumsum(steps, axis=0, out=total[1:])
    return total[last + 1] - total[first]


def _window_max(segment: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Row k: the largest ``segment`` row among the segments touching points first[k] … last[k]."""
    n_segments = len(segment)
    out = np.zeros((len(first), segment.shape[1]))
    if n_segments == 0:
        return out
    lo, hi = np.maximum(first - 1, 0), np.minimum(last, n_segments - 1)
    if (hi - lo <= 1).all():  # windows of at most two segments (waypoints farther apart than the window)
        return np.maximum(segment[lo], segment[hi])
    # Range maxima from a sparse table: level i holds the maxima of runs of 2**i segments.
    levels = [segment]
    while 2 ** len(levels) <= n_segments:
        half = 2 ** (len(levels) - 1)
        levels.append(np.maximum(levels[-1][:-half], levels[-1][half:]))
    level = np.floor(np.log2(hi - lo + 1)).astype(int)
    for i in np.unique(level):
        rows = np.flatnonzero(level == i)
        out[rows] = np.maximum(levels[i][lo[rows]], levels[i][hi[rows] - 2 ** i + 1])
    return out


def _waypoint(k: int) -> str:
    return f"waypoint {k}"


def check_motion(trajectory: JointTrajectory, limits: MotionLimits, names: tuple[str, ...] | None = None,
                 point: Callable[[int], str] = _waypoint) -> MotionPeaks:
    """Raise :class:`~mtrl_robot.backends.trajectory.TrajectoryError` unless what the controller commands for
    ``trajectory`` stays within ``limits``; return the bounds. ``point`` names waypoint k in messages."""
    names = trajectory.joint_names if names is None else names
    peaks = motion_peaks(trajectory, limits.control_period)
    for quantity, unit in QUANTITIES:
        limit = getattr(limits, quantity)
        for where, values in (("segment", peaks.segment[quantity]), ("point", peaks.point[quantity])):
            ratio = values / limit
            if values.size == 0 or ratio.max() <= 1 + TOLERANCE:
                continue
            k, j = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
            value, bound = values[k, j], limit[j]
            text = (f"{names[j]}: {quantity} {value:.5g} {unit} "
                    f"{_location(trajectory, peaks, where, quantity, k, j, limits.control_period, point)} exceeds the "
                    f"{quantity} limit {bound:.5g} {unit} ({value / bound:.2f}× the limit)")
            if where == "point" and trajectory.velocities is None and peaks.velocity_steps[k, j] > 0:
                text += ("; position-only waypoints make the controller's linear segments change velocity at once: "
                         "give velocities at the waypoints (cubic segments)")
            raise TrajectoryError(text)
    return peaks


def _location(trajectory: JointTrajectory, peaks: MotionPeaks, where: str, quantity: str, k: int, j: int,
              period: float, point: Callable[[int], str]) -> str:
    if where == "segment":
        kind = "cubic" if trajectory.velocities is not None else "linear"
        return f"in the {kind} segment between {point(k)} and {point(k + 1)}"
    steps = []
    if quantity != "velocity" and peaks.velocity_steps[k, j] > 0:
        steps.append(f"velocity steps of {peaks.velocity_steps[k, j]:.4g} rad/s")
    if quantity == "jerk" and peaks.acceleration_steps[k, j] > 0:
        steps.append(f"acceleration steps of {peaks.acceleration_steps[k, j]:.4g} rad/s²")
    made = f" ({' and '.join(steps)} within one control period of {1e3 * period:.3g} ms)" if steps else ""
    return f"at {point(k)}{made}"
