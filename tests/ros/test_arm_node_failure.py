"""The arm node when its simulation fails: the running goal ends aborted with the error, physics stops for good, new
goals are rejected. A real simulator does not fail on demand, so the node runs in this process and its backend's
step is made to raise (the one stand-in in these tests); everything else is the real node and a real client. The
same in-process node shows a reset arriving at the one moment between a goal's acceptance and its start."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
import rclpy
from action_msgs.msg import GoalStatus
from control_msgs.action import FollowJointTrajectory
from control_msgs.msg import JointTolerance
from rclpy.executors import MultiThreadedExecutor
from ros_events import Messages, logged
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger
from test_arm_node import HOME, JOINTS, TARGET, positions, trajectory

from mtrl_robot.ros.arm_node import ArmNode
from mtrl_robot.ros.conversions import seconds, to_duration

FJT = FollowJointTrajectory
NAMESPACE = "/failing"
FAILURE = "FloatingPointError: the simulated instability"


@pytest.fixture
def node(ros_env) -> Iterator[ArmNode]:
    """An arm node in this process, under :data:`NAMESPACE`, spun by a thread."""
    context = rclpy.Context()  # the node's own; the test client has another
    # executor_priority 0: the node's SCHED_FIFO would otherwise apply to this test process's threads
    rclpy.init(args=["--ros-args", "-r", f"__ns:={NAMESPACE}", "-p", "executor_priority:=0"], context=context)
    # Not the EventsExecutor the node runs with: with the client in the same process, the middleware delivers its
    # goal request within the sending call, and the EventsExecutor's callback then waits for the interpreter lock
    # that call holds. Goals run in threads of their own under either executor.
    executor = MultiThreadedExecutor(context=context)
    node = ArmNode(context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    yield node
    node.close()
    executor.shutdown(timeout_sec=5.0)
    node.destroy_node()
    rclpy.try_shutdown(context=context)
    spinner.join(timeout=5.0)


def _fail(n: int = 1) -> None:
    raise FloatingPointError("the simulated instability")


def test_a_failing_physics_tick_aborts_the_goal_stops_physics_and_refuses_goals(node, ros_client, ros_log):
    states: Messages[JointState] = Messages()
    subscription = ros_client.node.create_subscription(JointState, f"{NAMESPACE}/joint_states", states, 50)
    action = ros_client.action_client(FJT, f"{NAMESPACE}/joint_trajectory_controller/follow_joint_trajectory")
    try:
        states.wait_for(timeout=30.0, what="joint states from the in-process arm node")
        assert action.wait_for_server(timeout_sec=10.0)
        goal = FJT.Goal(trajectory=trajectory(list(JOINTS), [(3.0, TARGET)]), goal_time_tolerance=to_duration(1.0))
        goal.goal_tolerance = [JointTolerance(name=n, position=0.01) for n in JOINTS]
        handle = ros_client.wait(action.send_goal_async(goal))
        assert handle.accepted
        states.wait_for(lambda msg: np.max(np.abs(positions(msg) - HOME)) > 0.02, start=len(states),
                        what="the arm moving")
        start = len(ros_log)
        node.backend.step = _fail
        response = ros_client.wait(handle.get_result_async())
        assert response.status == GoalStatus.STATUS_ABORTED
        assert f"physics stopped after an error in the simulation: {FAILURE}" in response.result.error_string
        node._physics.join(timeout=5.0)
        assert not node._physics.is_alive(), "physics kept ticking after the failure"
        assert not ros_client.wait(action.send_goal_async(goal)).accepted
        logged(ros_log, f"goal rejected: INVALID_GOAL: physics stopped after an error in the simulation: {FAILURE}",
               start=start)
        errors = [line.msg for line in ros_log.messages[start:] if line.msg.startswith("physics stopped")]
        assert len(errors) == 1 and "restart the node" in errors[0], errors  # logged once, saying what to do
    finally:
        ros_client.destroy(action)
        ros_client.destroy(subscription)


def test_a_goal_accepted_before_a_reset_never_starts_after_it(node, ros_client):
    """A reset that arrives between a goal's acceptance and its start (the goal runs in a thread of its own) used to
    leave the arm at home and then run the goal from there. Here the reset is called at exactly that moment: from
    the goal's thread, just before it starts. The goal ends aborted and the arm stays at home."""
    states: Messages[JointState] = Messages()
    subscription = ros_client.node.create_subscription(JointState, f"{NAMESPACE}/joint_states", states, 50)
    action = ros_client.action_client(FJT, f"{NAMESPACE}/joint_trajectory_controller/follow_joint_trajectory")
    reset = ros_client.between_waits(lambda: ros_client.node.create_client(Trigger, f"{NAMESPACE}/arm_node/reset"))
    check = node.controller.check

    def reset_then_check(goal, *measured):
        if not measured:  # the check made when the goal starts, in its thread
            assert ros_client.wait(reset.call_async(Trigger.Request())).success
        return check(goal, *measured)

    try:
        states.wait_for(timeout=30.0, what="joint states from the in-process arm node")
        assert action.wait_for_server(timeout_sec=10.0) and reset.wait_for_service(timeout_sec=10.0)
        node.controller.check = reset_then_check
        goal = FJT.Goal(trajectory=trajectory(list(JOINTS), [(0.5, TARGET)]))
        handle = ros_client.wait(action.send_goal_async(goal))
        assert handle.accepted
        response = ros_client.wait(handle.get_result_async())
        assert response.status == GoalStatus.STATUS_ABORTED, response
        assert response.result.error_string == "the simulation was reset after the goal was accepted"
        after = states.stamped_after(seconds(states.latest().header.stamp) + 1.0)  # past the goal's 0.5 s
        assert np.max(np.abs(positions(after) - HOME)) < 1e-3, "the arm moved after the reset"
    finally:
        ros_client.destroy(action)
        ros_client.destroy(reset)
        ros_client.destroy(subscription)
