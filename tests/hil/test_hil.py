"""Hardware-in-the-loop suite: the hardware client against an arm reached only through ROS (see conftest.py).

Every motion starts at the measured state and moves wrist joints by at most 0.25 rad toward the middle of their
ranges, slowly, so the same tests are safe on a real arm. Refusals are checked to send nothing by listening to
the controller's goal status and trajectory topic, and by the arm standing still.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pytest
from rcl_interfaces.msg import Log
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from ros_events import ROSOUT_QOS, Messages
from sensor_msgs.msg import JointState as JointStateMsg
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg

from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.backends.trajectory import GOAL_TOLERANCE, SETTLE_TIME, JointState, JointTrajectory
from mtrl_robot.hardware.presets import load_preset
from mtrl_robot.hardware.safety import SafetyChecker, SafetyError, Workspace
from mtrl_robot.ros.conversions import seconds, to_time
from mtrl_robot.ros.futures import wait_for
from mtrl_robot.ros.hardware_backend import HardwareBackend, HardwareError, goal_msg, to_hardware_names
from mtrl_robot.ros.hil.checks import WRIST, smooth, toward_center

if TYPE_CHECKING:
    from conftest import Rig

TRACKING_BOUND = 0.05  # rad, peak tracking error allowed during the small motion
KILL_MARGIN = 2.0  # s beyond the watchdog timeout for the client to report a killed arm node (loaded machine)
REPLY_TIMEOUT = 10.0  # s for a service reply or a log message


def shuffled(trajectory: JointTrajectory) -> JointTrajectory:
    """``trajectory`` with its joints in another order (columns moved with their names)."""
    order = list(range(len(trajectory.joint_names)))[1::2] + list(range(len(trajectory.joint_names)))[::2]
    return trajectory.reordered([trajectory.joint_names[i] for i in order])


def assert_held(rig: Rig, seconds_: float = 0.5, tolerance: float = 2e-3) -> np.ndarray:
    """The measured position, after checking that the arm stands still for ``seconds_`` (of joint-state stamps)."""
    before = rig.backend.read_state()
    after = rig.state_after(seconds_, since=before.stamp).positions
    assert np.max(np.abs(after - before.positions)) < tolerance, \
        f"the arm moved by {np.max(np.abs(after - before.positions))} rad"
    return after


# ------------------------------------------------------------------------------------------ joint states


def test_joint_states_are_live_at_the_preset_rate(rig: Rig):
    """Rate from message stamps in a 2 s window (a busy client delays arrival, not stamps)."""
    preset, messages = rig.preset, Messages()
    subscription = rig.ros.node.create_subscription(JointStateMsg, preset.joint_states_topic, messages,
                                                        QoSProfile(depth=1000))
    try:
        first = seconds(messages.wait_for(timeout=20.0, what="a joint state").header.stamp)
        messages.wait_for(lambda msg: seconds(msg.header.stamp) > first + 2.5, timeout=20.0,
                          what="2.5 s of joint states")
    finally:
        rig.ros.destroy(subscription)
    t = np.array([seconds(msg.header.stamp) for msg in messages.messages
                  if set(preset.joint_names) <= set(msg.name)])
    assert np.all(np.diff(t) > 0), "joint-state stamps do not increase"
    rate = np.count_nonzero((t >= t[0]) & (t < t[0] + 2.0)) / 2.0
    assert rate >= 0.8 * preset.joint_states_rate, f"{rate:.0f} Hz for a preset rate of {preset.joint_states_rate} Hz"
    first = rig.backend.read_state()
    rig.states.wait_for(lambda _: rig.backend.read_state().stamp > first.stamp, start=len(rig.states),
                        what="a newer joint state in the client")
    second = rig.backend.read_state()
    assert first.names == second.names == preset.model_names
    assert np.all(np.isfinite(second.positions)) and second.stamp > first.stamp


def test_missing_joint_states_give_a_timeout_naming_the_topic(rig: Rig):
    silent = replace(rig.preset, joint_states_topic="/hil_silent/joint_states")
    with HardwareBackend(silent, dry_run=True, node_name="hil_silent", state_timeout=1.0) as client:
        start = time.monotonic()
        with pytest.raises(HardwareError, match="no joint state .* on /hil_silent/joint_states within 1.0 s"):
            client.read_state()
        with pytest.raises(HardwareError, match="/hil_silent/joint_states"):
            still = np.zeros((1, len(client.joint_names)))
            client.send_trajectory(JointTrajectory(client.joint_names, np.array([1.0]), still))
        assert time.monotonic() - start < 10.0


# ------------------------------------------------------------------------------------------ joint names


def test_joint_map_renames_at_the_conversion_level():
    """FR3 hardware names (fr3_jointN) for Panda model names: the goal carries hardware names, values by name."""
    preset, arm = load_preset("franka_fr3"), load_family("panda")
    model = smooth(arm.joint_names, arm.home_q, np.full(arm.dof, 0.05), 2.0)
    hardware = to_hardware_names(shuffled(model), preset.model_to_hardware)
    assert set(hardware.joint_names) == set(preset.joint_names)
    measured = JointState(("fr3_finger_joint1", *preset.joint_names[::-1]),
                          np.concatenate([[0.04], arm.home_q[::-1]]), np.zeros(8), 1.0)
    goal = goal_msg(SafetyChecker(preset.safety_limits(arm)).check(hardware, measured))
    assert list(goal.trajectory.joint_names) == list(preset.joint_names)
    for k, point in enumerate(goal.trajectory.points):
        for j, name in enumerate(preset.joint_names):
            column = arm.joint_names.index(preset.joint_map[name])
            assert point.positions[j] == model.positions[k, column]
            assert point.velocities[j] == model.velocities[k, column]
    assert [t.name for t in goal.goal_tolerance] == list(preset.joint_names)
    assert {t.position for t in goal.goal_tolerance} == {GOAL_TOLERANCE}
    assert seconds(goal.goal_time_tolerance) == SETTLE_TIME
    unknown = to_hardware_names(replace(model, joint_names=(*model.joint_names[:-1], "wrist_roll")), {})
    with pytest.raises(SafetyError, match="wrist_roll"):
        SafetyChecker(preset.safety_limits(arm)).check(unknown, measured)


def test_joint_states_are_read_by_name_through_the_joint_map(rig: Rig):
    """A driver publishing FR3 names in its own order, with gripper joints and gripper-only messages."""
    preset = replace(load_preset("franka_fr3"), joint_states_topic="/hil_fr3/joint_states")
    arm = load_family("panda")
    expected = arm.home_q + 0.01 * np.arange(arm.dof)  # Panda model order
    hardware = {name: expected[arm.joint_names.index(preset.joint_map[name])] for name in preset.joint_names}
    names = ["fr3_finger_joint1", *preset.joint_names[::-1], "fr3_finger_joint2"]
    publisher = rig.ros.node.create_publisher(JointStateMsg, preset.joint_states_topic, 10)
    stop = threading.Event()

    def drive() -> None:
        while not stop.wait(0.01):
            stamp = to_time(time.time())
            fingers = JointStateMsg(name=["fr3_finger_joint1"], position=[0.0], velocity=[0.0])
            fingers.header.stamp = stamp
            full = JointStateMsg(name=names, position=[0.04] + [hardware[n] for n in names[1:-1]] + [0.04],
                                 velocity=[0.0] * len(names))
            full.header.stamp = stamp
            publisher.publish(full)
            publisher.publish(fingers)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        with HardwareBackend(preset, dry_run=True, node_name="hil_fr3", state_timeout=rig.startup_timeout) as client:
            state = client.read_state()
            assert state.names == arm.joint_names
            np.testing.assert_array_equal(state.positions, expected)
            client.send_trajectory(shuffled(smooth(arm.joint_names, expected, np.full(arm.dof, 0.05), 2.0)))
            result = client.wait()
            assert result.success and "dry run" in result.message
    finally:
        stop.set()
        driver.join(timeout=5.0)
        rig.ros.destroy(publisher)


# ------------------------------------------------------------------------------------------ dry run and refusals


def test_dry_run_logs_what_would_be_sent_and_sends_nothing(rig: Rig):
    logs: Messages[Log] = Messages()
    subscription = rig.ros.node.create_subscription(Log, "/rosout", logs, ROSOUT_QOS)
    before = rig.tap.snapshot()
    try:
        with HardwareBackend(rig.preset, dry_run=True, node_name="hil_dry_run") as client:
            q = client.read_state().positions
            client.send_trajectory(smooth(client.joint_names, q, toward_center(rig, q, 0.1), 2.0))
            assert not client.is_executing()
            result = client.wait()
            assert result.success and "dry run" in result.message
            client.stop()

            text = logs.wait_for(lambda m: m.name == "hil_dry_run" and "dry run, not sent" in m.msg,
                                 REPLY_TIMEOUT, what="the dry run's log on /rosout").msg
            assert rig.preset.joint_names[WRIST[0]] in text and "rad/s" in text and "flange" in text
            assert_held(rig)
    finally:
        rig.ros.destroy(subscription)
    assert rig.tap.snapshot() == before, "the dry run sent something to the controller"


def _refusals(rig: Rig, q: np.ndarray) -> dict[str, tuple[JointTrajectory, str]]:
    """Trajectories from the measured ``q`` the safety layer must refuse, with the expected message."""
    names, limits = rig.backend.joint_names, rig.backend.limits
    j, w = 3, WRIST[0]
    beyond = q.copy()
    beyond[j] = limits.upper[j] + 0.1
    far = smooth(names, q, toward_center(rig, q, 0.2), 2.0)
    start = replace(far, positions=far.positions + toward_center(rig, q, 0.2))
    fast = JointTrajectory(names, np.array([0.0, 0.1]), np.vstack([q, q + toward_center(rig, q, 0.3, (w,))]))
    vmax, amax = limits.velocity[w], rig.preset.acceleration[w]
    hop = vmax**2 / (6 * amax)  # at half the velocity limit, three times the acceleration limit
    jerky = JointTrajectory(names, np.array([0.0, hop / (0.5 * vmax)]),
                            np.vstack([q, q + toward_center(rig, q, hop, (w,))]))
    nan = smooth(names, q, toward_center(rig, q, 0.1), 2.0)
    nan.positions[5, w] = np.nan
    unknown = replace(nan, joint_names=(*names[:-1], "wrist_roll"), positions=far.positions)
    return {
        "position limit": (JointTrajectory(names, np.array([0.0, 20.0]), np.vstack([q, beyond])),
                           f"{rig.preset.joint_names[j]}: position .* above the position limit"),
        "velocity limit": (fast, f"{rig.preset.joint_names[w]}: velocity .* exceeds the velocity limit"),
        "acceleration limit": (jerky, f"{rig.preset.joint_names[w]}: acceleration .* exceeds the acceleration limit"),
        "far from the start": (start, "above the max start deviation"),
        "NaN": (nan, f"{rig.preset.joint_names[w]}: position at point 5 is nan"),
        "unknown joint": (unknown, r"unknown joints \['wrist_roll'\]"),
    }


@pytest.mark.parametrize("case", ["position limit", "velocity limit", "acceleration limit", "far from the start",
                                  "NaN", "unknown joint"])
def test_refused_trajectories_send_nothing(rig: Rig, case: str):
    q = rig.backend.read_state().positions
    trajectory, message = _refusals(rig, q)[case]
    before = rig.tap.snapshot()
    with pytest.raises(SafetyError, match=message):
        rig.backend.send_trajectory(trajectory)
    assert not rig.backend.is_executing()
    held = assert_held(rig)
    assert np.max(np.abs(held - q)) < 5e-3
    assert rig.tap.snapshot() == before, "a refused trajectory reached the controller"


def test_flange_outside_the_workspace_is_refused(rig: Rig):
    """A box that holds the flange now but not where a shoulder-and-elbow move would take it."""
    arm = load_family(rig.preset.family)
    q = rig.backend.read_state().positions
    delta = toward_center(rig, q, 0.2, (1, 3))
    in_arm_order = [rig.preset.model_names.index(n) for n in arm.joint_names]
    here, there = (flange_position(arm, v[in_arm_order]) for v in (q, q + delta))
    axis = int(np.argmax(np.abs(there - here)))
    lower, upper = here - 0.5, here + 0.5
    (upper if there[axis] > here[axis] else lower)[axis] = (here[axis] + there[axis]) / 2
    boxed = replace(rig.preset, workspace=Workspace(lower, upper))
    before = rig.tap.snapshot()
    with HardwareBackend(boxed, dry_run=rig.backend.dry_run, node_name="hil_workspace") as client:
        with pytest.raises(SafetyError, match=f"flange: {'xyz'[axis]} = .* the workspace"):
            client.send_trajectory(smooth(client.joint_names, q, delta, 4.0))
    assert_held(rig)
    assert rig.tap.snapshot() == before


# ------------------------------------------------------------------------------------------ motion


def test_small_motion_in_shuffled_joint_order_tracks(arm: Rig):
    backend = arm.backend
    q0 = backend.read_state().positions
    delta = toward_center(arm, q0, 0.1)
    result = backend.execute(shuffled(smooth(backend.joint_names, q0, delta, 2.0)))
    assert result.success, result.message
    assert "SUCCESSFUL" in result.message
    assert np.max(np.abs(result.final_error)) <= GOAL_TOLERANCE
    assert 1.9 <= result.duration <= 2.0 + SETTLE_TIME + 2.0
    tracking = backend.tracking_error
    assert np.all(np.isfinite(tracking)) and np.max(tracking) < TRACKING_BOUND, tracking
    print(f"small motion: peak tracking error {np.max(tracking):.5f} rad, final error "
          f"{np.max(np.abs(result.final_error)):.5f} rad, {result.duration:.2f} s")
    np.testing.assert_allclose(backend.read_state().positions, q0 + delta, atol=GOAL_TOLERANCE)
    back = backend.execute(smooth(backend.joint_names, backend.read_state().positions, -delta, 2.0))
    assert back.success, back.message


def test_trajectory_topic_motion(arm: Rig):
    if arm.preset.trajectory_topic is None:
        pytest.skip(f"preset '{arm.preset.name}' has no trajectory topic")
    client = arm.connect(arm.preset, dry_run=arm.backend.dry_run, use_topic=True, node_name="hil_topic")
    q0 = client.read_state().positions
    delta = toward_center(arm, q0, 0.1)
    result = client.execute(smooth(client.joint_names, q0, delta, 1.5))
    assert result.success and "joint states" in result.message, result.message
    assert np.max(np.abs(result.final_error)) <= GOAL_TOLERANCE
    back = client.execute(smooth(client.joint_names, client.read_state().positions, -delta, 1.5))
    assert back.success, back.message
    client.close()


def test_a_trajectory_topic_the_controller_does_not_subscribe_to_is_refused_whoever_else_does(rig: Rig):
    """A match with another subscriber (here a monitor) says nothing of the controller's: nothing is sent."""
    unserved = replace(rig.preset, trajectory_topic="/hil_unserved/joint_trajectory")
    matched = threading.Event()
    monitor = rig.ros.node.create_subscription(
        JointTrajectoryMsg, unserved.trajectory_topic, lambda _: None, 10,
        event_callbacks=SubscriptionEventCallbacks(matched=lambda info: info.current_count > 0 and matched.set()))
    try:
        with HardwareBackend(unserved, dry_run=False, use_topic=True, node_name="hil_unserved") as client:
            assert matched.wait(REPLY_TIMEOUT), "the monitor did not match the client's publisher"
            client.read_state()  # joint states flowing: the 1 s below is the controller's alone
            with pytest.raises(HardwareError, match=f"the controller serving {unserved.action} does not subscribe to "
                                                    f"{unserved.trajectory_topic} within [0-9.]+ s"):
                client.wait_ready(1.0)
    finally:
        rig.ros.destroy(monitor)


def _start_long_move(rig: Rig) -> tuple[np.ndarray, np.ndarray]:
    """Start a 4 s, 0.25 rad wrist move and let it run 1 s (of joint-state stamps); the start and the displacement."""
    start = rig.backend.read_state()
    q0 = start.positions
    delta = toward_center(rig, q0, 0.25)
    rig.backend.send_trajectory(smooth(rig.backend.joint_names, q0, delta, 4.0))
    rig.state_after(1.0, since=start.stamp)
    assert rig.backend.is_executing()
    return q0, delta


def test_stop_cancels_and_holds_position(arm: Rig):
    q0, delta = _start_long_move(arm)
    arm.backend.stop()
    assert not arm.backend.is_executing()
    result = arm.backend.wait(1.0)
    assert not result.success and "stopped" in result.message
    arm.state_after(0.3)  # coming to rest
    held = assert_held(arm)
    moved = np.abs(held - q0)[list(WRIST)]
    assert np.all(moved > 0.005) and np.all(moved < 0.2), moved  # stopped short of the target


def test_a_new_trajectory_preempts_the_running_one(arm: Rig):
    q0, delta = _start_long_move(arm)
    q1 = arm.backend.read_state().positions
    first = len(arm.states)
    arm.backend.send_trajectory(smooth(arm.backend.joint_names, q1, q0 - q1, 2.0))
    result = arm.backend.wait()
    assert result.success, result.message
    names = set(arm.preset.joint_names)
    path = [arm.state(msg).positions for msg in arm.states.messages[first:] if names <= set(msg.name)]
    assert np.max(np.abs(np.array(path) - q0)[:, list(WRIST)]) < 0.15  # never went on to the first target
    np.testing.assert_allclose(arm.backend.read_state().positions, q0, atol=GOAL_TOLERANCE)


def test_stop_service(arm: Rig):
    service = f"{arm.backend.node.get_fully_qualified_name()}/stop"
    client = arm.ros.node.create_client(Trigger, service)
    try:
        assert client.wait_for_service(timeout_sec=REPLY_TIMEOUT), f"{service} not found"
        q0, _ = _start_long_move(arm)
        future = client.call_async(Trigger.Request())
        assert wait_for(future, REPLY_TIMEOUT), f"no reply from {service}"
        response = future.result()
        assert response.success and "cancel" in response.message, response.message
        result = arm.backend.wait(1.0)
        assert not result.success and "stop service" in result.message
        arm.state_after(0.3)  # coming to rest
        assert np.max(np.abs(assert_held(arm) - q0)) < 0.2
    finally:
        arm.ros.destroy(client)


# ------------------------------------------------------------------------------------------ faults


def test_killing_the_arm_node_mid_trajectory_fails_the_execution_within_the_watchdog_timeout(rig: Rig,
                                                                                          record_property):
    rig.require_simulation("it kills the arm node")
    preset, sim = rig.start_sim("/doomed", killed=True)
    client = rig.connect(preset, sim, node_name="hil_doomed")
    q0 = client.read_state().positions
    start = client.read_state().stamp
    client.send_trajectory(smooth(client.joint_names, q0, toward_center(rig, q0, 0.25), 4.0))
    moving = Messages()
    rig.ros.node.create_subscription(JointStateMsg, preset.joint_states_topic, moving, qos_profile_sensor_data)
    moving.wait_for(lambda msg: seconds(msg.header.stamp) > start + 1.0, what="1 s of the move")
    assert client.is_executing()
    killed = time.monotonic()
    sim.process.kill()  # SIGKILL: no goodbye, no result
    result = client.wait()
    elapsed = time.monotonic() - killed
    record_property("seconds_to_error", round(elapsed, 3))
    print(f"arm node killed: error after {elapsed:.3f} s (watchdog timeout {preset.watchdog_timeout} s)")
    assert not result.success and "stale" in result.message, result.message
    assert elapsed <= preset.watchdog_timeout + KILL_MARGIN
    assert not client.is_executing()
    with pytest.raises(HardwareError, match="stale"):
        client.send_trajectory(smooth(client.joint_names, q0, np.zeros(len(q0)), 1.0))
