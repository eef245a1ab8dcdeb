"""ros2_control's joint trajectory controller as plain library code over a simulated backend.

A :class:`TrajectoryController` does what that controller does between receiving a trajectory and
reporting its end, on the backend's clock: call :meth:`TrajectoryController.update` after every
``SimBackend.step``. It is not thread-safe; callers serialize access.

- **Validation** (:meth:`~TrajectoryController.check`, also done by :meth:`~TrajectoryController.start`; it
  touches nothing, so a node can refuse a goal when it is received). Joints are matched by name and
  every joint of the robot needs a value (partial goals are refused, as with ros2_control's default), else
  ``INVALID_JOINTS`` (also for tolerances that name other joints, or any multi-DOF joint). No points, more than
  :data:`MAX_POINTS`, NaN or infinite values, times that do not increase, positions outside the limits, motion
  over the velocity or acceleration limits between or at the points
  (:func:`~mtrl_robot.backends.limits.check_motion`, the safety layer's check), a last point with non-zero
  velocity or an illegal tolerance value give ``INVALID_GOAL`` with
  a message naming the joint and the limit. A trajectory stamped to start so long ago that it has already ended gives
  ``OLD_HEADER_TIMESTAMP``. A refused goal leaves the active one running. Given the measured position,
  ``check`` also makes the checks that need it (a first point at time 0 must be close to it; the move from it to
  a first point after time 0 must respect the limits), which ``start`` repeats with the position it starts from.
- **Timing.** A trajectory starts from the measured position (a first point after time 0 is reached from
  there). One stamped to start in the future holds position until then (a first point at time 0 is
  approached during the wait instead); one stamped in the past skips the points whose time has gone.
- **Tolerances**, per joint, 0 meaning "not checked". While moving, position and velocity errors
  (desired − actual) are held to the path tolerances, else ``PATH_TOLERANCE_VIOLATED`` and the arm holds
  its position. From the last point's time on, the goal succeeds as soon as every joint is within its goal
  tolerances (:class:`~mtrl_robot.backends.trajectory.GoalTolerance`); with ``goal_time`` > 0 it is aborted
  with ``GOAL_TOLERANCE_VIOLATED`` (arm holding) if that has not happened ``goal_time`` seconds after the end,
  with 0 it waits indefinitely. Defaults are ros2_control's: no path or goal position tolerance, a
  stopped-velocity tolerance of 0.01 rad/s at the goal, ``goal_time`` 0. In a goal's ``JointTolerance`` a
  positive value replaces the default, 0 keeps it and -1 removes it; any other value is refused (ros2_control
  would log a warning and fall back to the defaults). Acceleration tolerances are validated but not checked:
  the robots report no acceleration.
- **Preemption and cancel.** A new trajectory replaces the active one, whose goal ends aborted with
  ``INVALID_GOAL`` ("preempted"), as ros2_controllers' controller has done since June 2026 (it ended such goals
  canceled before). :meth:`~TrajectoryController.cancel` holds the current position and ends the goal canceled,
  ``SUCCESSFUL``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum

import numpy as np

from mtrl_robot.backends.interface import SimBackend
from mtrl_robot.backends.limits import MotionLimits, check_motion
from mtrl_robot.backends.trajectory import (
    GoalTolerance,
    JointState,
    JointTrajectory,
    TrajectoryError,
    anchor,
    check_trajectory,
    tolerance_violation,
)

STOPPED_VELOCITY_TOLERANCE = 0.01  # rad/s, ros2_control's default goal velocity tolerance
ERASE = -1.0  # a JointTolerance value that removes the tolerance
MAX_DURATION = 600.0  # s; longer trajectories are refused (the MuJoCo backend plans every physics step ahead)
MAX_POINTS = 10_000  # points of a goal; more are refused before conversion, which would stall the node's physics
SAMPLE_CHUNK = 512  # control steps of desired state sampled at a time


class ErrorCode(IntEnum):
    """``control_msgs/action/FollowJointTrajectory`` result codes."""

    SUCCESSFUL = 0
    INVALID_GOAL = -1
    INVALID_JOINTS = -2
    OLD_HEADER_TIMESTAMP = -3
    PATH_TOLERANCE_VIOLATED = -4
    GOAL_TOLERANCE_VIOLATED = -5


class Status(Enum):
    SUCCEEDED = "succeeded"
    ABORTED = "aborted"
    CANCELED = "canceled"


class GoalRejected(ValueError):
    """A goal the controller refuses, with the result code to report."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class JointToleranceRequest:
    """One ``control_msgs/JointTolerance``: > 0 sets, 0 keeps the default, -1 removes."""

    name: str
    position: float = 0.0
    velocity: float = 0.0
    acceleration: float = 0.0


@dataclass(frozen=True)
class Tolerances:
    """Per-joint tolerances in the robot's joint order; 0 is "not checked"."""

    path_position: np.ndarray
    path_velocity: np.ndarray
    goal: GoalTolerance  # its ``time``: s after the last point to get within goal tolerance; 0: wait indefinitely

    @classmethod
    def defaults(cls, dof: int) -> Tolerances:
        zeros = np.zeros(dof)
        return cls(zeros, zeros, GoalTolerance(zeros, np.full(dof, STOPPED_VELOCITY_TOLERANCE), 0.0))


@dataclass(frozen=True)
class Goal:
    trajectory: JointTrajectory  # joints in the sender's order
    start_delay: float = 0.0  # s from now to the trajectory's time 0; negative: it started in the past
    path_tolerance: tuple[JointToleranceRequest, ...] = ()
    goal_tolerance: tuple[JointToleranceRequest, ...] = ()
    goal_time_tolerance: float = 0.0  # s; 0 keeps the default
    multi_dof_joints: tuple[str, ...] = ()  # named by the goal's multi-DOF parts; this controller has none


@dataclass(frozen=True)
class Feedback:
    time: float  # s since the trajectory started
    index: int  # the goal's point being approached
    desired: JointState
    actual: JointState
    error: JointState  # desired − actual


@dataclass(frozen=True)
class Outcome:
    status: Status
    code: ErrorCode
    message: str


@dataclass(eq=False)
class Execution:
    """One trajectory being followed; ``finished`` is set when ``outcome`` is."""

    trajectory: JointTrajectory  # anchored at the measured start, robot joint order, time 0 = ``start``
    start: float  # backend time of the trajectory's time 0
    control_dt: float
    tolerances: Tolerances
    point_times: np.ndarray  # the goal's points on this execution's clock
    feedback: Feedback | None = None
    outcome: Outcome | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    _rows: tuple[int, np.ndarray, np.ndarray] = (0, np.empty((0, 0)), np.empty((0, 0)))

    @property
    def duration(self) -> float:
        return self.trajectory.duration

    def desired(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Desired positions and velocities ``step`` control steps after the start (sampled in chunks)."""
        first, positions, velocities = self._rows
        if not first <= step < first + len(positions):
            times = np.minimum(self.control_dt * np.arange(step, step + SAMPLE_CHUNK), self.duration)
            first, (positions, velocities) = step, self.trajectory.sample(times)
            self._rows = (first, positions, velocities)
        return positions[step - first], velocities[step - first]


def too_many_points(count: int) -> str:
    return f"the trajectory has {count} points; this controller takes at most {MAX_POINTS}"


def _resolve(default: float, requested: float, what: str) -> float:
    if math.isnan(requested) or (requested < 0 and requested != ERASE):
        raise GoalRejected(ErrorCode.INVALID_GOAL, f"{what} tolerance {requested} is illegal "
                           "(> 0 sets it, 0 keeps the default, -1 removes it)")
    if requested > 0:
        return requested
    return 0.0 if requested == ERASE else default


class TrajectoryController:
    """Follows one trajectory at a time on ``backend``; ``control_dt`` is the backend's control step (s)."""

    def __init__(self, backend: SimBackend, control_dt: float, defaults: Tolerances | None = None):
        self.backend = backend
        self.control_dt = control_dt
        self.limits = backend.limits
        unlimited = np.full(len(self.limits.names), np.inf)
        acceleration = unlimited if self.limits.acceleration is None else self.limits.acceleration
        self.motion_limits = MotionLimits(self.limits.velocity, acceleration, unlimited, control_dt)
        self.defaults = defaults or Tolerances.defaults(len(self.limits.names))
        self._active: Execution | None = None

    @property
    def active(self) -> Execution | None:
        return self._active

    def check_joint_names(self, names: Sequence[str]) -> None:
        """Raise ``INVALID_JOINTS`` unless ``names`` are exactly the robot's joints, in any order."""
        robot = list(self.limits.names)
        names = list(names)
        if not names:
            raise GoalRejected(ErrorCode.INVALID_JOINTS, f"the trajectory names no joints; this robot has {robot}")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise GoalRejected(ErrorCode.INVALID_JOINTS, f"duplicate joint names {duplicates}")
        unknown = [n for n in names if n not in robot]
        if unknown:
            raise GoalRejected(ErrorCode.INVALID_JOINTS, f"unknown joints {unknown}; this robot has {robot}")
        missing = [n for n in robot if n not in names]
        if missing:
            raise GoalRejected(ErrorCode.INVALID_JOINTS, f"missing joints {missing}: every joint needs a value")

    def check(self, goal: Goal, measured: np.ndarray | None = None) -> tuple[JointTrajectory, Tolerances]:
        """Validate ``goal`` without touching the arm, also against the ``measured`` position if given: its
        trajectory in the robot's joint order and its tolerances; raises :class:`GoalRejected`."""
        self.check_joint_names(goal.trajectory.joint_names)
        if goal.multi_dof_joints:
            raise GoalRejected(ErrorCode.INVALID_JOINTS,
                               f"multi-DOF joints {sorted(set(goal.multi_dof_joints))}: this robot has none")
        tolerances = self._tolerances(goal)
        if len(goal.trajectory.times) == 0:
            raise GoalRejected(ErrorCode.INVALID_GOAL, "the trajectory has no points")
        if len(goal.trajectory.times) > MAX_POINTS:
            raise GoalRejected(ErrorCode.INVALID_GOAL, too_many_points(len(goal.trajectory.times)))
        try:
            ordered = check_trajectory(goal.trajectory, self.limits)
        except TrajectoryError as exc:
            raise GoalRejected(ErrorCode.INVALID_GOAL, str(exc)) from None
        if ordered.velocities is not None and (ordered.velocities[-1] != 0).any():
            j = int(np.flatnonzero(ordered.velocities[-1])[0])
            speed = ordered.velocities[-1, j]
            raise GoalRejected(ErrorCode.INVALID_GOAL, f"{self.limits.names[j]}: velocity {speed:.4f} rad/s at the "
                               "last point; a trajectory must end at rest")
        end = ordered.duration + goal.start_delay
        if end <= 0:
            raise GoalRejected(ErrorCode.OLD_HEADER_TIMESTAMP, f"the trajectory's stamp is {-goal.start_delay:.3f} s "
                               f"ago, so it ended {-end:.3f} s ago")
        if end > MAX_DURATION:
            raise GoalRejected(ErrorCode.INVALID_GOAL, f"the trajectory ends {end:.1f} s from now; "
                               f"this simulated controller takes at most {MAX_DURATION:.0f} s")
        if measured is not None:
            self._anchored(ordered, goal.start_delay, measured)
        return ordered, tolerances

    def _anchored(self, ordered: JointTrajectory, delay: float, measured: np.ndarray) -> JointTrajectory:
        """``ordered`` on a clock starting now, from ``measured``; raises :class:`GoalRejected`."""
        try:
            anchored = anchor(self._timed(ordered, delay, measured), self.limits, measured)
            check_motion(anchored, self.motion_limits)
            return anchored
        except TrajectoryError as exc:
            raise GoalRejected(ErrorCode.INVALID_GOAL, str(exc)) from None

    def start(self, goal: Goal, checked: tuple[JointTrajectory, Tolerances] | None = None) -> Execution:
        """Validate ``goal`` and follow it, replacing the active trajectory; raises :class:`GoalRejected`.

        ``checked`` is what :meth:`check` returned for ``goal``: given, only the checks against the position
        the arm starts from are made (what a caller holding a lock around the controller keeps short).
        """
        ordered, tolerances = self.check(goal) if checked is None else checked
        anchored = self._anchored(ordered, goal.start_delay, self.backend.read_state().positions)
        try:
            self.backend.send_trajectory(anchored)
        except TrajectoryError as exc:
            raise GoalRejected(ErrorCode.INVALID_GOAL, str(exc)) from None
        if self._active is not None:
            self._finish(self._active, Status.ABORTED, ErrorCode.INVALID_GOAL, "preempted by a newer trajectory")
        self._active = Execution(anchored, self.backend.time, self.control_dt, tolerances,
                                 point_times=ordered.times + goal.start_delay)
        return self._active

    def _tolerances(self, goal: Goal) -> Tolerances:
        d = self.defaults
        values = {"path": [d.path_position.copy(), d.path_velocity.copy()],
                  "goal": [d.goal.position.copy(), d.goal.velocity.copy()]}
        for kind, requests in (("path", goal.path_tolerance), ("goal", goal.goal_tolerance)):
            position, velocity = values[kind]
            for request in requests:
                if request.name not in self.limits.names:
                    raise GoalRejected(ErrorCode.INVALID_JOINTS, f"{kind} tolerance for unknown joint "
                                       f"'{request.name}'; this robot has {list(self.limits.names)}")
                j = self.limits.names.index(request.name)
                position[j] = _resolve(position[j], request.position, f"{request.name} {kind} position")
                velocity[j] = _resolve(velocity[j], request.velocity, f"{request.name} {kind} velocity")
                _resolve(0.0, request.acceleration, f"{request.name} {kind} acceleration")
        goal_time = _resolve(d.goal.time, goal.goal_time_tolerance, "goal_time")
        return Tolerances(*values["path"], GoalTolerance(*values["goal"], goal_time))

    def _timed(self, trajectory: JointTrajectory, delay: float, measured: np.ndarray) -> JointTrajectory:
        """``trajectory`` on a clock starting now: elapsed points dropped, or a hold until a future start."""
        names, times, positions, velocities = (trajectory.joint_names, trajectory.times, trajectory.positions,
                                               trajectory.velocities)
        if delay < 0:
            keep = times > -delay
            return JointTrajectory(names, times[keep] + delay, positions[keep],
                                   None if velocities is None else velocities[keep])
        if delay == 0 or times[0] == 0:
            return JointTrajectory(names, times + delay, positions, velocities)
        hold = np.clip(measured, self.limits.lower, self.limits.upper)
        return JointTrajectory(names, np.concatenate([[delay], times + delay]), np.vstack([hold, positions]),
                               None if velocities is None else np.vstack([np.zeros(len(names)), velocities]))

    def update(self) -> None:
        """Compare the arm with the active trajectory at the backend's current time; end it if due."""
        ex = self._active
        if ex is None:
            return
        t = self.backend.time - ex.start
        actual = self.backend.read_state()
        names = self.limits.names
        desired = JointState(names, *ex.desired(round(t / self.control_dt)), actual.stamp)
        error = JointState(names, desired.positions - actual.positions, desired.velocities - actual.velocities,
                           actual.stamp)
        index = min(int(np.searchsorted(ex.point_times, t, side="right")), len(ex.point_times) - 1)
        ex.feedback = Feedback(t, index, desired, actual, error)
        tol = ex.tolerances
        if t < ex.duration - 1e-9:
            problem = tolerance_violation(names, error.positions, tol.path_position, error.velocities,
                                          tol.path_velocity, "path")
            if problem:
                self.backend.stop()
                self._finish(ex, Status.ABORTED, ErrorCode.PATH_TOLERANCE_VIOLATED, problem)
            return
        verdict = tol.goal.verdict(names, t - ex.duration, error.positions, error.velocities)
        if verdict is None:
            return
        reached, message = verdict
        if reached:
            self._finish(ex, Status.SUCCEEDED, ErrorCode.SUCCESSFUL, message)
        else:
            self.backend.stop()
            self._finish(ex, Status.ABORTED, ErrorCode.GOAL_TOLERANCE_VIOLATED, message)

    def cancel(self, execution: Execution) -> None:
        """Hold the current position and end ``execution`` canceled, if it is the active one."""
        if execution is self._active:
            self.backend.stop()
            self._finish(execution, Status.CANCELED, ErrorCode.SUCCESSFUL, "canceled; holding position")

    def abort(self, reason: str) -> None:
        """Hold the current position and end the active trajectory, if any, aborted for ``reason``."""
        execution = self._active
        if execution is not None:
            try:
                self.backend.stop()
            finally:  # the goal ends even if holding fails
                self._finish(execution, Status.ABORTED, ErrorCode.INVALID_GOAL, reason)

    def reset(self) -> JointState:
        """Abort the active trajectory and put the arm at home, at rest."""
        self.abort("the simulation was reset")
        return self.backend.reset()

    def reset_scene(self) -> JointState:
        """Abort the active trajectory and reset the scene (the puck to its start); the arm stays, at rest."""
        self.abort("the scene was reset")
        measured = self.backend.read_state().positions
        return self.backend.reset(np.clip(measured, self.limits.lower, self.limits.upper))

    def _finish(self, execution: Execution, status: Status, code: ErrorCode, message: str) -> None:
        execution.outcome = Outcome(status, code, message)
        if execution is self._active:
            self._active = None
        execution.finished.set()
