"""The safety layer between every producer of motion and a real controller.

:class:`SafetyChecker` refuses a trajectory (``SafetyError``, naming the joint or the flange, the waypoint,
the limit and by how much) unless every waypoint and the motion between waypoints stays inside
:class:`SafetyLimits`: finite numbers, the robot's joints by name, position limits less a margin, a start
close to the measured state, a flange inside a box, and velocity, acceleration and jerk limits on what the
controller commands over every segment and at every waypoint (:func:`~mtrl_robot.backends.limits.check_motion`,
the check the simulated controller makes too).
:class:`Watchdog` tells the caller when joint states stop arriving. Plain Python: the ROS client uses it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial

import numpy as np

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.fk import CompiledChain
from mtrl_robot.backends.limits import MotionLimits, check_motion, motion_peaks
from mtrl_robot.backends.trajectory import JointState, JointTrajectory, TrajectoryError, well_formed

DEFAULT_CONTROL_PERIOD = 0.001  # s, ros2_control's usual 1 kHz; a shorter period prices steps higher
AXES = "xyz"
BOUND_SLACK = 1e-9  # rad or m kept off the limits and the box by the bounds that spare samples, against round-off


class SafetyError(TrajectoryError):
    """A trajectory the safety layer refuses (a ``ValueError``); the message says what, where and by how much."""


@dataclass(frozen=True)
class Workspace:
    """An axis-aligned box (m) the flange must stay in, in the arm's base frame."""

    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self) -> None:
        lower, upper = np.asarray(self.lower, dtype=float), np.asarray(self.upper, dtype=float)
        if lower.shape != (3,) or upper.shape != (3,) or not np.all(np.isfinite(lower) & np.isfinite(upper)):
            raise ValueError(f"workspace bounds must be 3 finite numbers each, got {self.lower} and {self.upper}")
        if np.any(lower >= upper):
            i = int(np.argmax(lower >= upper))
            raise ValueError(f"workspace {AXES[i]}: minimum {lower[i]} m is not below maximum {upper[i]} m")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)


@dataclass(frozen=True)
class SafetyLimits:
    """Per-joint limits in the order of ``names``, plus the start and workspace rules.

    ``model_names`` says which joint of ``arm`` each entry of ``names`` drives (a hardware → model joint
    map); it defaults to ``names``. ``arm`` is needed only for the workspace check.
    """

    names: tuple[str, ...]
    lower: np.ndarray  # rad
    upper: np.ndarray  # rad
    velocity: np.ndarray  # rad/s
    acceleration: np.ndarray  # rad/s²
    position_margin: float = 0.0  # rad kept clear inside each position limit
    max_start_deviation: float = 0.05  # rad between the measured state and the first waypoint
    workspace: Workspace | None = None
    arm: Arm | None = None
    model_names: tuple[str, ...] | None = None
    jerk: np.ndarray | None = None  # rad/s³; None: not limited (no published value)
    control_period: float = DEFAULT_CONTROL_PERIOD  # s of the controller's update: prices steps at waypoints

    def __post_init__(self) -> None:
        names = tuple(self.names)
        n = len(names)
        if n == 0 or len(set(names)) != n:
            raise ValueError(f"joint names must be unique and not empty, got {list(names)}")
        object.__setattr__(self, "names", names)
        for field in ("lower", "upper", "velocity", "acceleration"):
            values = np.asarray(getattr(self, field), dtype=float)
            if values.shape != (n,) or not np.all(np.isfinite(values)):
                raise ValueError(f"{field} limits must be {n} finite numbers, got {getattr(self, field)}")
            object.__setattr__(self, field, values)
        for field in ("velocity", "acceleration"):
            bad = np.flatnonzero(getattr(self, field) <= 0)
            if bad.size:
                raise ValueError(f"{names[bad[0]]}: {field} limit must be positive")
        jerk = np.full(n, np.inf) if self.jerk is None else np.asarray(self.jerk, dtype=float)
        if jerk.shape != (n,) or np.any(np.isnan(jerk)) or np.any(jerk <= 0):
            raise ValueError(f"jerk limits must be {n} positive numbers, got {self.jerk}")
        object.__setattr__(self, "jerk", jerk)
        if not np.isfinite(self.control_period) or self.control_period <= 0:
            raise ValueError(f"control_period must be a positive number of seconds, got {self.control_period}")
        if self.position_margin < 0 or self.max_start_deviation < 0:
            raise ValueError("position_margin and max_start_deviation must not be negative")
        narrow = np.flatnonzero(self.inner_lower >= self.inner_upper)
        if narrow.size:
            j = narrow[0]
            raise ValueError(f"{names[j]}: position range [{self.lower[j]}, {self.upper[j]}] leaves nothing "
                             f"inside a margin of {self.position_margin} rad")
        model = names if self.model_names is None else tuple(self.model_names)
        object.__setattr__(self, "model_names", model)
        if self.workspace is not None and self.arm is None:
            raise ValueError("a workspace check needs the arm model for forward kinematics")
        if self.arm is not None and sorted(model) != sorted(self.arm.joint_names):
            raise ValueError(f"joints {list(model)} do not match the arm's {list(self.arm.joint_names)}")

    @cached_property
    def inner_lower(self) -> np.ndarray:
        return self.lower + self.position_margin

    @cached_property
    def inner_upper(self) -> np.ndarray:
        return self.upper - self.position_margin

    @property
    def motion(self) -> MotionLimits:
        return MotionLimits(self.velocity, self.acceleration, self.jerk, self.control_period)

    @staticmethod
    def from_arm(arm: Arm, *, scale: float = 1.0, position_margin: float = 0.0, max_start_deviation: float = 0.05,
                 workspace: Workspace | None = None,
                 control_period: float = DEFAULT_CONTROL_PERIOD) -> SafetyLimits:
        """An arm's own limits, with velocity, acceleration and jerk (where the family publishes it) scaled by
        ``scale``."""
        acceleration = np.array([j.acceleration for j in arm.joints])
        jerk = np.array([np.inf if j.jerk is None else j.jerk for j in arm.joints])
        return SafetyLimits(arm.joint_names, arm.lower, arm.upper, scale * arm.velocity_limits, scale * acceleration,
                            position_margin, max_start_deviation, workspace, arm, jerk=scale * jerk,
                            control_period=control_period)


def _where(k: int, offset: int) -> str:
    """Waypoint ``k`` of the checked trajectory, named in the caller's numbering (``offset`` points prepended)."""
    return "the measured start" if k < offset else f"waypoint {k - offset}"


def _between(k: int, offset: int) -> str:
    return f"between {_where(k, offset)} and {_where(k + 1, offset)}"


def path_samples(times: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """The times of a grid of ``step`` s over a trajectory's waypoint ``times`` that fall between waypoints (not on
    one), and the segment each falls in (segment k runs from waypoint k to k + 1)."""
    grid = np.arange(times[0], times[-1], step)
    after = np.searchsorted(times, grid)
    gap = np.minimum(np.abs(grid - times[np.minimum(after, len(times) - 1)]),
                     np.abs(grid - times[np.maximum(after - 1, 0)]))
    inner = grid[gap > 1e-9]
    return inner, np.searchsorted(times, inner) - 1


class SafetyChecker:
    """Checks trajectories against :class:`SafetyLimits`; ``workspace_step`` (s) is the interpolation step."""

    def __init__(self, limits: SafetyLimits, workspace_step: float = 0.01):
        if workspace_step <= 0:
            raise ValueError(f"workspace_step must be positive, got {workspace_step}")
        self.limits = limits
        self.motion_limits = limits.motion
        self.workspace_step = workspace_step
        self._chain = CompiledChain(limits.arm) if limits.arm is not None else None
        # column of the checked trajectory that feeds each joint of the arm, in the arm's order
        self._fk_columns = ([limits.model_names.index(n) for n in limits.arm.joint_names]
                            if limits.arm is not None else [])
        self._lever_arms = np.zeros(len(limits.names))  # the chain's lever arms, in the checked columns' order
        if self._chain is not None:
            self._lever_arms[self._fk_columns] = self._chain.lever_arms

    def check(self, trajectory: JointTrajectory, measured: JointState) -> JointTrajectory:
        """Return ``trajectory`` reordered to the robot's joints, or raise :class:`SafetyError`.

        A first waypoint after time 0 is reached from the measured state (as ros2_control does), so the
        motion of that approach is checked too, assuming the arm is at rest. A first waypoint at time 0 must lie
        within ``max_start_deviation`` of the measured state; the controller jumps there at once.
        """
        lim = self.limits
        try:
            ordered = well_formed(trajectory, lim.names)
        except TrajectoryError as exc:
            raise SafetyError(str(exc)) from None
        start = self._measured_positions(measured)
        self._check_start(ordered, start)
        self._check_positions(ordered.positions)
        offset = int(ordered.times[0] > 0)
        approached = ordered
        if offset:
            vel = None if ordered.velocities is None else np.vstack([np.zeros(len(start)), ordered.velocities])
            approached = JointTrajectory(lim.names, np.concatenate([[0.0], ordered.times]),
                                         np.vstack([start, ordered.positions]), vel)
        self._check_path(ordered)
        try:
            check_motion(approached, self.motion_limits, point=partial(_where, offset=offset))
        except TrajectoryError as exc:
            raise SafetyError(str(exc)) from None
        return ordered

    def _measured_positions(self, measured: JointState) -> np.ndarray:
        missing = [n for n in self.limits.names if n not in measured.names]
        if missing:
            raise SafetyError(f"the measured joint state lacks joints {missing}; it has {list(measured.names)}")
        measured_names = list(measured.names)
        index = [measured_names.index(n) for n in self.limits.names]
        positions = np.asarray(measured.positions, dtype=float)[index]
        if not np.isfinite(positions).all():
            j = int(np.argmax(~np.isfinite(positions)))
            raise SafetyError(f"{self.limits.names[j]}: measured position is {positions[j]} (NaN or inf)")
        return positions

    def _check_start(self, traj: JointTrajectory, start: np.ndarray) -> None:
        gap = np.abs(traj.positions[0] - start)
        j = int(np.argmax(gap))
        allowed = self.limits.max_start_deviation
        if gap[j] > allowed:
            raise SafetyError(f"{self.limits.names[j]}: waypoint 0 at {traj.positions[0, j]:.4f} rad is "
                              f"{gap[j]:.4f} rad from the measured {start[j]:.4f} rad: above the max start "
                              f"deviation {allowed:.4f} rad by {gap[j] - allowed:.4f} rad")

    def _check_positions(self, positions: np.ndarray, segments: np.ndarray | None = None,
                         times: np.ndarray | None = None) -> None:
        """Positions (T, n) inside the limits less the margin: waypoints, or samples of ``segments`` at ``times``."""
        lim = self.limits
        low, high = positions < lim.inner_lower, positions > lim.inner_upper
        if not (low | high).any():
            return
        k, j = np.argwhere(low | high)[0]
        q = positions[k, j]
        side, bound, raw = (("below", lim.inner_lower[j], lim.lower[j]) if low[k, j]
                            else ("above", lim.inner_upper[j], lim.upper[j]))
        where = f"at waypoint {k}" if segments is None else f"{_between(segments[k], 0)} (t = {times[k]:.3f} s)"
        margin = f" (limit {raw:.4f} less margin {lim.position_margin:.4f})" if lim.position_margin else ""
        raise SafetyError(f"{lim.names[j]}: position {q:.4f} rad {where} is {side} the position limit "
                          f"{bound:.4f} rad{margin} by {abs(q - bound):.4f} rad")

    def _check_path(self, traj: JointTrajectory) -> None:
        """Joint limits between waypoints, and the flange box at and between waypoints, on a fine time grid.

        The outcome is that of checking every sample of the grid, with less work: only the segments that could
        fail are sampled, and forward kinematics runs at the waypoints and at the samples that could be outside the
        box. Each joint stays within the control points of a segment's cubic (its Bézier polygon: the ends, and the
        ends moved by a third of the segment along their velocities), or within the ends of a linear segment; and
        turning the joints by Δq moves the flange by at most ``lever_arms · |Δq|``, so a segment or a sample is
        inside the box when its joints stay closer to a waypoint than the flange there is to the box's faces.
        """
        lim, box = self.limits, self.limits.workspace
        times, positions = traj.times, traj.positions
        corners = [positions[:-1], positions[1:]]
        if traj.velocities is not None:
            third = (times[1:] - times[:-1])[:, None] / 3.0
            corners += [positions[:-1] + third * traj.velocities[:-1], positions[1:] - third * traj.velocities[1:]]
        low, high = np.minimum.reduce(corners), np.maximum.reduce(corners)
        unsure = ((low < lim.inner_lower + BOUND_SLACK) | (high > lim.inner_upper - BOUND_SLACK)).any(axis=1)
        if box is not None:
            flange = self._chain.flange_positions(positions[:, self._fk_columns])
            clearance = np.minimum(flange - box.lower, box.upper - flange).min(axis=1) - BOUND_SLACK
            reach = [np.maximum(np.abs(low - end), np.abs(high - end)) @ self._lever_arms for end in corners[:2]]
            unsure |= (reach[0] >= clearance[:-1]) & (reach[1] >= clearance[1:])
        if unsure.any():
            inner, segments = path_samples(times, self.workspace_step)
            inner, segments = inner[unsure[segments]], segments[unsure[segments]]
        else:  # every segment stays inside: nothing between waypoints to sample
            inner = np.zeros(0)
        if inner.size:
            sampled = traj.sample(inner)[0]
            self._check_positions(sampled, segments, inner)
        if box is None:
            return
        self._check_box(flange, lambda row: f"at waypoint {row}")
        if not inner.size:
            return
        moved = [np.abs(sampled - positions[ends]) @ self._lever_arms for ends in (segments, segments + 1)]
        doubtful = np.flatnonzero((moved[0] >= clearance[segments]) & (moved[1] >= clearance[segments + 1]))
        if doubtful.size:
            self._check_box(self._chain.flange_positions(sampled[doubtful][:, self._fk_columns]),
                            lambda row: f"{_between(segments[doubtful[row]], 0)} (t = {inner[doubtful[row]]:.3f} s)")

    def _check_box(self, flange: np.ndarray, where: Callable[[int], str]) -> None:
        """Flange positions (k, 3) inside the workspace box; ``where(row)`` names row ``row`` in a refusal."""
        box = self.limits.workspace
        low, high = flange < box.lower, flange > box.upper
        if not (low | high).any():
            return
        row, axis = np.argwhere(low | high)[0]
        value = flange[row, axis]
        side, bound = (("below the workspace minimum", box.lower[axis]) if low[row, axis]
                       else ("above the workspace maximum", box.upper[axis]))
        raise SafetyError(f"flange: {AXES[axis]} = {value:.4f} m {where(row)} is {side} {bound:.4f} m "
                          f"by {abs(value - bound):.4f} m")

    def describe(self, trajectory: JointTrajectory) -> str:
        """A few lines saying what a trajectory would do: for logging a dry run."""
        traj = trajectory.reordered(self.limits.names)
        lines = [f"{len(traj.times)} waypoints over {traj.duration:.3f} s "
                 f"({'positions and velocities' if traj.velocities is not None else 'positions only'})"]
        peak = motion_peaks(traj, self.limits.control_period).peak("velocity")
        for j, name in enumerate(self.limits.names):
            lines.append(f"  {name:18} {traj.positions[0, j]:8.4f} → {traj.positions[-1, j]:8.4f} rad, "
                         f"peak {peak[j]:.3f} rad/s ({100 * peak[j] / self.limits.velocity[j]:.0f} % of limit)")
        if self._chain is not None:
            ends = self._chain.flange_positions(traj.positions[[0, -1]][:, self._fk_columns])
            lines.append(f"  flange {np.round(ends[0], 4).tolist()} → {np.round(ends[1], 4).tolist()} m")
        return "\n".join(lines)


class Watchdog:
    """Notices when joint states stop arriving: :meth:`stale` after ``timeout`` s without a fresh message.

    A message counts as fresh when its stamp is newer than the last one, so a driver that keeps
    republishing a frozen state goes stale too. Time is measured on ``clock`` (injectable for tests).
    """

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic):
        if timeout <= 0:
            raise ValueError(f"watchdog timeout must be positive, got {timeout}")
        self.timeout = timeout
        self._clock = clock
        self._last_stamp: float | None = None
        self._last_arrival: float | None = None

    def feed(self, stamp: float) -> None:
        """Record a joint-state message with header stamp ``stamp`` (s)."""
        if self._last_stamp is None or stamp > self._last_stamp:
            self._last_stamp = stamp
            self._last_arrival = self._clock()

    def age(self) -> float:
        """Seconds since the last fresh message (infinite before the first)."""
        return np.inf if self._last_arrival is None else self._clock() - self._last_arrival

    def stale(self) -> bool:
        return self.age() > self.timeout

