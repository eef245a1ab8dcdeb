"""Hardware-in-the-loop: what the safety layer lets through, judged by the motion the arm executed.

Peak joint speed and acceleration come from ``/joint_states`` of a real ``arm_node`` process (the ``sim_panda``
preset, through :class:`~mtrl_robot.ros.hardware_backend.HardwareBackend`) and are compared with the preset's
limits. These tests move joint 1 by up to 2 rad at the preset's limits and inject faults, so they run only on
the simulated arm.

Accelerations are velocity differences over at least ``ACCELERATION_BASELINE``: the arm node steps physics in
whole 2 ms control steps at each joint-state tick, so one message interval can differ from the physics time it
covers by up to a control step. The margins over the limits allow for the position actuators' tracking (see
``tests/test_safety_fuzz.py``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pytest
from control_msgs.action import FollowJointTrajectory
from executed_motion import executed_peaks
from limit_repros import at_rest_between, cubic_overshoot, position_only, slowed_to_fit, three_cubics
from ros_client import RosClient
from sensor_msgs.msg import JointState as JointStateMsg
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg

from mtrl_robot.arms.families import load_family
from mtrl_robot.backends.trajectory import JointTrajectory
from mtrl_robot.hardware.presets import HardwarePreset
from mtrl_robot.hardware.safety import SafetyError
from mtrl_robot.ros.conversions import seconds, to_time, trajectory_to_msg
from mtrl_robot.ros.futures import wait_for
from mtrl_robot.ros.hardware_backend import HardwareBackend

if TYPE_CHECKING:
    from conftest import Rig

EXECUTED_MARGIN = {"velocity": 1.05, "acceleration": 1.25}
ACCELERATION_BASELINE = 0.02  # s
REPLY_TIMEOUT = 10.0  # s for a service reply, a result or a message
JOINT = 0  # the joint the repros move (preset order)


class JointStateLog:
    """Stamps and velocities (preset joint order) of every joint state on the preset's topic."""

    def __init__(self, ros: RosClient, preset: HardwarePreset):
        self._lock = threading.Lock()
        self._stamps: list[float] = []
        self._velocities: list[list[float]] = []
        self._names = preset.joint_names
        self._ros = ros
        self._subscription = ros.node.create_subscription(JointStateMsg, preset.joint_states_topic, self._on_state,
                                                          1000)

    def _on_state(self, msg: JointStateMsg) -> None:
        index = {n: i for i, n in enumerate(msg.name)}
        if set(self._names) <= set(index) and msg.velocity:
            with self._lock:
                self._stamps.append(seconds(msg.header.stamp))
                self._velocities.append([msg.velocity[index[n]] for n in self._names])

    def latest(self) -> float:
        with self._lock:
            return self._stamps[-1] if self._stamps else -np.inf

    def peaks(self, start: float, end: float) -> dict[str, np.ndarray]:
        """Executed peaks from the messages stamped in [start, end]."""
        with self._lock:
            stamps, velocities = np.array(self._stamps), np.array(self._velocities)
        inside = (stamps >= start) & (stamps <= end)
        return executed_peaks(stamps[inside], velocities[inside], ACCELERATION_BASELINE)

    def close(self) -> None:
        self._ros.destroy(self._subscription)


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def limits_rig(rig: Rig) -> Rig:
    rig.require_simulation("it moves joint 1 by up to 2 rad at the preset's limits and injects faults")
    return rig


@pytest.fixture(scope="module")
def log(limits_rig: Rig):
    log = JointStateLog(limits_rig.ros, limits_rig.preset)
    wait_until(lambda: log.latest() > -np.inf, REPLY_TIMEOUT, "the log's first joint state")  # every later one kept
    yield log
    log.close()


def execute_and_measure(rig: Rig, log: JointStateLog, trajectory: JointTrajectory) -> dict[str, np.ndarray]:
    """Execute ``trajectory`` (model names) through the hardware client; the executed peaks from joint states."""
    start = rig.backend.read_state().stamp
    result = rig.backend.execute(trajectory)
    assert result.success, result.message
    end = rig.backend.read_state().stamp
    wait_until(lambda: log.latest() >= end, REPLY_TIMEOUT, "the joint states of the motion")
    return log.peaks(start, end)


def assert_within_limits(preset: HardwarePreset, peaks: dict[str, np.ndarray], what: str) -> dict[str, float]:
    ratios = {}
    for quantity in ("velocity", "acceleration"):
        ratio = peaks[quantity] / getattr(preset, quantity)
        ratios[quantity] = float(np.max(ratio))
        assert ratios[quantity] <= EXECUTED_MARGIN[quantity], (what, quantity, ratio)
    print(f"\n{what}: executed peak / limit: velocity {ratios['velocity']:.3f}, acceleration "
          f"{ratios['acceleration']:.3f}")
    return ratios


def go_home(rig: Rig) -> np.ndarray:
    """Bring the arm to the family's home posture at the limits; the measured home."""
    backend = rig.backend
    home = load_family(rig.preset.family).home_q
    q = backend.read_state().positions
    if np.max(np.abs(q - home)) > 1e-3:
        move = JointTrajectory(backend.joint_names, np.array([0.0, 1.0]), np.vstack([q, home]), np.zeros((2, len(q))))
        result = backend.execute(slowed_to_fit(move, backend.checker.motion_limits))
        assert result.success, result.message
    return backend.read_state().positions


def repros(rig: Rig, q: np.ndarray) -> dict[str, JointTrajectory]:
    names, v, a = rig.backend.joint_names, rig.preset.velocity[JOINT], rig.preset.acceleration[JOINT]
    return {"cubic overshoot": cubic_overshoot(names, q, JOINT, v), "three cubics": three_cubics(names, q, JOINT, v, a),
            "position only": position_only(names, q, JOINT, v)}


@pytest.mark.parametrize("case, message", [
    ("cubic overshoot", r"velocity 1.6\d+ rad/s in the cubic segment .* exceeds the velocity limit 1.0875"),
    ("three cubics", r"velocity 2.17\d+ rad/s in the cubic segment .* exceeds the velocity limit 1.0875"),
    ("position only", r"acceleration 516.\d+ rad/s² at waypoint 0 \(velocity steps .*\) exceeds the acceleration "
                      r"limit"),
])
def test_issue_repros_are_refused_and_nothing_reaches_the_arm(limits_rig: Rig, case: str, message: str):
    """Issue 13, items 1 and 2: each was accepted and executed over the limits (1.64 rad/s, 2.17 rad/s, 76 rad/s²
    against 1.0875 rad/s and 7.5 rad/s²)."""
    rig = limits_rig
    q = go_home(rig)
    before = rig.tap.snapshot()
    with pytest.raises(SafetyError, match=rf"{rig.preset.joint_names[JOINT]}: {message}"):
        rig.backend.send_trajectory(repros(rig, q)[case])
    # a trajectory that passes goes next: its goal is the only new one the controller reports
    result = rig.backend.execute(at_rest_between(JointTrajectory(rig.backend.joint_names, np.array([0.0, 0.5]),
                                                                 np.vstack([q, q]))))
    assert result.success, result.message
    wait_until(lambda: len(rig.tap.snapshot()[0]) > len(before[0]), REPLY_TIMEOUT, "the passing goal's status")
    assert len(rig.tap.snapshot()[0]) == len(before[0]) + 1, "the refused trajectory reached the controller"
    np.testing.assert_allclose(rig.backend.read_state().positions, q, atol=2e-3)


@pytest.mark.parametrize("case", ["cubic overshoot", "three cubics", "position only"])
def test_the_same_paths_timed_to_pass_execute_within_the_limits(limits_rig: Rig, log: JointStateLog, case: str):
    rig = limits_rig
    path = repros(rig, go_home(rig))[case]
    timed = slowed_to_fit(at_rest_between(path) if path.velocities is None else path, rig.backend.checker.motion_limits)
    ratios = assert_within_limits(rig.preset, execute_and_measure(rig, log, timed), f"{case}, {timed.duration:.2f} s")
    assert ratios["velocity"] > 0.9  # close to the limit: the bound is not loose


def test_accepted_fuzz_trajectories_execute_within_the_limits(limits_rig: Rig, log: JointStateLog):
    """A few of the fuzz test's accepted trajectories, moved to start at the measured state, through ROS."""
    from test_safety_fuzz import fuzz

    rig = limits_rig
    accepted, _ = fuzz()
    rng = np.random.default_rng(3)
    executed = 0
    for i in rng.permutation(len(accepted)):
        q = go_home(rig)
        trajectory, start = accepted[i]
        shifted = replace(trajectory, positions=trajectory.positions + (q - start))
        try:
            rig.backend.checker.check(shifted, rig.backend.read_state())  # the preset's workspace box too
        except SafetyError:
            continue
        assert_within_limits(rig.preset, execute_and_measure(rig, log, shifted), f"fuzz trajectory {i}")
        executed += 1
        if executed == 3:
            break
    assert executed == 3


def test_the_arm_node_refuses_the_overshoot_itself(limits_rig: Rig):
    """Issue 13, item 4: sent straight to the arm node (no safety layer), a cubic peaking at 1.5× the published
    velocity (3.26 rad/s against 2.175) was executed; now the arm node rejects the goal when it receives it (as
    ros2_control does with an invalid goal) and the arm does not move. The reason it gives is the safety layer's
    (tests/test_safety.py, test_the_simulated_controller_refuses_with_the_safety_layers_check)."""
    rig = limits_rig
    q = go_home(rig)
    arm = load_family(rig.preset.family)
    overshoot = cubic_overshoot(rig.backend.joint_names, q, JOINT, arm.velocity_limits[JOINT])
    client = rig.ros.action_client(FollowJointTrajectory, rig.preset.action)
    try:
        assert client.wait_for_server(timeout_sec=REPLY_TIMEOUT)
        sent = client.send_goal_async(FollowJointTrajectory.Goal(trajectory=trajectory_to_msg(overshoot)))
        assert wait_for(sent, REPLY_TIMEOUT)
        assert not sent.result().accepted
    finally:
        rig.ros.destroy(client)
    np.testing.assert_allclose(rig.backend.read_state().positions, q, atol=2e-3)


def _non_finite_state(preset: HardwarePreset, q: np.ndarray) -> JointStateMsg:
    positions = q.copy()
    positions[JOINT] = np.nan
    return JointStateMsg(name=list(preset.joint_names), position=positions.tolist(), velocity=[0.0] * len(q))


def test_stop_sends_no_hold_from_a_non_finite_joint_state(limits_rig: Rig):
    """Issue 13, item 3: with a NaN joint state republished with fresh stamps, stop() published a hold
    [NaN, …] on the controller's topic. Now it sends none and says why."""
    rig = limits_rig
    preset = replace(rig.preset, joint_states_topic="/nan_stop/joint_states",
                     trajectory_topic="/nan_stop/joint_trajectory_controller/joint_trajectory",
                     action="/nan_stop/joint_trajectory_controller/follow_joint_trajectory")
    client = HardwareBackend(preset, dry_run=False, node_name="hil_nan_stop")
    node = rig.ros.node
    holds = []
    q = load_family(preset.family).home_q
    entities = [node.create_subscription(JointTrajectoryMsg, preset.trajectory_topic, holds.append, 10),
                states := node.create_publisher(JointStateMsg, preset.joint_states_topic, 10),
                service := node.create_client(Trigger, "/hil_nan_stop/stop"),
                marker := node.create_publisher(JointTrajectoryMsg, preset.trajectory_topic, 10)]

    def publish() -> None:
        msg = _non_finite_state(preset, q)
        msg.header.stamp = to_time(time.time())  # fresh every time
        states.publish(msg)

    try:
        assert service.wait_for_service(timeout_sec=REPLY_TIMEOUT)

        def stop() -> str:
            future = service.call_async(Trigger.Request())
            assert wait_for(future, REPLY_TIMEOUT)
            return future.result().message

        reports = [stop()]
        wait_until(lambda: publish() or "no fresh joint state" not in reports[-1] or reports.append(stop()),
                   REPLY_TIMEOUT, "the first NaN joint state to arrive")
        report = reports[-1]
        assert "no hold sent: the latest joint state is not finite (panda_joint1 position nan)" in report, report
        wait_until(lambda: marker.get_subscription_count() > 0, REPLY_TIMEOUT, "the topic's subscriber")
        marker.publish(JointTrajectoryMsg(joint_names=["marker"]))
        wait_until(lambda: holds, REPLY_TIMEOUT, "the marker message")
        assert [list(m.joint_names) for m in holds] == [["marker"]], "a hold was published"
    finally:
        client.close()
        for entity in entities:
            rig.ros.destroy(entity)


def test_a_non_finite_joint_state_stops_a_running_trajectory(limits_rig: Rig):
    """Issue 13, item 3: a non-finite joint state counts as a stale one: the execution fails, the arm stops."""
    rig = limits_rig
    preset, sim = rig.start_sim("/nan_watch")
    client = rig.connect(preset, sim, node_name="hil_nan_watch")
    q0 = client.read_state().positions
    target = q0.copy()
    target[5] += 0.25
    client.send_trajectory(slowed_to_fit(JointTrajectory(client.joint_names, np.array([0.0, 4.0]),
                                                         np.vstack([q0, target]), np.zeros((2, len(q0)))),
                                         client.checker.motion_limits))
    wait_until(lambda: abs(client.read_state().positions[5] - q0[5]) > 0.01, REPLY_TIMEOUT, "the motion to start")
    states = rig.ros.node.create_publisher(JointStateMsg, preset.joint_states_topic, 10)
    wait_until(lambda: states.get_subscription_count() > 0, REPLY_TIMEOUT, "the joint-state subscribers")
    msg = _non_finite_state(preset, client.read_state().positions)

    def publish() -> None:  # again until the execution ends: the client's subscription is best effort
        msg.header.stamp = to_time(time.time())  # fresh
        states.publish(msg)

    wait_until(lambda: publish() or not client.is_executing(), REPLY_TIMEOUT, "the execution to end")
    result = client.wait()
    assert not result.success and "not finite (panda_joint1 position nan)" in result.message, result.message
    wait_until(lambda: np.max(np.abs(client.read_state().velocities)) < 1e-3, REPLY_TIMEOUT, "the arm to stop")
    assert abs(client.read_state().positions[5] - target[5]) > 0.05  # stopped short of the target
