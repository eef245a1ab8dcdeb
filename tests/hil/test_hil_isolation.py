"""One client must not stop another (simulation only): an absurdly large goal from another client leaves a
running motion and the joint states alone; a goal the client gave up on, because the controller was frozen,
never runs once the controller resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from ros_events import Messages
from sensor_msgs.msg import JointState as JointStateMsg
from test_hil import smooth, toward_center

from mtrl_robot.ros.conversions import seconds
from mtrl_robot.ros.hardware_backend import REPLY_TIMEOUT, HardwareError

if TYPE_CHECKING:
    from conftest import Rig

OVERSIZED_POINTS = 300_000  # the goal: it froze /joint_states for 0.8 s
SENDER_TIMEOUT = 120.0  # s for the other client to come up, or to report the answer to its goal
FROZEN_HOLD = 2e-3  # rad the arm may drift at rest after the freeze
MOTION = 0.25  # rad on the wrist joints


def stamps(messages: list[JointStateMsg]) -> np.ndarray:
    return np.array([seconds(msg.header.stamp) for msg in messages])


def test_an_oversized_goal_from_another_client_leaves_the_running_motion_and_joint_states_alone(rig: Rig,
                                                                                              record_property):
    rig.require_simulation("it floods the controller with a 300,000-point goal")
    client = rig.backend
    sender = subprocess.Popen([sys.executable, str(Path(__file__).with_name("oversized_goal.py")), rig.preset.action,
                               ",".join(rig.preset.joint_names), str(OVERSIZED_POINTS)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert sender.stdout.readline().strip() == "ready", "the other client did not find the action server"
        q0 = client.read_state().positions
        first = len(rig.states)
        client.send_trajectory(smooth(client.joint_names, q0, toward_center(rig, q0, MOTION), 20.0))
        sender.stdin.write("go\n")
        sender.stdin.flush()
        answer = sender.stdout.readline().strip()
        running = client.is_executing()
        result = client.wait()
    finally:  # it exits by itself: killed, it could leave a shared-memory lock held (node_process.killable)
        sender.stdin.close()
        try:
            sender.wait(SENDER_TIMEOUT)
        except subprocess.TimeoutExpired:
            sender.kill()
            sender.wait()
    gaps = np.diff(stamps(rig.states.messages[first:]))
    record_property("largest_joint_state_gap_s", round(float(gaps.max()), 3))
    print(f"largest /joint_states gap while a {OVERSIZED_POINTS}-point goal was refused: {gaps.max():.3f} s")
    assert answer == "rejected", f"the other client's goal: {answer or 'no answer'}"
    assert result.success, result.message
    assert gaps.max() < rig.preset.watchdog_timeout, \
        f"/joint_states paused for {gaps.max():.3f} s (watchdog timeout {rig.preset.watchdog_timeout} s)"
    assert running, "the motion had ended before the oversized goal was answered: nothing was tested"


@pytest.mark.parametrize("topic", [True, False], ids=["with trajectory topic", "action only"])
def test_a_goal_sent_to_a_frozen_controller_fails_and_never_runs(rig: Rig, topic: bool):
    rig.require_simulation("it freezes the arm node with SIGSTOP")
    preset, sim = rig.start_sim("/frozen_with_topic" if topic else "/frozen_action_only", killed=True)
    if not topic:  # as for a controller without one (Baxter's): no hold can be published, only cancels
        preset = replace(preset, trajectory_topic=None)
    client = rig.connect(preset, sim, node_name="hil_frozen")
    states: Messages[JointStateMsg] = Messages()
    rig.ros.node.create_subscription(JointStateMsg, preset.joint_states_topic, states, qos_profile_sensor_data)
    q0 = client.read_state().positions
    trajectory = smooth(client.joint_names, q0, toward_center(rig, q0, MOTION), 2.0)
    os.kill(sim.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(HardwareError, match="did not answer"):
            client.send_trajectory(trajectory)  # the joint states are still fresh: the goal is sent
    finally:
        resumed = time.time()  # the node stamps joint states with the system clock
        os.kill(sim.process.pid, signal.SIGCONT)
    assert not client.is_executing()
    end = resumed + trajectory.duration + 1.0  # past the end of the goal, had it run
    states.wait_for(lambda msg: seconds(msg.header.stamp) > end, timeout=REPLY_TIMEOUT + 30.0,
                    what="joint states after the goal's would-be end")
    after = [rig.state(msg).positions for msg in states.messages if seconds(msg.header.stamp) > resumed]
    drift = np.max(np.abs(np.array(after) - q0))
    print(f"largest displacement after the controller resumed: {drift:.4f} rad")
    assert drift < FROZEN_HOLD, f"the arm moved by {drift:.4f} rad after the controller resumed"
    assert not client.is_executing()
