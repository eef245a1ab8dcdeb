"""Fixtures for the hardware-in-the-loop suite: the same tests on simulation-as-hardware or on a real arm.

- Without ``MTRL_HIL_PRESET``: an ``arm_node`` subprocess configured like ``config/hardware/sim_panda.yaml``, in a
  ROS domain of this test module's own with localhost discovery and ROS logs in a temporary folder. Teardown
  stops it (SIGTERM, then SIGKILL).
- With ``MTRL_HIL_PRESET=<name or YAML path>``: the real arm in the environment's ROS domain; nothing is started.
  Tests that move the arm run only with ``MTRL_HIL_ALLOW_MOTION=1``; without it the client is in dry-run mode,
  so nothing at all is sent to the controller, and those tests are skipped.

Either way the client is a :class:`~mtrl_robot.ros.hardware_backend.HardwareBackend` with a node of its own.
Everything the tests themselves subscribe to, publish or call goes through another node, ``Rig.ros``
(:class:`~ros_client.RosClient`), which destroys entities only between its executor's waits: the hardware client's
executor thread must never have an entity destroyed under it. A :class:`Tap` listens there to the controller's goal
status and trajectory topic, to tell whether anything was sent.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from action_msgs.msg import GoalStatusArray
from node_process import NodeProcess, domain_id, killable, ros_environment
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from ros_client import RosClient
from ros_events import Messages
from sensor_msgs.msg import JointState as JointStateMsg
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg

from mtrl_robot.backends.trajectory import JointState
from mtrl_robot.hardware.presets import HardwarePreset, load_preset
from mtrl_robot.ros.conversions import joint_state_from_msg
from mtrl_robot.ros.conversions import seconds as stamp_seconds
from mtrl_robot.ros.hardware_backend import HardwareBackend, HardwareError
from mtrl_robot.ros.run import node_command

SIM_PRESET = "sim_panda"
STARTUP_TIMEOUT = 60.0  # s for an arm node to come up on a loaded machine
PRESET = os.environ.get("MTRL_HIL_PRESET", "")
ALLOW_MOTION = os.environ.get("MTRL_HIL_ALLOW_MOTION") == "1"
STATE_TIMEOUT = 10.0  # s beyond the wanted stamp for a joint state to arrive
STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def stamp_of(msg: JointStateMsg) -> float:
    return stamp_seconds(msg.header.stamp)


class SimArm(NodeProcess):
    """An ``arm_node`` subprocess serving ``preset``'s interfaces, under ``namespace``."""

    def __init__(self, preset: HardwarePreset, log_dir: Path, namespace: str = "", killed: bool = False):
        """``killed``: the test kills or freezes it on purpose (:func:`~node_process.killable`)."""
        parameters = {"robot": preset.family, "controller_name": preset.controller,
                      "joint_states_rate": preset.joint_states_rate}
        super().__init__(node_command("arm_node", parameters, namespace),
                         log_dir / f"arm_node{namespace.replace('/', '_')}.log",
                         killable(os.environ) if killed else None)

    def close(self) -> None:
        """SIGTERM the node, wait for it (SIGKILL it if it hangs)."""
        self.stop()


def namespaced(preset: HardwarePreset, namespace: str) -> HardwarePreset:
    """``preset`` with every ROS name under ``namespace`` (where an arm node started there serves them)."""
    return replace(preset, action=namespace + preset.action, joint_states_topic=namespace + preset.joint_states_topic,
                   trajectory_topic=None if preset.trajectory_topic is None else namespace + preset.trajectory_topic)


class Tap:
    """Goal ids the controller's action server reports, and messages on its trajectory topic."""

    def __init__(self, ros: RosClient, preset: HardwarePreset):
        """Ready once the status subscription has matched the action server's publisher: from then on no goal goes
        unseen (and, transient local as that publisher, it first receives every goal the server still reports)."""
        self._lock = threading.Lock()
        self._goals: set[bytes] = set()
        self._trajectories = 0
        node, topic = ros.node, f"{preset.action}/_action/status"
        status = node.create_subscription(GoalStatusArray, topic, self._on_status, STATUS_QOS)
        if preset.trajectory_topic is not None:  # the client sends only once every subscription here has matched
            node.create_subscription(JointTrajectoryMsg, preset.trajectory_topic, self._on_trajectory, 10)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while status.get_publisher_count() == 0:
            assert time.monotonic() < deadline, f"no goal status publisher on {topic} within {STARTUP_TIMEOUT} s"
            time.sleep(0.01)

    def _on_status(self, msg: GoalStatusArray) -> None:
        with self._lock:
            self._goals.update(bytes(s.goal_info.goal_id.uuid) for s in msg.status_list)

    def _on_trajectory(self, msg: JointTrajectoryMsg) -> None:
        with self._lock:
            self._trajectories += 1

    def snapshot(self) -> tuple[frozenset[bytes], int]:
        with self._lock:
            return frozenset(self._goals), self._trajectories


@dataclass
class Rig:
    """The arm under test, how it is reached, and the extra clients and arm nodes tests start (closed at the end)."""

    preset: HardwarePreset
    simulated: bool
    log_dir: Path
    backend: HardwareBackend | None = None
    ros: RosClient | None = None  # the tests' own node
    tap: Tap | None = None
    states: Messages[JointStateMsg] = field(default_factory=Messages)  # every message on the joint-state topic
    startup_timeout: float = STARTUP_TIMEOUT
    _started: list[HardwareBackend | SimArm] = field(default_factory=list)

    def connect(self, preset: HardwarePreset, sim: SimArm | None = None, **options: object) -> HardwareBackend:
        """A ready client of ``preset``; fails with the arm node's output if it does not come up."""
        backend = HardwareBackend(preset, **options)
        self._started.append(backend)
        try:
            backend.wait_ready(STARTUP_TIMEOUT)
        except HardwareError as exc:
            output = "" if sim is None else f"\narm node (exit code {sim.process.poll()}):\n{sim.output()}"
            pytest.fail(f"{exc}{output}")
        return backend

    def start_sim(self, namespace: str = "", killed: bool = False) -> tuple[HardwarePreset, SimArm]:
        """An arm node serving this rig's preset under ``namespace``, and the preset renamed to match; ``killed``:
        the test kills or freezes it on purpose."""
        preset = namespaced(self.preset, namespace)
        sim = SimArm(preset, self.log_dir, namespace, killed)
        self._started.append(sim)
        return preset, sim

    def state(self, msg: JointStateMsg) -> JointState:
        """A joint-state message as the arm's state (model names and order)."""
        return self.preset.to_model(joint_state_from_msg(msg))

    def state_after(self, seconds: float, since: float | None = None) -> JointState:
        """The arm's state in the first joint-state message stamped ``seconds`` after ``since`` (default: the
        stamp of the client's latest state), on the arm's clock."""
        moment = (self.backend.read_state().stamp if since is None else since) + seconds
        names = set(self.preset.joint_names)
        msg = self.states.wait_for(lambda m: names <= set(m.name) and stamp_of(m) > moment,
                                   timeout=seconds + STATE_TIMEOUT, what=f"joint state stamped after {moment:.3f}")
        return self.state(msg)

    def require_motion(self) -> None:
        if not self.simulated and not ALLOW_MOTION:
            pytest.skip(f"moves the arm of preset '{self.preset.name}': set MTRL_HIL_ALLOW_MOTION=1 to allow it")

    def require_simulation(self, why: str) -> None:
        if not self.simulated:
            pytest.skip(f"needs the simulated arm node: {why}")

    def close(self) -> None:
        for started in reversed(self._started):
            started.close()
        if self.ros is not None:
            self.ros.close()


@pytest.fixture(scope="module")
def ros_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """ROS logs in a temporary folder; in simulation also a domain of this module's own and localhost discovery."""
    domain = None if PRESET else domain_id(101, request.module.__name__)
    with ros_environment(tmp_path_factory.mktemp("ros_log"), domain):
        yield


@contextmanager
def open_rig(preset: HardwarePreset, simulated: bool, log_dir: Path) -> Iterator[Rig]:
    """A rig with a ready client of ``preset`` (in simulation also its arm node), closed on exit."""
    rig = Rig(preset, simulated=simulated, log_dir=log_dir)
    try:
        preset, sim = rig.start_sim() if rig.simulated else (rig.preset, None)
        rig.backend = rig.connect(preset, sim, dry_run=None if sim else not ALLOW_MOTION, node_name="hil_client")
        rig.ros = RosClient("hil_test_client")
        rig.tap = Tap(rig.ros, preset)
        rig.ros.node.create_subscription(JointStateMsg, preset.joint_states_topic, rig.states, qos_profile_sensor_data)
        rig.states.wait_for(timeout=STARTUP_TIMEOUT, what=f"joint states on {preset.joint_states_topic} (test node)")
        yield rig
    finally:
        rig.close()


@pytest.fixture(scope="module")
def rig(ros_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with open_rig(load_preset(PRESET or SIM_PRESET), not PRESET, tmp_path_factory.mktemp("hil")) as rig:
        yield rig


@pytest.fixture(scope="session")
def rig_opener() -> Callable[[HardwarePreset, bool, Path], AbstractContextManager[Rig]]:
    """:func:`open_rig`, for a module that opens a rig of another preset (a test module cannot import this
    conftest by name when pytest has also loaded tests/ros's)."""
    return open_rig


@pytest.fixture(scope="session")
def real_arm_preset() -> str:
    """The preset named by ``MTRL_HIL_PRESET`` ('' in simulation)."""
    return PRESET


@pytest.fixture
def arm(rig: Rig) -> Rig:
    """The rig, for a test that moves the arm (skipped on a real arm unless motion is allowed)."""
    rig.require_motion()
    return rig
