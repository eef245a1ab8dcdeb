"""The simulated arm node against a real rclpy client: joint states, the joint trajectory controller's
action and topic, services, camera and shutdown, each node a real subprocess (see conftest.py)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from action_msgs.msg import GoalStatus
from control_msgs.action import FollowJointTrajectory
from control_msgs.msg import JointTolerance
from ros_events import Messages, logged, matched_publisher
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from mtrl_robot.arms.families import load_family
from mtrl_robot.backends.controller import MAX_POINTS
from mtrl_robot.backends.trajectory import JointTrajectory as Trajectory
from mtrl_robot.ros.conversions import (
    goal_from_msg,
    randomization_from_json,
    randomization_to_json,
    seconds,
    to_duration,
    to_time,
    trajectory_from_msg,
    trajectory_to_msg,
)

FJT = FollowJointTrajectory
PANDA = load_family("panda")
JOINTS = list(PANDA.joint_names)
HOME = PANDA.home_q
TARGET = HOME + np.array([0.3, 0.2, -0.2, 0.3, 0.2, -0.3, 0.4])  # within the limits, about 0.3 rad from home
TOLERANCE = 0.01  # rad, goal tolerance asked for in the tests
CODE_NAMES = {getattr(FJT.Result, name): name for name in ("INVALID_GOAL", "INVALID_JOINTS", "OLD_HEADER_TIMESTAMP")}


def trajectory(names: list[str], points: list[tuple[float, np.ndarray]]) -> JointTrajectory:
    """At rest at every point: cubic segments (position-only ones would step the velocity, which is refused)."""
    msg = JointTrajectory(joint_names=list(names))
    msg.points = [JointTrajectoryPoint(positions=[float(v) for v in q], velocities=[0.0] * len(q),
                                       time_from_start=to_duration(t)) for t, q in points]
    return msg


def goal_to(q: np.ndarray, duration: float, names: list[str] = JOINTS, goal_tolerance: float = TOLERANCE,
            goal_time: float = 1.0) -> FJT.Goal:
    """A one-point goal to ``q`` (given in the robot's joint order), joints listed in the order ``names``."""
    order = [JOINTS.index(n) for n in names]
    goal = FJT.Goal(trajectory=trajectory(names, [(duration, q[order])]), goal_time_tolerance=to_duration(goal_time))
    goal.goal_tolerance = [JointTolerance(name=n, position=goal_tolerance) for n in names]
    return goal


def positions(msg) -> np.ndarray:
    """The positions of a JointState message in the robot's joint order, joints matched by name."""
    by_name = dict(zip(msg.name, msg.position, strict=True))
    return np.array([by_name[n] for n in JOINTS])


class Arm:
    """Client side of one arm node: its joint states, action and services."""

    def __init__(self, client, node, states):
        self.client, self.node, self.states = client, node, states
        self.action = client.action_client(FJT, node.name("joint_trajectory_controller/follow_joint_trajectory"))
        assert self.action.wait_for_server(timeout_sec=10.0), "action server not found"

    def send(self, goal: FJT.Goal, feedback: Messages | None = None):
        handle = self.client.wait(self.action.send_goal_async(goal, feedback_callback=feedback))
        assert handle.accepted
        return handle

    def rejected(self, goal: FJT.Goal) -> bool:
        """Whether the controller rejects ``goal`` when it receives it."""
        return not self.client.wait(self.action.send_goal_async(goal)).accepted

    def result(self, handle, timeout: float = 10.0) -> tuple[int, FJT.Result]:
        response = self.client.wait(handle.get_result_async(), timeout)
        return response.status, response.result

    def run(self, goal: FJT.Goal) -> tuple[int, FJT.Result]:
        return self.result(self.send(goal))

    def call(self, service: str) -> Trigger.Response:
        client = self.client.node.create_client(Trigger, self.node.name(service))
        try:
            assert client.wait_for_service(timeout_sec=10.0), f"{service} not found"
            return self.client.wait(client.call_async(Trigger.Request()))
        finally:
            self.client.destroy(client)

    def at(self, q: np.ndarray, later: float = 0.0) -> np.ndarray:
        """Measured minus ``q`` (robot joint order), joints matched by name, in the first joint state stamped
        ``later`` s after now."""
        return positions(self.states.after(time.time() + later)) - q

    def moved(self, q: np.ndarray, by: float = 0.02) -> None:
        """Wait for a joint state more than ``by`` rad from ``q`` on some joint (the arm is under way)."""
        self.states.wait_for(lambda msg: np.max(np.abs(positions(msg) - q)) > by, start=len(self.states),
                             what=f"joint state {by} rad from where the arm was")

    def publisher(self):
        """A publisher on the arm's trajectory topic, returned once the arm subscribes to it."""
        return matched_publisher(self.client.node, JointTrajectory,
                                 self.node.name("joint_trajectory_controller/joint_trajectory"))

    def reset(self) -> None:
        assert self.call("~/reset").success

    def close(self) -> None:
        self.client.destroy(self.action)


def test_conversions_round_trip():
    names = tuple(JOINTS[::-1])
    times = np.array([0.25, 1.0, 2.000000001])
    positions = np.random.default_rng(0).uniform(-1, 1, (3, len(names)))
    for velocities in (None, np.zeros_like(positions)):
        back = trajectory_from_msg(trajectory_to_msg(Trajectory(names, times, positions, velocities)))
        assert back.joint_names == names
        np.testing.assert_allclose(back.times, times, atol=1e-9)
        np.testing.assert_array_equal(back.positions, positions)
        assert (back.velocities is None) == (velocities is None)
    assert seconds(to_duration(-0.25)) == -0.25 and seconds(to_time(3.999999999999)) == 4.0
    ragged = trajectory_to_msg(Trajectory(names, times, positions))
    ragged.points[1].positions = ragged.points[1].positions[:3]
    with pytest.raises(ValueError, match="point 1 has 3 positions for 7 joint names"):
        trajectory_from_msg(ragged)
    sampled, applied = randomization_from_json(randomization_to_json({"puck.mass": 0.1}, {"puck.mass": math.nan}))
    assert sampled == {"puck.mass": 0.1} and math.isnan(applied["puck.mass"])


def test_a_goal_with_too_many_points_is_refused_before_conversion():
    points = [JointTrajectoryPoint()] * (MAX_POINTS + 1)  # malformed too: conversion would name point 0
    goal = FJT.Goal(trajectory=JointTrajectory(joint_names=list(JOINTS), points=points))
    with pytest.raises(ValueError, match=f"{MAX_POINTS + 1} points; this controller takes at most {MAX_POINTS}"):
        goal_from_msg(goal, 0.0)


@pytest.fixture(scope="module")
def arm(module_launcher, ros_client):
    node, states = module_launcher.start(scene="puck_table", camera=True, camera_rate=5.0)
    arm = Arm(ros_client, node, states)
    yield arm
    arm.close()


@pytest.fixture
def home(arm):
    """The arm, reset to home."""
    arm.reset()
    return arm


def test_joint_states_rate_and_names(arm):
    """The node's publication rate: messages received whose stamps fall in a 2 s window (a busy client
    delays messages, so arrival times would measure the client too)."""
    start = len(arm.states.messages)
    t0 = seconds(arm.states.after(time.time()).header.stamp)
    arm.states.after(t0 + 2.0)
    stamps = np.array([seconds(m.header.stamp) for m in arm.states.messages[start:]])
    assert np.all(np.diff(stamps) > 0)
    rate = np.count_nonzero((stamps >= t0) & (stamps < t0 + 2.0)) / 2.0
    assert rate >= 200.0, f"{rate:.0f} Hz"
    msg = arm.states.latest()
    assert list(msg.name) == JOINTS
    assert len(msg.position) == len(msg.velocity) == len(JOINTS)


def test_goal_with_shuffled_joints_reaches_the_target(home):
    names = [JOINTS[i] for i in (3, 0, 6, 2, 5, 1, 4)]
    feedback = Messages()
    status, result = home.result(home.send(goal_to(TARGET, 1.0, names), feedback))
    assert (status, result.error_code) == (GoalStatus.STATUS_SUCCEEDED, FJT.Result.SUCCESSFUL), result.error_string
    assert np.max(np.abs(home.at(TARGET))) <= TOLERANCE
    assert len(feedback) and list(feedback.latest().feedback.joint_names) == JOINTS
    assert len(feedback.latest().feedback.error.positions) == len(JOINTS)


def renamed(goal: FJT.Goal, last: str) -> FJT.Goal:
    """``goal`` with its last joint renamed ``last``."""
    goal.trajectory.joint_names = list(goal.trajectory.joint_names[:-1]) + [last]
    return goal


def test_unknown_joint_is_rejected_as_invalid_joints(arm, ros_log):
    start = len(ros_log)
    assert arm.rejected(renamed(goal_to(TARGET, 1.0), "wrist_roll"))
    assert "wrist_roll" in logged(ros_log, "goal rejected: INVALID_JOINTS", start=start).msg


def test_out_of_limit_goal_is_rejected_and_the_node_keeps_serving(home, ros_log):
    q = TARGET.copy()
    q[3] = PANDA.upper[3] + 0.5
    start = len(ros_log)
    assert home.rejected(goal_to(q, 1.0))
    line = logged(ros_log, "goal rejected: INVALID_GOAL", start=start).msg
    assert "panda_joint4" in line and "outside" in line
    status, result = home.run(goal_to(TARGET, 0.8))
    assert result.error_code == FJT.Result.SUCCESSFUL, result.error_string


def test_a_goal_that_cannot_start_from_the_measured_position_is_rejected(home, ros_log):
    far = FJT.Goal(trajectory=trajectory(JOINTS, [(0.0, TARGET), (1.0, TARGET)]))
    start = len(ros_log)
    assert home.rejected(far)
    assert "time_from_start > 0" in logged(ros_log, "goal rejected: INVALID_GOAL", start=start).msg


def _malformed_goals() -> dict[str, tuple[FJT.Goal, int]]:
    short = goal_to(TARGET, 1.0)
    short.trajectory.points[0].positions = list(TARGET[:5])
    nan = goal_to(TARGET, 1.0)
    nan.trajectory.points[0].positions[2] = math.nan
    empty = goal_to(TARGET, 1.0)
    empty.trajectory.points = []
    backwards = FJT.Goal(trajectory=trajectory(JOINTS, [(1.0, HOME), (0.5, TARGET)]))
    moving_end = goal_to(TARGET, 1.0)
    moving_end.trajectory.points[0].velocities = [0.1] * len(JOINTS)
    too_fast = goal_to(TARGET, 0.01)
    bad_tolerance = goal_to(TARGET, 1.0)
    bad_tolerance.path_tolerance = [JointTolerance(name=JOINTS[0], position=-2.0)]
    stale = goal_to(TARGET, 1.0)
    stale.trajectory.header.stamp = to_time(time.time() - 60.0)
    duplicate = renamed(goal_to(TARGET, 1.0), JOINTS[0])
    accelerations = goal_to(TARGET, 1.0)
    accelerations.trajectory.points[0].accelerations = [0.0] * 3
    return {"mismatched lengths": (short, FJT.Result.INVALID_GOAL), "NaN": (nan, FJT.Result.INVALID_GOAL),
            "accelerations of the wrong length": (accelerations, FJT.Result.INVALID_GOAL),
            "no points": (empty, FJT.Result.INVALID_GOAL), "times decrease": (backwards, FJT.Result.INVALID_GOAL),
            "moving at the end": (moving_end, FJT.Result.INVALID_GOAL),
            "over the velocity limit": (too_fast, FJT.Result.INVALID_GOAL),
            "illegal tolerance": (bad_tolerance, FJT.Result.INVALID_GOAL),
            "ended in the past": (stale, FJT.Result.OLD_HEADER_TIMESTAMP),
            "duplicate joint": (duplicate, FJT.Result.INVALID_JOINTS)}


def test_malformed_goals_are_rejected_with_their_code_logged_and_the_node_keeps_serving(home, ros_log):
    for case, (goal, code) in _malformed_goals().items():
        start = len(ros_log)
        assert home.rejected(goal), case
        logged(ros_log, f"goal rejected: {CODE_NAMES[code]}: ", start=start)
    publisher = home.publisher()
    start = len(ros_log)
    published = 0
    for case, (goal, _) in _malformed_goals().items():
        if case != "illegal tolerance":  # its trajectory is fine
            publisher.publish(goal.trajectory)
            published += 1
    ros_log.wait_for(lambda _: sum("ignoring trajectory on the topic" in line.msg
                                   for line in ros_log.messages[start:]) == published,
                     start=start, what=f"{published} refusals of topic trajectories")
    home.client.destroy(publisher)
    assert np.max(np.abs(home.at(HOME))) < 1e-3  # refused goals and trajectories never moved the arm
    status, result = home.run(goal_to(TARGET, 0.8))
    assert result.error_code == FJT.Result.SUCCESSFUL, result.error_string


def test_path_and_goal_tolerance_violations(home):
    tight_path = goal_to(TARGET, 0.5)
    tight_path.path_tolerance = [JointTolerance(name=n, position=1e-6) for n in JOINTS]
    status, result = home.run(tight_path)
    assert (status, result.error_code) == (GoalStatus.STATUS_ABORTED, FJT.Result.PATH_TOLERANCE_VIOLATED)
    assert "path tolerance" in result.error_string
    status, result = home.run(goal_to(HOME, 0.5, goal_tolerance=1e-9, goal_time=0.05))
    assert (status, result.error_code) == (GoalStatus.STATUS_ABORTED, FJT.Result.GOAL_TOLERANCE_VIOLATED)


def test_a_new_goal_preempts_the_active_one(home):
    first = home.send(goal_to(TARGET, 3.0))
    home.moved(HOME)
    second = home.send(goal_to(HOME, 1.0))
    status, result = home.result(first)
    assert (status, result.error_code) == (GoalStatus.STATUS_ABORTED, FJT.Result.INVALID_GOAL)
    assert "preempted" in result.error_string
    status, result = home.result(second)
    assert result.error_code == FJT.Result.SUCCESSFUL, result.error_string
    assert np.max(np.abs(home.at(HOME))) <= TOLERANCE


def test_cancel_holds_position(home):
    handle = home.send(goal_to(TARGET, 3.0))
    home.moved(HOME, 0.05)
    home.client.wait(handle.cancel_goal_async())
    status, result = home.result(handle)
    assert (status, result.error_code) == (GoalStatus.STATUS_CANCELED, FJT.Result.SUCCESSFUL)
    held = home.at(HOME)
    np.testing.assert_allclose(home.at(HOME, later=0.5), held, atol=5e-3)
    assert np.max(np.abs(held)) > 0.02  # it had moved and stopped short of the target
    assert np.max(np.abs(home.at(TARGET))) > 0.1


def test_topic_interface_moves_the_arm(home):
    publisher = home.publisher()
    names = JOINTS[::-1]
    publisher.publish(trajectory(names, [(0.6, TARGET[::-1])]))
    home.states.wait_for(lambda msg: np.max(np.abs(positions(msg) - TARGET)) <= 0.02, timeout=5.0,
                         start=len(home.states), what="the arm following the topic trajectory to its end")
    home.client.destroy(publisher)


def test_randomize_returns_sampled_values_in_range(arm):
    replies = [arm.call("~/randomize") for _ in range(2)]
    assert all(r.success for r in replies), replies[0].message
    (sampled, applied), (again, _) = (randomization_from_json(r.message) for r in replies)
    assert sampled != again
    assert 0.15 <= sampled["puck.friction.slide_x"] <= 0.95
    assert 0.7 <= sampled["puck.friction.slide_y"] / sampled["puck.friction.slide_x"] <= 1.3
    assert 0.001 <= sampled["puck.friction.torsional"] <= 0.05
    assert all(0.01 <= sampled[f"puck.friction.roll_{a}"] <= 0.3 for a in "xy")
    assert 0.05 <= sampled["puck.mass"] <= 0.5
    for name, value in sampled.items():
        assert applied[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    assert json.loads(replies[0].message).keys() == {"sampled", "applied"}


def test_reset_returns_home(home):
    home.send(goal_to(TARGET, 1.0))
    home.moved(HOME)
    assert home.call("~/reset").success
    measured = home.states.after(time.time())
    np.testing.assert_allclose(measured.position, HOME, atol=1e-3)
    np.testing.assert_allclose(measured.velocity, 0.0, atol=1e-2)


def test_camera_publishes_images_and_camera_info(arm):
    images, infos = Messages(), Messages()
    node = arm.client.node
    subscriptions = [node.create_subscription(Image, arm.node.name("camera/image_raw"), images, 1),
                     node.create_subscription(CameraInfo, arm.node.name("camera/camera_info"), infos, 1)]
    try:
        image = images.wait_for(timeout=5.0, what="camera image")
        info = infos.wait_for(timeout=5.0, what="camera info")
    finally:
        for subscription in subscriptions:
            arm.client.destroy(subscription)
    assert (image.width, image.height, image.encoding) == (320, 240, "rgb8")
    assert len(image.data) == 320 * 240 * 3 and max(image.data) > 0
    assert (info.width, info.height) == (320, 240) and info.k[0] > 0
    assert info.header.frame_id == image.header.frame_id


def test_pybullet_backend(launcher, ros_client):
    node, states = launcher.start("/bullet", backend="pybullet")
    bullet = Arm(ros_client, node, states)
    try:
        status, result = bullet.run(goal_to(TARGET, 1.0, JOINTS[::-1]))
        assert result.error_code == FJT.Result.SUCCESSFUL, result.error_string
        assert np.max(np.abs(bullet.at(TARGET))) <= TOLERANCE
    finally:
        bullet.close()


def test_sigterm_exits_cleanly(launcher, ros_client):
    node, states = launcher.start("/sigterm")
    doomed = Arm(ros_client, node, states)
    try:
        feedback = Messages()
        result_future = doomed.send(goal_to(TARGET, 5.0), feedback).get_result_async()
        feedback.wait_for(what="feedback of the running goal")
        assert node.stop() == 0  # SIGTERM
        response = ros_client.wait(result_future, timeout=5.0)
        status, result = response.status, response.result
        assert status == GoalStatus.STATUS_ABORTED and "shutting down" in result.error_string
    finally:
        doomed.close()
    assert "Traceback" not in node.output(), node.output()


def test_a_family_file_is_a_robot_the_node_simulates(launcher, ros_client, tmp_path):
    import pybullet_data

    urdf = f"{pybullet_data.getDataPath()}/kuka_iiwa/model.urdf"
    family = tmp_path / "iiwa.yaml"
    family.write_text(f"urdf: {urdf}\nflange_link: lbr_iiwa_link_7\nhome: [0, 0.6, 0, -1.2, 0, 0.8, 0]\n")
    node, states = launcher.start("/iiwa", robot=str(family))
    msg = states.wait_for()
    assert list(msg.name) == [f"lbr_iiwa_joint_{i}" for i in range(1, 8)]
    assert np.allclose(msg.position, [0, 0.6, 0, -1.2, 0, 0.8, 0], atol=0.02)
