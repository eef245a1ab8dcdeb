"""The policy node as a managed (lifecycle) node against a real arm node: nothing is sent while it is inactive,
deactivating it mid-motion stops the arm where it is, and a configure that fails leaves it unconfigured, with one
line (a real arm's preset leaving it inactive: test_managed_launch.py). Motion is judged from the arm node's
``/joint_states``, goals from the controller's action status and trajectory topic. Transitions go through
``~/change_state`` as a person's ``mtrl-robot ros activate`` does."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from action_msgs.msg import GoalStatus, GoalStatusArray
from geometry_msgs.msg import PointStamped
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from node_process import NodeProcess
from ros_events import Messages, logged, matched_publisher, publish_acknowledged
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg

from mtrl_robot.arms.families import load_family
from mtrl_robot.hardware.presets import load_preset
from mtrl_robot.models.model_file import reaching_model, save_model_file
from mtrl_robot.ros.conversions import point_msg, seconds
from mtrl_robot.ros.lifecycle import change_state
from mtrl_robot.ros.run import node_command

PANDA = load_family("panda")
PRESET = load_preset("sim_panda")
SWING = 1.5  # rad the model's trajectory turns joint 1 by, from wherever the arm is
STARTUP_TIMEOUT = 60.0  # s for a node to come up and reach its start state (loaded machine)
STILL = 0.01  # rad/s: every joint slower than this counts as stopped
TARGET = np.array([0.4, 0.1, 0.5])  # any target: the model below turns joint 1 whatever the target


def swing_model(path: Path) -> Path:
    """A reaching model file whose every trajectory turns joint 1 by ``SWING`` (smoothly, at rest at both ends),
    whatever the target: its offset scaler's mean is that path and its scale too small for the untrained network
    to matter."""
    config = {"n_waypoints": 20, "dof": PANDA.dof, "latent_dim": 2, "vae_hidden": (8,), "policy_hidden": (8,),
              "task_dim": 0}
    model = reaching_model(config)
    s = torch.linspace(0.0, 1.0, config["n_waypoints"])
    model.scaler.mean.zero_()
    model.scaler.mean[:, 0] = SWING * s**3 * (10 - 15 * s + 6 * s**2)
    model.scaler.scale.fill_(1e-6)
    return save_model_file(path, model, config, PANDA.joint_names, PANDA.home_q)


def start_policy_node(ros_env: dict[str, str], log: Path, name: str, **parameters: object) -> NodeProcess:
    return NodeProcess(node_command("policy_node", {"robot": "panda", **parameters}) + ["-r", f"__node:={name}"],
                       log, ros_env)


def mtrl_robot_ros(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtrl_robot.cli.main", "ros", *arguments], env=env,
                          capture_output=True, text=True, timeout=STARTUP_TIMEOUT + 60.0)


class ControllerTap:
    """Goals on the controller's action status (id → latest status) and messages on its trajectory topic."""

    def __init__(self, client) -> None:
        self.goals: dict[bytes, int] = {}
        self.trajectories: Messages[JointTrajectoryMsg] = Messages()
        self.status: Messages[GoalStatusArray] = Messages()
        self._lock = threading.Lock()
        client.between_waits(lambda: client.node.create_subscription(
            GoalStatusArray, f"{PRESET.action}/_action/status", self._on_status, 10))
        client.between_waits(lambda: client.node.create_subscription(
            JointTrajectoryMsg, PRESET.trajectory_topic, self.trajectories, 10))

    def _on_status(self, msg: GoalStatusArray) -> None:
        with self._lock:
            self.goals.update({bytes(s.goal_info.goal_id.uuid): s.status for s in msg.status_list})
        self.status(msg)


def joint(msg, name: str, field: str = "position") -> float:
    return getattr(msg, field)[list(msg.name).index(name)]


def still(msg) -> bool:
    return bool(np.all(np.abs(np.asarray(msg.velocity)) < STILL))


@pytest.fixture(scope="module")
def states(module_launcher) -> Messages:
    """The joint states of an arm node (the nominal Panda behind sim_panda's controller) shared by the module."""
    return module_launcher.start()[1]


def test_inactive_policy_node_sends_nothing_and_deactivate_stops_the_arm_where_it_is(states, ros_client, ros_env,
                                                                                     ros_log, tmp_path):
    tap = ControllerTap(ros_client)
    transitions = ros_client.between_waits(
        lambda: ros_client.node.create_client(ChangeState, "/managed_policy/change_state"))
    start = len(ros_log)
    node = start_policy_node(ros_env, tmp_path / "policy.log", "managed_policy", start_state="inactive",
                             model=swing_model(tmp_path / "swing.model.pt"))
    try:
        logged(ros_log, "inactive, as start_state asks", STARTUP_TIMEOUT, start)
        assert change_state("/managed_policy", None) == "inactive"
        targets = matched_publisher(ros_client.node, PointStamped, "/target", STARTUP_TIMEOUT)

        # Inactive: a target is ignored; no goal, no trajectory, no motion.
        before = states.latest()
        start = len(ros_log)
        publish_acknowledged(targets, point_msg(TARGET))
        logged(ros_log, "ignoring target [0.4, 0.1, 0.5]: managed_policy is not active", start=start)
        later = states.after(seconds(before.header.stamp) + 1.0)  # a second of joint states since the target
        moved = max(np.abs(np.subtract(m.position, before.position)).max() for m in states.messages
                    if seconds(before.header.stamp) <= seconds(m.header.stamp) <= seconds(later.header.stamp))
        assert moved < 1e-6 and not tap.goals and not tap.trajectories.messages, (moved, tap.goals)

        # Active: the same target moves the arm; deactivated mid-motion, the arm stops where it is and stays.
        assert change_state("/managed_policy", "activate") == "active"
        assert transitions.wait_for_service(timeout_sec=30.0)  # found before the motion, so deactivate comes at once
        home = joint(states.latest(), "panda_joint1")
        first, start = len(states), len(ros_log)
        targets.publish(point_msg(TARGET))  # not waiting for its acknowledgement: the arm is watched from now on
        states.wait_for(lambda m: abs(joint(m, "panda_joint1") - home) > 0.2 * SWING, 30.0, first,
                        "joint 1 a fifth of the way")
        request = ChangeState.Request(transition=Transition(label="deactivate"))
        assert ros_client.wait(transitions.call_async(request)).success
        sent = logged(ros_log, "reaching [0.4, 0.1, 0.5]: ", 30.0, start).msg
        duration = float(sent.split(": ")[1].split(" s ")[0])  # of the trajectory sent
        moving = states.wait_for(lambda m: abs(joint(m, "panda_joint1") - home) > 1e-3, 10.0, first, "the arm moving")
        stopped = states.wait_for(still, 10.0, len(states), "the arm stopped")
        held = joint(stopped, "panda_joint1")
        # Stopped on the way, neither back home nor at the end: deactivated a fifth of the way, the arm is held where
        # the client last measured it, a few milliseconds before.
        assert 0.1 * SWING < abs(held - home) < 0.9 * SWING, (home, held)
        (goal, _), = tap.goals.items()
        # The client cancels the goal and publishes a hold on the trajectory topic: two channels with no order
        # between them, so the goal ends canceled, or aborted when the hold preempts it first; never succeeded.
        ended = (GoalStatus.STATUS_CANCELED, GoalStatus.STATUS_ABORTED)
        tap.status.wait_for(lambda m: any(s.status in ended for s in m.status_list), what="the goal ended unfinished")
        assert tap.goals[goal] in ended, tap.goals[goal]
        after_end = states.after(seconds(moving.header.stamp) + duration + 0.2)
        assert abs(joint(after_end, "panda_joint1") - held) < 1e-3 and still(after_end)  # held past the goal's end
        assert change_state("/managed_policy", None) == "inactive"

        start = len(ros_log)
        publish_acknowledged(targets, point_msg(TARGET))  # inactive again: ignored
        logged(ros_log, "ignoring target [0.4, 0.1, 0.5]: managed_policy is not active", start=start)
        assert list(tap.goals) == [goal]
    finally:
        code = node.stop()
        ros_client.destroy(transitions)
    assert code == 0, node.output()
    assert "Traceback" not in node.output(), node.output()


def test_a_failed_configure_leaves_the_node_unconfigured_with_one_line(states, ros_env, ros_log, tmp_path):
    start = len(ros_log)
    node = start_policy_node(ros_env, tmp_path / "bad.log", "bad_model_policy", model=tmp_path / "missing.model.pt")
    try:
        failed = logged(ros_log, "configure failed: ", STARTUP_TIMEOUT, start)
        assert failed.name == "bad_model_policy" and "missing.model.pt: " in failed.msg
        assert failed.msg.endswith("bad_model_policy stays unconfigured") and "\n" not in failed.msg
        assert change_state("/bad_model_policy", None) == "unconfigured"
        with pytest.raises(RuntimeError, match="bad_model_policy refused or failed to activate; it is unconfigured"):
            change_state("/bad_model_policy", "activate")
    finally:
        code = node.stop()
    assert code == 0 and "Traceback" not in node.output(), node.output()


def test_the_lifecycle_command_names_a_node_that_is_not_there_in_one_line(ros_env):
    done = mtrl_robot_ros(ros_env, "activate", "/nobody", "--timeout", "1")
    assert done.returncode == 1 and done.stderr == ("mtrl-robot ros activate: error: no service /nobody/change_state "
                                                    "within 1 s: is /nobody running (a managed node), in this "
                                                    "ROS_DOMAIN_ID?\n"), done.stderr
