"""demo_recorder as a real process: nothing lost when it is killed, clear refusals when it cannot write.

The test client publishes the joint states itself (a timer at 250 Hz, stamps counting 4 ms steps), so every
message published is known and the recovered bag can be compared with them one by one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import PointStamped
from mcap.reader import make_reader
from node_process import NodeProcess, killable
from ros_events import logged, matched_publisher, publish_acknowledged
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from mtrl_robot.arms.families import load_family
from mtrl_robot.motions.recording import convert_recording, read_episodes
from mtrl_robot.ros.conversions import point_msg
from mtrl_robot.ros.futures import wait_acknowledged
from mtrl_robot.ros.run import node_command

RATE = 250.0  # Hz of the joint states published during an episode
PUBLISHED_BEFORE_KILL = 750  # joint states (3 s at RATE)
MAX_LOST = RATE * 1.0  # joint states: at most a second of them may be lost to kill -9
STEP_NS = round(1e9 / RATE)
HOME = load_family("panda").home_q  # rad: the published joint states swing about it
EXIT_TIMEOUT = 60.0  # s for a node refusing its parameters to exit
BURST = 100  # joint states published back to back: as many as the recorder's queue holds


def joint_state_msg(names: tuple[str, ...], position: np.ndarray, velocity: np.ndarray, stamp_ns: int) -> JointState:
    msg = JointState(name=list(names), position=list(position), velocity=list(velocity))
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return msg


def start_recorder(env: dict[str, str], log: Path, namespace: str = "", **parameters: object) -> NodeProcess:
    """A recorder in ``namespace``, on the topics ``<namespace>/joint_states`` and ``<namespace>/demo_target``
    unless ``parameters`` say otherwise (a recorder killed by an earlier test stays discovered for a while)."""
    parameters = {"joint_states_topic": f"{namespace}/joint_states", "target_topic": f"{namespace}/demo_target",
                  **parameters}
    return NodeProcess(node_command("demo_recorder", parameters, namespace), log, env)


def call(client, name: str) -> Trigger.Response:
    service = client.node.create_client(Trigger, name)
    try:
        assert service.wait_for_service(timeout_sec=30.0), f"{name} not found"
        return client.wait(service.call_async(Trigger.Request()), 30.0)
    finally:
        client.destroy(service)


def recordings(verb: str, directory: Path) -> subprocess.CompletedProcess:
    """``mtrl-robot recordings <verb> <directory>`` as a process."""
    return subprocess.run([sys.executable, "-m", "mtrl_robot.cli.main", "recordings", verb, str(directory)],
                          capture_output=True, text=True, timeout=120)


class JointStatePublisher:
    """Publishes the Panda's joint states at ``RATE`` from a timer of the client; counts what it published."""

    def __init__(self, client, topic: str, names: tuple[str, ...]):
        self.client, self.names = client, names
        self.publisher = matched_publisher(client.node, JointState, topic, 30.0, depth=1000)
        self.start_ns = time.time_ns()
        self.published = 0
        self.reached: dict[int, threading.Event] = {}
        self.timer = client.between_waits(lambda: client.node.create_timer(1.0 / RATE, self._publish))

    def _publish(self) -> None:
        i = self.published
        phase = i / RATE + np.arange(len(self.names))  # a small swing about the home posture, within the limits
        self.publisher.publish(joint_state_msg(self.names, HOME + 0.1 * np.sin(phase), 0.1 * np.cos(phase),
                                               self.start_ns + i * STEP_NS))
        self.published = i + 1
        for count, event in self.reached.items():
            if self.published >= count:
                event.set()

    def wait_published(self, count: int) -> None:
        event = self.client.between_waits(lambda: self.reached.setdefault(count, threading.Event()))
        assert event.wait(count / RATE + 30.0), f"{self.published} of {count} joint states published"

    def stop(self) -> int:
        """Stop publishing; the number of joint states published."""
        self.client.between_waits(self.timer.cancel)
        return self.published


def test_kill_9_loses_at_most_a_second_and_recover_makes_a_complete_bag(ros_client, ros_env, ros_log, tmp_path):
    arm = load_family("panda")
    output = tmp_path / "rec"
    recorder = start_recorder(killable(ros_env), tmp_path / "recorder.log", "/kill", output_dir=output)
    joint_states = None
    try:
        targets = matched_publisher(ros_client.node, PointStamped, "/kill/demo_target", 30.0)
        publish_acknowledged(targets, point_msg(np.array([0.4, 0.1, 0.5])))
        reply = call(ros_client, "/kill/demo_recorder/start_episode")
        assert reply.success, reply.message
        joint_states = JointStatePublisher(ros_client, "/kill/joint_states", arm.joint_names)
        joint_states.wait_published(PUBLISHED_BEFORE_KILL)
        recorder.process.kill()  # SIGKILL: no chance to finish the bag
        recorder.process.wait()
    finally:
        published = joint_states.stop() if joint_states is not None else 0
        recorder.stop()
    assert [p.name for p in output.iterdir() if not p.name.startswith(".")] == []  # nothing looks complete
    restarted = start_recorder(ros_env, tmp_path / "restarted.log", "/kill", output_dir=output)
    try:  # names what the killed one left, and how to recover it
        logged(ros_log, f"recordings recover {output}", timeout=60.0)
    finally:
        assert restarted.stop() == 0, restarted.output()
    assert len(list(output.iterdir())) == 1  # and deletes nothing

    result = recordings("recover", output)
    assert result.returncode == 0, result.stdout + result.stderr
    bags = list(output.iterdir())
    assert len(bags) == 1 and bags[0].name.startswith("demo_"), bags  # the partial folder is gone
    assert bags[0].name in result.stdout

    topics = {"joint_states_topic": "/kill/joint_states", "target_topic": "/kill/demo_target"}
    episode, = read_episodes(bags[0], **topics)
    recovered = len(episode.times)
    assert published - recovered <= MAX_LOST, f"{published - recovered} of {published} joint states lost"
    stamps = np.round((episode.times - episode.times[0]) * 1e9 / STEP_NS)  # the first ones, none skipped
    np.testing.assert_array_equal(stamps, np.arange(recovered))
    assert convert_recording(bags[0], arm, **topics).positions.shape[0] == 1

    with AnyReader([bags[0]]) as reader:
        assert sum(1 for c, _, _ in reader.messages() if c.topic == "/kill/joint_states") == recovered
    with next(bags[0].glob("*.mcap")).open("rb") as stream:
        assert sum(1 for _ in make_reader(stream).iter_messages(topics=["/kill/joint_states"])) == recovered


def test_stop_right_after_a_burst_writes_every_queued_joint_state(ros_client, ros_env, tmp_path):
    """A recorder running behind the arm still has the end of the motion queued when the stop request comes."""
    arm = load_family("panda")
    output = tmp_path / "rec"
    recorder = start_recorder(ros_env, tmp_path / "recorder.log", "/burst", output_dir=output)
    try:
        targets = matched_publisher(ros_client.node, PointStamped, "/burst/demo_target", 30.0)
        publish_acknowledged(targets, point_msg(np.array([0.4, 0.1, 0.5])))
        reply = call(ros_client, "/burst/demo_recorder/start_episode")
        assert reply.success, reply.message
        joint_states = matched_publisher(ros_client.node, JointState, "/burst/joint_states", 30.0, depth=BURST)
        start_ns = time.time_ns()
        for i in range(BURST):
            joint_states.publish(joint_state_msg(arm.joint_names, HOME, np.zeros(len(HOME)), start_ns + i * STEP_NS))
        assert wait_acknowledged(joint_states, 30.0)  # every one is in the recorder's queue, ahead of the request
        stopped = call(ros_client, "/burst/demo_recorder/stop_episode")
        assert stopped.success, stopped.message
    finally:
        assert recorder.stop() == 0, recorder.output()
    episode, = read_episodes(Path(stopped.message), joint_states_topic="/burst/joint_states",
                             target_topic="/burst/demo_target")
    assert len(episode.times) == BURST


def test_clean_removes_only_partials_without_data(ros_client, ros_env, tmp_path):
    output = tmp_path / "rec"
    recorder = start_recorder(killable(ros_env), tmp_path / "recorder.log", "/clean", output_dir=output)
    try:
        targets = matched_publisher(ros_client.node, PointStamped, "/clean/demo_target", 30.0)
        publish_acknowledged(targets, point_msg(np.array([0.4, 0.1, 0.5])))
        reply = call(ros_client, "/clean/demo_recorder/start_episode")
        assert reply.success, reply.message
        running = recordings("clean", output)  # the episode being recorded is not touched
        assert "running process" in running.stdout, running.stdout
        recorder.process.kill()
        recorder.process.wait()
    finally:
        recorder.stop()
    partial, = output.iterdir()
    empty = output / ".demo_empty.abcdefgh.partial"
    empty.mkdir()
    (empty / "demo_empty.mcap").write_bytes(b"")  # killed before anything reached the disk
    result = recordings("clean", output)
    assert result.returncode == 0, result.stderr
    assert not empty.exists() and partial.exists(), result.stdout  # the target message is kept
    assert "kept" in result.stdout and "removed" in result.stdout
    assert recordings("recover", output).returncode == 0
    with AnyReader(list(output.iterdir())) as reader:  # the target that started the episode
        assert [c.topic for c, _, _ in reader.messages()] == ["/clean/demo_target"]


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` refusing new entries until exit (``chattr +i`` where permissions do not bind, as for root)."""
    folder.chmod(0o555)
    immutable = False
    try:
        probe = folder / ".probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:
            probe.unlink()
            if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
                pytest.skip("cannot make a folder read-only here")
            immutable = True
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def wait_exit(node: NodeProcess) -> tuple[int, list[str]]:
    """The exit code of a node refusing to start and the lines of its own output (without the middleware's)."""
    try:
        code = node.process.wait(timeout=EXIT_TIMEOUT)
    finally:
        node.stop()
    output = node.output()
    assert "Traceback" not in output, output
    return code, [line for line in output.splitlines() if line.startswith("demo_recorder:")]


def test_unwritable_output_dir_at_start_exits_with_one_line(ros_env, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    with read_only(folder):
        code, lines = wait_exit(start_recorder(ros_env, tmp_path / "recorder.log", output_dir=folder))
    assert code == 1 and len(lines) == 1, lines
    assert "output_dir" in lines[0] and str(folder) in lines[0] and "not a writable folder" in lines[0], lines


@pytest.mark.parametrize(("parameter", "value"), [("output_dir", 123), ("joint_states_topic", "bad name!"),
                                                  ("target_topic", "/demo target"), ("tf_topic", "bad name!"),
                                                  ("tf_topic", "/joint_states")])
def test_bad_parameters_give_one_line(ros_env, tmp_path, parameter, value):
    code, lines = wait_exit(start_recorder(ros_env, tmp_path / "recorder.log", **{parameter: value}))
    assert code == 1 and len(lines) == 1, lines
    assert parameter in lines[0], lines


def test_folder_made_read_only_while_running_fails_the_services_not_the_node(ros_client, ros_env, tmp_path):
    output = tmp_path / "rec"
    output.mkdir()
    recorder = start_recorder(ros_env, tmp_path / "recorder.log", "/read_only", output_dir=output)
    try:
        targets = matched_publisher(ros_client.node, PointStamped, "/read_only/demo_target", 30.0)
        publish_acknowledged(targets, point_msg(np.array([0.4, 0.1, 0.5])))
        with read_only(output):
            refused = call(ros_client, "/read_only/demo_recorder/start_episode")
        assert not refused.success and "cannot start episode" in refused.message, refused.message
        assert "not permitted" in refused.message or "denied" in refused.message, refused.message
        started = call(ros_client, "/read_only/demo_recorder/start_episode")  # still serving, and writing again
        assert started.success, started.message
        with read_only(output):
            stopped = call(ros_client, "/read_only/demo_recorder/stop_episode")
        assert not stopped.success and "recordings recover" in stopped.message, stopped.message
        assert call(ros_client, "/read_only/demo_recorder/start_episode").success  # the node keeps serving
        assert call(ros_client, "/read_only/demo_recorder/stop_episode").success
    finally:
        code = recorder.stop()
    assert code == 0, recorder.output()
    assert "Traceback" not in recorder.output()
    result = recordings("recover", output)  # the episode whose stop failed
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 messages recovered" in result.stdout, result.stdout  # its target; no joint states were published
    assert len([bag for bag in output.iterdir() if not bag.name.startswith(".")]) == 2
