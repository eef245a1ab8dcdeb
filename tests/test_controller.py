"""The joint trajectory controller's rules without ROS: a real MuJoCo Panda, stepped in this process.

In the spirit of ros2_controllers' trajectory and tolerance tests: joints matched by name, goals refused with the
right code (and the active goal left running), path, goal and goal-time tolerances, preemption, cancel, and start
times in the future and in the past. Time is the simulator's, so nothing here depends on the machine's speed.
"""

from __future__ import annotations

import numpy as np
import pytest

from mtrl_robot.arms.families import load_family
from mtrl_robot.backends.controller import (
    ERASE,
    MAX_DURATION,
    MAX_POINTS,
    ErrorCode,
    Execution,
    Goal,
    GoalRejected,
    JointToleranceRequest,
    Status,
    TrajectoryController,
)
from mtrl_robot.backends.mujoco_backend import MujocoBackend
from mtrl_robot.backends.trajectory import JointTrajectory

PANDA = load_family("panda")
JOINTS = PANDA.joint_names
HOME = PANDA.home_q
TARGET = HOME + np.array([0.3, 0.2, -0.2, 0.3, 0.2, -0.3, 0.4])  # within the limits, about 0.3 rad from home
TICK = 2  # control steps between controller updates (the arm node's 250 Hz on MuJoCo's 2 ms step)


@pytest.fixture(scope="module")
def backend() -> MujocoBackend:
    return MujocoBackend(PANDA)


@pytest.fixture
def controller(backend: MujocoBackend) -> TrajectoryController:
    """A fresh controller on the arm at home, at rest."""
    controller = TrajectoryController(backend, backend.control_dt)
    backend.reset()
    return controller


def trajectory(points: list[tuple[float, np.ndarray]], names: tuple[str, ...] = JOINTS,
               velocities: np.ndarray | None = None) -> JointTrajectory:
    """Points (time, positions in the robot's joint order) with joints listed in the order ``names``, at rest
    unless ``velocities`` are given (position-only points would step the velocity, which the limit check refuses)."""
    order = [JOINTS.index(n) for n in names]
    positions = np.array([q[order] for _, q in points], dtype=float).reshape(len(points), len(names))
    return JointTrajectory(tuple(names), np.array([t for t, _ in points], dtype=float), positions,
                           np.zeros_like(positions) if velocities is None else velocities)


def goal_to(q: np.ndarray, duration: float, tolerance: float = 0.01, goal_time: float = 1.0, **fields) -> Goal:
    """A one-point goal to ``q`` asking for ``tolerance`` (rad) on every joint within ``goal_time``."""
    fields.setdefault("goal_tolerance", tuple(JointToleranceRequest(n, position=tolerance) for n in JOINTS))
    return Goal(trajectory([(duration, q)]), goal_time_tolerance=goal_time, **fields)


def run(controller: TrajectoryController, execution: Execution, seconds: float = 10.0) -> float:
    """Step and update until ``execution`` ends or ``seconds`` of simulated time pass; the time it ended at."""
    backend = controller.backend
    end = backend.time + seconds
    while not execution.finished.is_set() and backend.time < end:
        advance(controller, TICK * backend.control_dt)
    return backend.time - execution.start


def advance(controller: TrajectoryController, seconds: float) -> None:
    """Step and update the controller for ``seconds`` of simulated time."""
    backend = controller.backend
    for _ in range(max(1, round(seconds / (TICK * backend.control_dt)))):
        backend.step(TICK)
        controller.update()


def positions(controller: TrajectoryController) -> np.ndarray:
    return controller.backend.read_state().positions


def refusal(controller: TrajectoryController, goal: Goal) -> GoalRejected:
    with pytest.raises(GoalRejected) as caught:
        controller.start(goal)
    return caught.value


# ---------------------------------------------------------------------------------------------- following


def test_follows_a_trajectory_and_succeeds_at_its_end(controller):
    execution = controller.start(goal_to(TARGET, 1.0))
    assert controller.active is execution and not execution.finished.is_set()
    advance(controller, 0.5)
    feedback = execution.feedback
    assert feedback.index == 0 and feedback.time == pytest.approx(0.5, abs=0.01)
    np.testing.assert_allclose(feedback.error.positions, feedback.desired.positions - feedback.actual.positions)
    assert 0.0 < np.max(np.abs(positions(controller) - HOME)) < np.max(np.abs(TARGET - HOME))
    ended = run(controller, execution)
    assert execution.outcome.status is Status.SUCCEEDED and execution.outcome.code is ErrorCode.SUCCESSFUL
    assert 1.0 <= ended < 2.0
    assert np.max(np.abs(positions(controller) - TARGET)) <= 0.01
    assert controller.active is None


def test_joints_are_matched_by_name_not_by_order(controller):
    shuffled = tuple(reversed(JOINTS))
    goal = Goal(trajectory([(1.0, TARGET)], names=shuffled), goal_time_tolerance=1.0,
                goal_tolerance=(JointToleranceRequest(JOINTS[3], position=0.01),))
    execution = controller.start(goal)
    run(controller, execution)
    assert execution.outcome.status is Status.SUCCEEDED, execution.outcome.message
    np.testing.assert_allclose(positions(controller), TARGET, atol=0.01)


def test_a_multi_point_trajectory_with_velocities_passes_its_waypoints(controller):
    middle = (HOME + TARGET) / 2
    velocities = np.zeros((3, len(JOINTS)))
    velocities[1] = (TARGET - HOME) / 2.0
    execution = controller.start(Goal(trajectory([(0.5, HOME), (1.5, middle), (2.5, TARGET)],
                                                 velocities=velocities)))
    advance(controller, 1.0)
    assert execution.feedback.index == 1
    advance(controller, 0.5)
    np.testing.assert_allclose(positions(controller), middle, atol=0.02)
    advance(controller, 0.1)
    assert execution.feedback.index == 2
    run(controller, execution)
    assert execution.outcome.status is Status.SUCCEEDED


# ------------------------------------------------------------------------------------------------ refusals


def _invalid_goals() -> dict[str, tuple[Goal, ErrorCode, str]]:
    outside = TARGET.copy()
    outside[3] = PANDA.upper[3] + 0.5
    nan = TARGET.copy()
    nan[2] = np.nan
    moving = np.zeros((1, len(JOINTS)))
    moving[0, 4] = 0.1
    tolerance = JointToleranceRequest
    return {
        "partial joint set": (Goal(trajectory([(1.0, TARGET)], names=JOINTS[:6])), ErrorCode.INVALID_JOINTS,
                              r"missing joints \['panda_joint7'\]"),
        "unknown joint": (Goal(JointTrajectory((*JOINTS[:6], "wrist_roll"), np.array([1.0]), TARGET[None])),
                          ErrorCode.INVALID_JOINTS, "wrist_roll"),
        "duplicate joint": (Goal(JointTrajectory((*JOINTS[:6], JOINTS[0]), np.array([1.0]), TARGET[None])),
                            ErrorCode.INVALID_JOINTS, "duplicate"),
        "no joints": (Goal(JointTrajectory((), np.array([1.0]), np.zeros((1, 0)))), ErrorCode.INVALID_JOINTS,
                      "names no joints"),
        "multi-DOF joint": (Goal(trajectory([(1.0, TARGET)]), multi_dof_joints=("base",)),
                            ErrorCode.INVALID_JOINTS, "multi-DOF"),
        "tolerance of an unknown joint": (goal_to(TARGET, 1.0, path_tolerance=(tolerance("elbow", 0.1),)),
                                          ErrorCode.INVALID_JOINTS, "elbow"),
        "no points": (Goal(JointTrajectory(JOINTS, np.zeros(0), np.zeros((0, 7)))), ErrorCode.INVALID_GOAL,
                      "no points"),
        "NaN position": (Goal(trajectory([(1.0, nan)])), ErrorCode.INVALID_GOAL, "panda_joint3.*NaN"),
        "times not increasing": (Goal(trajectory([(1.0, HOME), (1.0, TARGET)])), ErrorCode.INVALID_GOAL,
                                 "increase strictly"),
        "outside the limits": (Goal(trajectory([(1.0, outside)])), ErrorCode.INVALID_GOAL,
                               "panda_joint4: position .* outside"),
        "over the velocity limit": (Goal(trajectory([(0.5, HOME), (0.51, TARGET)])), ErrorCode.INVALID_GOAL,
                                    "exceeds the limit"),
        "moving at the end": (Goal(trajectory([(1.0, TARGET)], velocities=moving)), ErrorCode.INVALID_GOAL,
                              "panda_joint5: velocity 0.1000 rad/s at the last point"),
        "negative tolerance": (goal_to(TARGET, 1.0, path_tolerance=(tolerance(JOINTS[0], position=-2.0),)),
                               ErrorCode.INVALID_GOAL, "illegal"),
        "NaN tolerance": (goal_to(TARGET, 1.0, goal_tolerance=(tolerance(JOINTS[1], velocity=np.nan),)),
                          ErrorCode.INVALID_GOAL, "illegal"),
        "negative goal time": (goal_to(TARGET, 1.0, goal_time=-0.5), ErrorCode.INVALID_GOAL, "goal_time"),
        "ended in the past": (Goal(trajectory([(1.0, TARGET)]), start_delay=-1.5), ErrorCode.OLD_HEADER_TIMESTAMP,
                              "ended 0.500 s ago"),
        "too long": (Goal(trajectory([(MAX_DURATION + 1.0, TARGET)])), ErrorCode.INVALID_GOAL, "at most"),
        "too many points": (Goal(JointTrajectory(JOINTS, np.linspace(1.0, 100.0, MAX_POINTS + 1),
                                                 np.tile(HOME, (MAX_POINTS + 1, 1)),
                                                 np.zeros((MAX_POINTS + 1, len(JOINTS))))),
                            ErrorCode.INVALID_GOAL, f"{MAX_POINTS + 1} points; this controller takes at most"),
    }


def test_a_goal_checked_beforehand_starts_with_only_the_checks_from_the_measured_position(controller):
    goal = goal_to(TARGET, 1.0)
    execution = controller.start(goal, controller.check(goal))
    run(controller, execution)
    assert execution.outcome.status is Status.SUCCEEDED, execution.outcome.message
    too_far = Goal(trajectory([(0.0, HOME), (1.0, TARGET)]))  # starts at home, the arm is at the target now
    with pytest.raises(GoalRejected, match="from the current position"):
        controller.start(too_far, controller.check(too_far))


@pytest.mark.parametrize("case", list(_invalid_goals()))
def test_invalid_goals_are_refused_with_their_code(controller, case):
    goal, code, message = _invalid_goals()[case]
    with pytest.raises(GoalRejected, match=message) as checked:
        controller.check(goal)
    assert checked.value.code is code
    assert refusal(controller, goal).code is code
    assert controller.active is None and not controller.backend.is_executing()


def test_a_refused_goal_leaves_the_active_one_running(controller):
    execution = controller.start(goal_to(TARGET, 1.0))
    advance(controller, 0.3)
    for goal, _, _ in _invalid_goals().values():
        with pytest.raises(GoalRejected):
            controller.start(goal)
    assert controller.active is execution and not execution.finished.is_set()
    run(controller, execution)
    assert execution.outcome.status is Status.SUCCEEDED


def test_checks_against_the_measured_position(controller):
    """A first point at time 0 must be where the arm is, and the move to a later first point within the limits:
    ``check`` makes these checks only when given the measured position; ``start`` always does."""
    for goal, message in ((Goal(trajectory([(0.0, TARGET), (1.0, TARGET)])), "time_from_start > 0"),
                          (Goal(trajectory([(0.01, TARGET)])), "moving from the current position")):
        controller.check(goal)
        with pytest.raises(GoalRejected, match=message):
            controller.check(goal, positions(controller))
        rejected = refusal(controller, goal)
        assert rejected.code is ErrorCode.INVALID_GOAL and message in str(rejected)
    near = HOME + 0.01
    execution = controller.start(Goal(trajectory([(0.0, near), (1.0, TARGET)])))
    run(controller, execution)
    assert execution.outcome.status is Status.SUCCEEDED


# ---------------------------------------------------------------------------------------------- tolerances


def test_path_tolerance_violation_aborts_and_holds(controller):
    goal = goal_to(TARGET, 1.0, path_tolerance=tuple(JointToleranceRequest(n, position=1e-6) for n in JOINTS))
    execution = controller.start(goal)
    ended = run(controller, execution)
    assert execution.outcome.status is Status.ABORTED
    assert execution.outcome.code is ErrorCode.PATH_TOLERANCE_VIOLATED
    assert "path tolerance" in execution.outcome.message and ended < 1.0
    assert not controller.backend.is_executing()
    advance(controller, 0.5)
    held = positions(controller)
    advance(controller, 0.5)
    np.testing.assert_allclose(positions(controller), held, atol=1e-3)
    assert np.max(np.abs(held - TARGET)) > 0.1  # it stopped on the way


def test_a_loose_path_tolerance_is_not_violated(controller):
    goal = goal_to(TARGET, 1.0, path_tolerance=tuple(JointToleranceRequest(n, position=0.1, velocity=1.0)
                                                   for n in JOINTS))
    execution = controller.start(goal)
    run(controller, execution)
    assert execution.outcome.status is Status.SUCCEEDED, execution.outcome.message


def test_goal_tolerance_not_met_within_goal_time_aborts_after_it(controller):
    execution = controller.start(goal_to(TARGET, 0.5, tolerance=1e-9, goal_time=0.2))
    ended = run(controller, execution)
    assert execution.outcome.status is Status.ABORTED
    assert execution.outcome.code is ErrorCode.GOAL_TOLERANCE_VIOLATED
    assert "goal tolerance" in execution.outcome.message
    assert 0.5 + 0.2 < ended <= 0.5 + 0.2 + 2 * TICK * controller.control_dt


def test_without_goal_time_a_goal_waits_indefinitely(controller):
    """The arm takes seconds to settle within 1e-9 rad: the goal is neither aborted nor given up on meanwhile."""
    execution = controller.start(goal_to(TARGET, 0.5, tolerance=1e-9, goal_time=0.0))
    run(controller, execution, seconds=1.5)
    assert not execution.finished.is_set() and controller.active is execution
    ended = run(controller, execution, seconds=10.0)
    assert execution.outcome.status is Status.SUCCEEDED and ended > 1.5
    assert np.max(np.abs(positions(controller) - TARGET)) <= 1e-9


def test_default_goal_tolerance_is_stopped_velocity_and_erase_removes_it(controller):
    """ros2_control's defaults: no position tolerance, 0.01 rad/s at the goal; -1 removes a tolerance."""
    goal = Goal(trajectory([(0.5, TARGET)]))
    execution = controller.start(goal)
    run(controller, execution)
    assert execution.outcome.status is Status.SUCCEEDED
    assert np.all(np.abs(controller.backend.read_state().velocities) <= 0.01 + 0.005)
    controller.backend.reset()
    erased = Goal(trajectory([(0.5, TARGET)]), goal_tolerance=tuple(JointToleranceRequest(n, velocity=ERASE)
                                                                    for n in JOINTS))
    execution = controller.start(erased)
    ended = run(controller, execution)
    assert execution.outcome.status is Status.SUCCEEDED
    assert ended == pytest.approx(0.5, abs=TICK * controller.control_dt)  # nothing left to wait for


# ------------------------------------------------------------------------------------- preemption, cancel


def test_a_new_goal_preempts_the_active_one(controller):
    first = controller.start(goal_to(TARGET, 3.0))
    advance(controller, 0.3)
    second = controller.start(goal_to(HOME, 1.0))
    assert first.finished.is_set()
    assert (first.outcome.status, first.outcome.code) == (Status.ABORTED, ErrorCode.INVALID_GOAL)
    assert "preempted" in first.outcome.message
    assert controller.active is second
    run(controller, second)
    assert second.outcome.status is Status.SUCCEEDED
    np.testing.assert_allclose(positions(controller), HOME, atol=0.01)


def test_cancel_ends_the_goal_canceled_and_holds(controller):
    execution = controller.start(goal_to(TARGET, 3.0))
    advance(controller, 0.5)
    controller.cancel(execution)
    assert (execution.outcome.status, execution.outcome.code) == (Status.CANCELED, ErrorCode.SUCCESSFUL)
    assert controller.active is None and not controller.backend.is_executing()
    advance(controller, 0.5)
    held = positions(controller)
    advance(controller, 1.0)
    np.testing.assert_allclose(positions(controller), held, atol=1e-3)
    assert np.max(np.abs(held - TARGET)) > 0.1


def test_cancelling_a_goal_that_is_no_longer_active_changes_nothing(controller):
    first = controller.start(goal_to(TARGET, 2.0))
    second = controller.start(goal_to(TARGET, 1.0))
    controller.cancel(first)
    assert first.outcome.status is Status.ABORTED and controller.active is second
    run(controller, second)
    assert second.outcome.status is Status.SUCCEEDED


def test_reset_aborts_the_active_goal(controller):
    execution = controller.start(goal_to(TARGET, 2.0))
    advance(controller, 0.3)
    controller.reset()
    assert (execution.outcome.status, execution.outcome.code) == (Status.ABORTED, ErrorCode.INVALID_GOAL)
    np.testing.assert_array_equal(positions(controller), HOME)


# -------------------------------------------------------------------------------------------- start times


def test_a_start_time_in_the_future_holds_until_then(controller):
    execution = controller.start(Goal(trajectory([(0.5, TARGET)]), start_delay=1.0))
    advance(controller, 0.9)
    np.testing.assert_allclose(positions(controller), HOME, atol=1e-3)
    assert execution.feedback.index == 0
    advance(controller, 0.3)
    assert np.max(np.abs(positions(controller) - HOME)) > 0.01
    ended = run(controller, execution)
    assert execution.outcome.status is Status.SUCCEEDED and ended >= 1.5


def test_a_future_first_point_at_time_zero_is_approached_during_the_wait(controller):
    execution = controller.start(Goal(trajectory([(0.0, TARGET), (0.5, TARGET)]), start_delay=1.0))
    advance(controller, 1.0)
    np.testing.assert_allclose(positions(controller), TARGET, atol=0.02)
    run(controller, execution)
    assert execution.outcome.status is Status.SUCCEEDED


def test_a_start_time_in_the_past_skips_the_points_already_gone(controller):
    middle = (HOME + TARGET) / 2
    goal = Goal(trajectory([(0.5, HOME), (1.5, middle), (2.5, TARGET)]),
                start_delay=-1.0)
    execution = controller.start(goal)
    assert execution.duration == pytest.approx(1.5)  # what is left of the trajectory: to 1.5 s after its start
    np.testing.assert_allclose(execution.point_times, [-0.5, 0.5, 1.5])
    advance(controller, 0.3)
    assert execution.feedback.index == 1
    advance(controller, 0.2)
    np.testing.assert_allclose(positions(controller), middle, atol=0.02)
    run(controller, execution)
    assert execution.outcome.status is Status.SUCCEEDED
