"""End to end through ROS on a held-out simulated arm: record K demos, adapt, reach fresh targets with the policy.

For a UR5e (six joints), a one-family run of the demo preset is meta-trained first; arm_node, demo_recorder,
adaptation_node and policy_node run as real subprocesses in this test's ROS domain (see conftest.py), the arm node
serving the controller of the family's simulated hardware preset. A Panda goes through the same nodes in
test_teach.py, started by the few-shot launch.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from control_msgs.action import FollowJointTrajectory
from geometry_msgs.msg import PointStamped
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from node_process import NodeProcess
from ros_events import Messages, matched_publisher, publish_acknowledged
from rosbags.highlevel import AnyReader
from rosbags.interfaces import QosDurability
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from mtrl_robot.arms import population as populations
from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.arms.urdf import arm_to_urdf
from mtrl_robot.backends.trajectory import JointTrajectory
from mtrl_robot.hardware.presets import load_preset
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.motions.reach import plan_robot_demos
from mtrl_robot.motions.recording import convert_recording
from mtrl_robot.ros.conversions import point_msg, seconds, trajectory_to_msg
from mtrl_robot.ros.markers import PATH_ID, REACHED_ID, TARGET_ID
from mtrl_robot.ros.policy_node import fit_limits
from mtrl_robot.ros.robot_description import LATCHED_QOS
from mtrl_robot.ros.run import node_command
from mtrl_robot.tools.launch_runner import parse_launch

K = 5
LAUNCH = Path(__file__).resolve().parents[2] / "launch"
HARDWARE = {"ur5e": "sim_ur5e"}  # family → hardware preset of the simulated arm node
REST_WINDOW = 0.3  # s of joint-state stamps over which the arm must move less than REST_MOTION to be at rest
REST_MOTION = 1e-4  # rad
PLAN_ATTEMPTS = 3  # targets sent before the policy node must have planned one


def start_node(module: str, log: Path, env: dict[str, str], **parameters: object) -> NodeProcess:
    """One of our nodes (``mtrl_robot.ros.<module>``) as a subprocess, output in ``log``."""
    return NodeProcess(node_command(module, parameters), log, env)


def call(client, name: str, timeout: float = 30.0) -> Trigger.Response:
    service = client.node.create_client(Trigger, name)
    try:
        assert service.wait_for_service(timeout_sec=30.0), f"{name} not found"
        return client.wait(service.call_async(Trigger.Request()), timeout)
    finally:
        client.destroy(service)


def settled(states, names: tuple[str, ...], first: int, timeout: float = 15.0) -> np.ndarray:
    """Joint positions (robot order) once the arm has moved away from where it was at joint state ``first`` and
    then come to rest: no joint moving more than ``REST_MOTION`` over ``REST_WINDOW`` s of joint-state stamps.
    (``first`` is taken before the motion is asked for: the news that it was sent may arrive after it ended.)"""
    def positions(msg) -> np.ndarray:
        by_name = dict(zip(msg.name, msg.position, strict=True))
        return np.array([by_name[n] for n in names])

    initial = positions(states.messages[first - 1])
    states.wait_for(lambda msg: np.abs(positions(msg) - initial).max() >= 1e-3, timeout, first, "the arm moving")
    window: deque[tuple[float, np.ndarray]] = deque()  # stamps and positions since it moved, oldest first

    def at_rest(msg) -> bool:
        stamp, now = seconds(msg.header.stamp), positions(msg)
        window.append((stamp, now))
        while len(window) > 1 and window[1][0] <= stamp - REST_WINDOW:
            window.popleft()
        return window[0][0] <= stamp - REST_WINDOW and np.abs(now - window[0][1]).max() < REST_MOTION

    return positions(states.wait_for(at_rest, timeout, first, "the arm at rest"))


@pytest.fixture(scope="module", params=list(HARDWARE))
def run(request: pytest.FixtureRequest, demo_run) -> tuple[Path, Path, str]:
    """A one-family run of the demo preset, its population file and a held-out robot id."""
    return demo_run(request.param)


def wait_recorder_inputs(ros_log, start: int) -> None:
    """Wait until the recorder (started at log index ``start``) has the arm's joint states, description and fixed
    frames, so that no episode starts before it hears the arm."""
    for topic in ("/joint_states", "/robot_description", "/tf_static"):
        ros_log.wait_for(lambda log, topic=topic: log.msg.endswith(f"on {topic}"), 30.0, start, f"{topic} received")


def start_episode(client, publisher, target: np.ndarray) -> None:
    """Hand the recorder the target, then start an episode (the recorder takes the target first)."""
    publish_acknowledged(publisher, point_msg(target))
    reply = call(client, "/demo_recorder/start_episode")
    assert reply.success, reply.message


def reach(client, publisher, states, ros_log, arm, targets: np.ndarray) -> np.ndarray:
    """Flange errors (m) of the policy node reaching each target from home."""
    errors = []
    for target in targets:
        assert call(client, "/arm_node/reset").success
        states.after(time.time())  # the arm is at home in the joint states the policy node plans from
        for _ in range(PLAN_ATTEMPTS):  # the policy node may still hold a joint state from before the reset
            start, first = len(ros_log), len(states)
            publish_acknowledged(publisher, point_msg(target))
            named = str(target.round(3).tolist())
            line = ros_log.wait_for(lambda log, named=named: named in log.msg and ("reaching" in log.msg
                                                                                   or "not executed" in log.msg),
                                    30.0, start, f"the policy node's answer to {named}").msg
            if "reaching" in line:
                break
        assert "reaching" in line, line
        q = settled(states, arm.joint_names, first)
        errors.append(float(np.linalg.norm(flange_position(arm, q) - target)))
    return np.array(errors)


def check_markers(markers: Messages, arm, target: np.ndarray) -> None:
    """The policy node's markers for its last reach: the target, the planned flange path from home, and the reached
    point near the path's end, all in the base link frame."""
    def world(point) -> np.ndarray:
        base = arm.base_transform()
        return base[:3, :3] @ np.array([point.x, point.y, point.z]) + base[:3, 3]

    def shows(msg: MarkerArray) -> bool:
        by_id = {m.id: m for m in msg.markers}
        return (by_id[REACHED_ID].action == Marker.ADD
                and np.allclose(world(by_id[TARGET_ID].pose.position), target, atol=1e-9))

    by_id = {m.id: m for m in markers.wait_for(shows, 30.0, what="markers of the reached target").markers}
    assert {m.header.frame_id for m in by_id.values()} == {arm.base_link}
    path = np.array([world(p) for p in by_id[PATH_ID].points])
    assert by_id[PATH_ID].type == Marker.LINE_STRIP and len(path) >= 2
    assert np.linalg.norm(path[0] - flange_position(arm, arm.home_q)) < 1e-3  # planned from home, where it was reset
    assert np.linalg.norm(world(by_id[REACHED_ID].pose.position) - path[-1]) < 0.01


def test_record_adapt_reach(run, launcher, ros_client, ros_env, ros_log, tmp_path):
    checkpoint, population_file, robot = run
    arm = populations.load(population_file).get(robot)
    hardware = load_preset(HARDWARE[arm.family])
    robot_params = {"robot": robot, "population_file": population_file}
    _, states = launcher.start(**robot_params, controller_name=hardware.controller)
    recordings = tmp_path / "recordings"
    log_start = len(ros_log)
    nodes = [start_node("demo_recorder", tmp_path / "recorder.log", ros_env, output_dir=recordings),
             start_node("adaptation_node", tmp_path / "adaptation.log", ros_env, checkpoint=checkpoint,
                        recordings_dir=recordings, output_dir=tmp_path / "adapted", k=K, **robot_params),
             start_node("policy_node", tmp_path / "policy.log", ros_env, model=checkpoints.model_file_path(checkpoint),
                        preset=hardware.name, **robot_params)]
    client = ros_client.node
    action = ros_client.action_client(FollowJointTrajectory, hardware.action)
    try:
        assert action.wait_for_server(timeout_sec=30.0)
        wait_recorder_inputs(ros_log, log_start)
        demo_targets = matched_publisher(client, PointStamped, "/demo_target", 30.0)
        policy_targets = matched_publisher(client, PointStamped, "/target", 30.0)
        limits = hardware.safety_limits(arm)
        demos = plan_robot_demos(arm, K, seed=123)
        for i in range(K):
            assert call(ros_client, "/arm_node/reset").success
            start_episode(ros_client, demo_targets, demos.targets[i])
            planned = fit_limits(JointTrajectory(arm.joint_names, demos.times[i], demos.positions[i],
                                                 demos.velocities[i]), limits)
            goal = FollowJointTrajectory.Goal(trajectory=trajectory_to_msg(planned))
            handle = ros_client.wait(action.send_goal_async(goal))
            assert ros_client.wait(handle.get_result_async(), 30.0).result.error_code == 0
            assert call(ros_client, "/demo_recorder/stop_episode").success
        bags = sorted(p for p in recordings.iterdir())
        assert len(bags) == K and not any(p.name.startswith(".") for p in bags)
        assert len(convert_recording(bags[0], arm)) == 1

        fresh = plan_robot_demos(arm, 2, seed=456).targets
        before = reach(ros_client, policy_targets, states, ros_log, arm, fresh)
        reply = call(ros_client, "/adaptation_node/adapt", timeout=60.0)
        assert reply.success, reply.message + (tmp_path / "adaptation.log").read_text()
        markers = Messages()
        ros_client.between_waits(lambda: client.create_subscription(MarkerArray, "/policy_node/markers", markers,
                                                                    LATCHED_QOS))
        after = reach(ros_client, policy_targets, states, ros_log, arm, fresh)
        check_markers(markers, arm, fresh[-1])
        print(f"\nE2E reaching error on {robot}: before {before.mean() * 100:.2f} cm, "
              f"after K={K} adaptation {after.mean() * 100:.2f} cm")
        assert np.all(np.isfinite(after)) and after.mean() < before.mean() and after.mean() < 0.02
    finally:
        ros_client.destroy(action)
        codes = [node.stop() for node in nodes]
        logs = {node.log_path.name: node.output() for node in nodes}
    print(logs["policy.log"][-1500:])
    assert codes == [0, 0, 0], logs
    assert "latency" in logs["policy.log"]


def test_recorder_sigterm_leaves_complete_bag_that_replays_visually(launcher, ros_client, ros_env, ros_log, tmp_path):
    start = len(ros_log)
    _, states = launcher.start()
    recorder = start_node("demo_recorder", tmp_path / "recorder.log", ros_env, output_dir=tmp_path / "rec")
    try:
        wait_recorder_inputs(ros_log, start)  # the description and fixed frames are transient local
        publisher = matched_publisher(ros_client.node, PointStamped, "/demo_target", 30.0)
        start_episode(ros_client, publisher, np.array([0.4, 0.0, 0.5]))
        states.after(time.time() + 0.5)  # half a second of joint states for the recorder
    finally:
        code = recorder.stop()
    assert code == 0, recorder.output()
    bags = list((tmp_path / "rec").iterdir())
    assert len(bags) == 1 and not bags[0].name.startswith("."), bags
    assert (bags[0] / "metadata.yaml").is_file()
    panda = load_family("panda")
    assert len(convert_recording(bags[0], panda)) == 1

    with AnyReader(bags) as reader:
        topics = {c.topic: c for c in reader.connections}
        assert {"/joint_states", "/demo_target", "/robot_description", "/tf_static", "/tf"} <= set(topics)
        for topic in ("/robot_description", "/tf_static"):
            assert [q.durability for q in topics[topic].ext.offered_qos_profiles] == [QosDurability.TRANSIENT_LOCAL]
        counts = {topic: sum(1 for _ in reader.messages(connections=[c])) for topic, c in topics.items()}
    assert counts["/robot_description"] == counts["/tf_static"] == 1 and counts["/tf"] >= 2, counts
    with next(bags[0].glob("*.mcap")).open("rb") as stream:
        decoded = {m.channel.topic: m.decoded_message for m in make_reader(
            stream, decoder_factories=[DecoderFactory()]).iter_decoded_messages()}
    assert decoded["/robot_description"].data == arm_to_urdf(panda)
    assert {t.child_frame_id for t in decoded["/tf_static"].transforms} == {panda.base_link, panda.flange_link}
    assert [t.child_frame_id for t in decoded["/tf"].transforms] == [j.child for j in panda.joints]


@pytest.mark.parametrize("name", ["sim_training", "few_shot_adaptation", "hil_test", "puck_hitting"])
def test_launch_files_parse(name):
    assert parse_launch(LAUNCH / f"{name}.launch.xml")
