"""control_msgs/action/FollowJointTrajectory as ros2_control drivers use it.

The type comes from a system ROS 2 install or, without one, from interfaces/control_msgs built by
scripts/build_interfaces.sh (scripts/bootstrap.sh runs it). These tests pin the field layout and the
RIHS01 type hashes of the control_msgs release in ROS 2 Kilted (6.3.0 and later), then run a real
goal -> feedback -> result exchange between two processes.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

# RIHS01 hashes. Goal, Result, the SendGoal/GetResult services and the tolerance messages are the
# values in upstream's generated code; they did not change when 6.3.0 added the two feedback indices.
# Feedback, FeedbackMessage and the action itself carry those indices, so their values are the ones
# this definition produces (the same pipeline reproduces upstream's pre-6.3 hashes exactly).
_FJT = "control_msgs/action/FollowJointTrajectory"
EXPECTED_HASHES = {
    "control_msgs/msg/JointTolerance": "c254f9cece0f3b733017b6990fd46d1326e25242d6b8844398c97d9a88e7d648",
    "control_msgs/msg/JointComponentTolerance": "739ea7566931944d33830fa10f1bf5e7a7fbdc3172bce7a7eaac642bd6e3ffa4",
    f"{_FJT}_Goal": "8a9060704b269608f5a340934cc26e66869dd14bdac29e2e7fd9ec8b9882d205",
    f"{_FJT}_Result": "8002e99ed2c14c6faa522f2a93c26d744c5982f254f9e98ff9c6f19789bdb220",
    f"{_FJT}_SendGoal": "b13789dddc325a7a962825c45e28c77d37237ec129dd0c34dc5994562938c57f",
    f"{_FJT}_GetResult": "e3ceb38e3e1867c8dc0f46014df26e90eb93422f27e9e97f936e07f94be4bc8b",
    f"{_FJT}_Feedback": "0bb018d181bdc6384dd75365480967bd1d6eaee4ef3dd597c64cd0b8bdc10867",
    f"{_FJT}_FeedbackMessage": "95618cc73912d99b9acaa17d2da5e832cb0bfdeede7534fa8ec600feca2a6c4b",
    _FJT: "ff29901b2693f5deb847e96084a1c2cdb26e70b7c847be21859b70a55fb29cf0",
}

GOAL_FIELDS = [
    ("trajectory", "trajectory_msgs/JointTrajectory"),
    ("multi_dof_trajectory", "trajectory_msgs/MultiDOFJointTrajectory"),
    ("path_tolerance", "sequence<control_msgs/JointTolerance>"),
    ("component_path_tolerance", "sequence<control_msgs/JointComponentTolerance>"),
    ("goal_tolerance", "sequence<control_msgs/JointTolerance>"),
    ("component_goal_tolerance", "sequence<control_msgs/JointComponentTolerance>"),
    ("goal_time_tolerance", "builtin_interfaces/Duration"),
]
RESULT_FIELDS = [("error_code", "int32"), ("error_string", "string")]
FEEDBACK_FIELDS = [
    ("header", "std_msgs/Header"),
    ("joint_names", "sequence<string>"),
    ("desired", "trajectory_msgs/JointTrajectoryPoint"),
    ("actual", "trajectory_msgs/JointTrajectoryPoint"),
    ("error", "trajectory_msgs/JointTrajectoryPoint"),
    ("index", "int32"),
    ("multi_dof_joint_names", "sequence<string>"),
    ("multi_dof_desired", "trajectory_msgs/MultiDOFJointTrajectoryPoint"),
    ("multi_dof_actual", "trajectory_msgs/MultiDOFJointTrajectoryPoint"),
    ("multi_dof_error", "trajectory_msgs/MultiDOFJointTrajectoryPoint"),
    ("multi_dof_index", "int32"),
]
RESULT_CONSTANTS = {
    "SUCCESSFUL": 0,
    "INVALID_GOAL": -1,
    "INVALID_JOINTS": -2,
    "OLD_HEADER_TIMESTAMP": -3,
    "PATH_TOLERANCE_VIOLATED": -4,
    "GOAL_TOLERANCE_VIOLATED": -5,
}

JOINTS = [f"panda_joint{i}" for i in range(1, 8)]


def _fjt():
    try:
        from control_msgs.action import FollowJointTrajectory
    except ImportError as exc:  # pragma: no cover - only on a venv set up by hand
        pytest.fail(f"control_msgs is not importable ({exc}); run scripts/build_interfaces.sh .venv")
    return FollowJointTrajectory


def _share_dir() -> pathlib.Path:
    """share/control_msgs of whichever prefix the imported package comes from."""
    import control_msgs

    for parent in pathlib.Path(control_msgs.__file__).resolve().parents:
        candidate = parent / "share" / "control_msgs"
        if (candidate / "package.xml").is_file():
            return candidate
    pytest.fail(f"no share/control_msgs above {control_msgs.__file__}")


def _installed_hashes() -> dict[str, str]:
    hashes = {}
    for rel in ("action/FollowJointTrajectory.json", "msg/JointTolerance.json", "msg/JointComponentTolerance.json"):
        data = json.loads((_share_dir() / rel).read_text())
        for entry in data["type_hashes"]:
            hashes[entry["type_name"]] = entry["hash_string"]
    return hashes


def _goal(fjt, joints=JOINTS):
    from builtin_interfaces.msg import Duration
    from control_msgs.msg import JointComponentTolerance, JointTolerance
    from geometry_msgs.msg import Transform
    from trajectory_msgs.msg import JointTrajectoryPoint, MultiDOFJointTrajectoryPoint

    goal = fjt.Goal()
    goal.trajectory.joint_names = list(joints)
    for k in range(3):
        goal.trajectory.points.append(
            JointTrajectoryPoint(
                positions=[0.1 * k + 0.01 * j for j in range(len(joints))],
                velocities=[0.0] * len(joints),
                time_from_start=Duration(sec=0, nanosec=(k + 1) * 20_000_000),
            )
        )
    goal.multi_dof_trajectory.joint_names = ["base"]
    goal.multi_dof_trajectory.points.append(MultiDOFJointTrajectoryPoint(transforms=[Transform()]))
    goal.path_tolerance = [JointTolerance(name=j, position=0.05, velocity=-1.0) for j in joints]
    goal.goal_tolerance = [JointTolerance(name=joints[0], position=0.01, acceleration=0.5)]
    goal.component_path_tolerance = [
        JointComponentTolerance(joint_name="base", component=JointComponentTolerance.TRANSLATION, position=0.02)
    ]
    goal.component_goal_tolerance = [
        JointComponentTolerance(joint_name="base", component=JointComponentTolerance.ROTATION, velocity=0.1)
    ]
    goal.goal_time_tolerance = Duration(sec=1, nanosec=500_000_000)
    return goal


def test_action_type_imports():
    fjt = _fjt()
    from control_msgs.msg import JointComponentTolerance, JointTolerance

    assert fjt.Goal.__name__ == "FollowJointTrajectory_Goal"
    assert fjt.Result.__name__ == "FollowJointTrajectory_Result"
    assert fjt.Feedback.__name__ == "FollowJointTrajectory_Feedback"
    assert JointTolerance.get_fields_and_field_types() == {
        "name": "string",
        "position": "double",
        "velocity": "double",
        "acceleration": "double",
    }
    assert list(JointComponentTolerance.get_fields_and_field_types().items()) == [
        ("joint_name", "string"),
        ("component", "uint16"),
        ("position", "double"),
        ("velocity", "double"),
        ("acceleration", "double"),
    ]
    components = ("X_AXIS", "Y_AXIS", "Z_AXIS", "TRANSLATION", "ROTATION")
    assert [getattr(JointComponentTolerance, c) for c in components] == [1, 2, 3, 4, 5]


def test_goal_result_feedback_fields_in_upstream_order():
    fjt = _fjt()
    assert list(fjt.Goal.get_fields_and_field_types().items()) == GOAL_FIELDS
    assert list(fjt.Result.get_fields_and_field_types().items()) == RESULT_FIELDS
    assert list(fjt.Feedback.get_fields_and_field_types().items()) == FEEDBACK_FIELDS


def test_result_constants():
    fjt = _fjt()
    for name, value in RESULT_CONSTANTS.items():
        assert getattr(fjt.Result, name) == value, name
    assert fjt.Result().error_code == fjt.Result.SUCCESSFUL


def test_type_hashes_match_kilted_control_msgs():
    installed = _installed_hashes()
    for type_name, digest in EXPECTED_HASHES.items():
        assert installed.get(type_name) == f"RIHS01_{digest}", type_name


def test_serialization_round_trip():
    fjt = _fjt()
    from rclpy.serialization import deserialize_message, serialize_message
    from trajectory_msgs.msg import JointTrajectoryPoint

    goal = _goal(fjt)
    data = serialize_message(goal)
    assert isinstance(data, bytes) and len(data) > 200
    assert deserialize_message(data, fjt.Goal) == goal

    feedback = fjt.Feedback(joint_names=JOINTS, index=2, multi_dof_index=-1)
    feedback.header.frame_id = "base_link"
    feedback.actual = JointTrajectoryPoint(positions=[0.5] * 7)
    assert deserialize_message(serialize_message(feedback), fjt.Feedback) == feedback

    result = fjt.Result(error_code=fjt.Result.PATH_TOLERANCE_VIOLATED, error_string="panda_joint4 off by 0.2 rad")
    assert deserialize_message(serialize_message(result), fjt.Result) == result


SERVER = textwrap.dedent(
    """
    import sys, time
    import rclpy
    from rclpy.action import ActionServer
    from rclpy.executors import SingleThreadedExecutor
    from control_msgs.action import FollowJointTrajectory as FJT

    action_name, joints = sys.argv[1], sys.argv[2].split(",")

    def execute(goal_handle):
        goal = goal_handle.request
        result = FJT.Result()
        unknown = [j for j in goal.trajectory.joint_names if j not in joints]
        if unknown:
            goal_handle.abort()
            result.error_code = FJT.Result.INVALID_JOINTS
            result.error_string = "unknown joints: " + ",".join(unknown)
            return result
        last = goal.trajectory.points[-1]
        feedback = FJT.Feedback(joint_names=list(goal.trajectory.joint_names), index=len(goal.trajectory.points) - 1)
        feedback.desired = last
        feedback.actual.positions = list(last.positions)
        goal_handle.publish_feedback(feedback)
        time.sleep(0.2)  # let the feedback arrive before the result
        goal_handle.succeed()
        result.error_code = FJT.Result.SUCCESSFUL
        result.error_string = "reached %d points, %d path tolerances" % (
            len(goal.trajectory.points), len(goal.path_tolerance))
        return result

    rclpy.init()
    node = rclpy.create_node("fjt_test_server")
    server = ActionServer(node, FJT, action_name, execute)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    print("READY", flush=True)
    deadline = time.monotonic() + 60.0  # never outlive a stuck test
    while rclpy.ok() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)
    """
)


def _wait(executor, future, timeout):
    end = time.monotonic() + timeout
    while not future.done() and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    assert future.done(), "timed out waiting for the action server"
    return future.result()


def test_two_process_round_trip(tmp_path, monkeypatch):
    fjt = _fjt()
    import rclpy
    from action_msgs.msg import GoalStatus
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor

    domain = str(10 + os.getpid() % 90)
    for key, value in {
        "ROS_DOMAIN_ID": domain,
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_LOG_DIR": str(tmp_path / "ros_log"),
    }.items():
        monkeypatch.setenv(key, value)
    action_name = f"/fjt_test_{uuid.uuid4().hex[:8]}/follow_joint_trajectory"

    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, action_name, ",".join(JOINTS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        assert server.stdout.readline().strip() == "READY", "action server process did not start"
        node = rclpy.create_node("fjt_test_client", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        client = ActionClient(node, fjt, action_name)
        assert client.wait_for_server(timeout_sec=15.0), "action server not discovered"

        feedbacks = []
        handle = _wait(executor, client.send_goal_async(_goal(fjt), feedback_callback=feedbacks.append), 10.0)
        assert handle.accepted
        response = _wait(executor, handle.get_result_async(), 10.0)
        assert response.status == GoalStatus.STATUS_SUCCEEDED
        assert response.result.error_code == fjt.Result.SUCCESSFUL
        assert response.result.error_string == "reached 3 points, 7 path tolerances"
        assert feedbacks, "no feedback received"
        assert feedbacks[-1].feedback.index == 2
        assert list(feedbacks[-1].feedback.joint_names) == JOINTS

        bad = _goal(fjt, joints=JOINTS[:-1] + ["wrist_roll"])
        handle = _wait(executor, client.send_goal_async(bad), 10.0)
        response = _wait(executor, handle.get_result_async(), 10.0)
        assert response.status == GoalStatus.STATUS_ABORTED
        assert response.result.error_code == fjt.Result.INVALID_JOINTS
        assert response.result.error_string == "unknown joints: wrist_roll"

        # The hash the server advertises on the wire is the one pinned above.
        infos = node.get_publishers_info_by_topic(f"{action_name}/_action/feedback")
        assert infos, "feedback publisher not visible in the graph"
        expected = "RIHS01_" + EXPECTED_HASHES[f"{_FJT}_FeedbackMessage"]
        assert {str(info.topic_type_hash) for info in infos} == {expected}
        client.destroy()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
