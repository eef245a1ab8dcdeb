"""Target → trajectory latency of the policy node, through ROS, against real arm_node and policy_node processes.

Both nodes run as subprocesses on a ROS domain of their own (101-200 from this process's id, apart from the
1-100 of the arm-node bench and the ROS tests) with localhost discovery and their ROS logs in a temporary
folder. The policy node plans with the Panda model file of the ``small`` preset's model, trained here in a few
seconds (latency does not depend on how well it reaches), for the nominal Panda behind the ``sim_panda`` preset.

This process publishes one target at a time on ``/target`` and waits until a new goal shows up as
accepted (or executing) on the FollowJointTrajectory action's status topic. Target → goal accepted runs from
just before the target is published (system clock) to the goal's acceptance stamp in that status (the arm
node's ROS clock, the same system clock: the action server stamps a goal when its goal callback has accepted
it, just before it answers the client). The interval holds the target's trip to the policy node; there,
callback scheduling, reading the joint state, the model's prediction, fitting the trajectory to the limits, the
safety check and sending the goal; in the arm node, taking the request and checking the goal. Target → status
seen runs to the status message's arrival here (monotonic clock): it adds the answer being sent, the status's
trip and this process's own scheduling, none of which the policy node waits for.

Every target starts from home at rest with no goal running, after ``SETTLE`` s in which the nodes have nothing
to do but joint states: once a goal is accepted, ``/arm_node/reset`` puts the arm back at home, aborting the goal;
every ``RUN_TO_END_EVERY``-th goal runs to its end first (seen on the status topic; how many of those succeeded is
reported). The targets lie within ``SHORT_REACH`` of the flange's home position (seeded), so that these motions are
short; with most cut short too, many targets fit in a run and p99 is more than the largest of a few. One untimed
target first lets the nodes finish discovering each other. For comparison,
:func:`~mtrl_robot.ros.policy_node.plan_latency` times the planning step alone, without ROS, on the same
model file and targets.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from action_msgs.msg import GoalStatus, GoalStatusArray
from geometry_msgs.msg import PointStamped
from rclpy.client import Client
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import Trigger

from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.hardware.presets import load_preset as load_hardware_preset
from mtrl_robot.learning.reaching.presets import load_preset
from mtrl_robot.learning.reaching.train import train_from_preset
from mtrl_robot.ros.conversions import point_msg
from mtrl_robot.ros.conversions import seconds as stamp_seconds
from mtrl_robot.ros.policy_node import plan_latency
from mtrl_robot.ros.run import node_command
from mtrl_robot.tools.bench.ros_bench import BenchClient, percentiles_ms, stop_process, wait_reply

STARTUP_TIMEOUT = 60.0  # s for both nodes to come up and the first target to become a goal (loaded machine)
ACCEPT_TIMEOUT = 10.0  # s from publishing a target to its goal's acceptance
TRAJECTORY_TIMEOUT = 30.0  # s from a goal's acceptance to its end
SETTLE = 0.5  # s after the reset before the next target: the policy node's joint state is the home one, both idle
TARGETS = 120  # timed targets per run
RUN_TO_END_EVERY = 20  # one target in this many has its trajectory run to its end; the others' are aborted
SHORT_REACH = 0.05  # m, the most a target lies from the flange's home position along each axis
LOG_TAIL = 3000  # characters of a node's log quoted when it fails
STATUS_TOPIC = "/joint_trajectory_controller/follow_joint_trajectory/_action/status"
STATUS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
ACTIVE = (GoalStatus.STATUS_ACCEPTED, GoalStatus.STATUS_EXECUTING)
ENDED = (GoalStatus.STATUS_SUCCEEDED, GoalStatus.STATUS_ABORTED, GoalStatus.STATUS_CANCELED)
TRAINING = [  # overrides of the small preset: its model, Panda only, trained in a few seconds
    "data.families=[panda]", "data.robots_per_family=3", "data.held_out_per_family=1", "data.demos_per_robot=6",
    "pretrain.nominal_demos=100", "pretrain.vae_steps=40", "pretrain.policy_steps=150",
    "meta.k_support=3", "meta.k_query=3", "meta.meta_batch_size=2", "meta.meta_steps=2", "meta.checkpoint_every=2"]


class _Node:
    """A node subprocess with its output in a file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], folder: Path):
        self.name, self.log = name, folder / f"{name}.log"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

    def failure(self, what: str) -> RuntimeError:
        """An error saying ``what`` went wrong, with the exit code (if any) and the end of the node's log."""
        return RuntimeError(f"{self.name} {what} (exit code {self.process.poll()}); end of its log:\n"
                            f"{self.log.read_text()[-LOG_TAIL:]}")


class _GoalLog:
    """When each goal id was first seen active (``perf_counter``), its acceptance stamp (s, system clock), and how
    it ended, on the action's status topic."""

    def __init__(self) -> None:
        self.accepted: dict[bytes, float] = {}
        self.stamps: dict[bytes, float] = {}
        self.ended: dict[bytes, int] = {}
        self._changed = threading.Condition()

    def __call__(self, msg: GoalStatusArray) -> None:
        now = time.perf_counter()
        with self._changed:
            for status in msg.status_list:
                goal = bytes(status.goal_info.goal_id.uuid)
                if status.status in ACTIVE:
                    self.accepted.setdefault(goal, now)
                    self.stamps.setdefault(goal, stamp_seconds(status.goal_info.stamp))
                elif status.status in ENDED:
                    self.ended.setdefault(goal, status.status)
            self._changed.notify_all()

    def seen(self) -> set[bytes]:
        """Every goal id seen so far."""
        with self._changed:
            return set(self.accepted) | set(self.ended)

    def new_goal(self, known: set[bytes], timeout: float) -> bytes | None:
        """The earliest accepted goal not in ``known``, waiting up to ``timeout`` s for one; None if none came."""
        with self._changed:
            self._changed.wait_for(lambda: self.accepted.keys() - known, timeout)
            fresh = self.accepted.keys() - known
            return min(fresh, key=self.accepted.__getitem__) if fresh else None

    def idle(self, timeout: float) -> bool:
        """Whether every accepted goal has ended, waiting up to ``timeout`` s for it."""
        with self._changed:
            return self._changed.wait_for(lambda: self.accepted.keys() <= self.ended.keys(), timeout)


def bench_policy(targets: int = TARGETS, seed: int = 0) -> dict[str, float]:
    """Target → accepted-goal latency of the policy node over ``targets`` targets near home, and planning alone."""
    arm = load_family("panda")
    home = flange_position(arm, arm.home_q)  # the first target is the untimed warm-up
    points = home + np.random.default_rng(seed).uniform(-SHORT_REACH, SHORT_REACH, (targets + 1, 3))
    domain = 101 + os.getpid() % 100
    with tempfile.TemporaryDirectory(prefix="mtrl_policy_bench_") as tmp:
        folder = Path(tmp)
        run = train_from_preset(load_preset("small", TRAINING), folder / "run", progress=False)
        model = run / "checkpoints" / "panda.model.pt"
        env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
               "ROS_LOG_DIR": tmp}
        nodes: list[_Node] = []
        try:
            nodes.append(_Node("arm_node", node_command("arm_node", {"robot": "panda"}), env, folder))
            nodes.append(_Node("policy_node", node_command("policy_node", {
                "model": model, "robot": "panda", "preset": "sim_panda"}), env, folder))
            accepted, seen, ran, succeeded = _measure(domain, nodes, points)
        finally:
            for node in reversed(nodes):
                stop_process(node.process)
        planning = plan_latency(model, arm, points[1:], load_hardware_preset("sim_panda").safety_limits(arm))
    return {"targets": len(accepted), "trajectories_run_to_end": ran, "trajectories_succeeded": succeeded,
            **percentiles_ms(accepted, "target_to_goal_accepted"), **percentiles_ms(seen, "target_to_status_seen"),
            "planning_only_p50_ms": planning["p50_ms"], "planning_only_p99_ms": planning["p99_ms"]}


def _measure(domain: int, nodes: list[_Node], points: np.ndarray) -> tuple[list[float], list[float], int, int]:
    """Seconds from publishing each target but the first to its goal's acceptance stamp and to its status seen
    here; how many trajectories ran to their end, and how many of those succeeded."""
    arm_node, policy_node = nodes
    bench = BenchClient(domain, "policy_bench_client")
    client = bench.node
    goals = _GoalLog()
    client.create_subscription(GoalStatusArray, STATUS_TOPIC, goals, STATUS_QOS)
    publisher = client.create_publisher(PointStamped, "/target", 10)
    reset = client.create_client(Trigger, "/arm_node/reset")
    bench.start()
    try:
        _until(reset.service_is_ready, nodes, arm_node, "offered no /arm_node/reset service")
        _until(lambda: client.count_publishers(STATUS_TOPIC) > 0, nodes, arm_node, "published no goal status")
        _until(lambda: publisher.get_subscription_count() > 0, nodes, policy_node, "did not subscribe to /target")
        _warm_up(publisher, goals, nodes, points[0])
        _reset(reset, goals, run_to_end=True)
        accepted, seen, ran, succeeded = [], [], 0, 0
        for k, target in enumerate(points[1:]):
            known = goals.seen()
            message = point_msg(target)
            started_wall, started = time.time(), time.perf_counter()
            publisher.publish(message)
            goal = goals.new_goal(known, ACCEPT_TIMEOUT)
            if goal is None:
                raise policy_node.failure(f"sent no accepted goal for target {target.round(3).tolist()} "
                                          f"within {ACCEPT_TIMEOUT} s")
            accepted.append(goals.stamps[goal] - started_wall)
            seen.append(goals.accepted[goal] - started)
            run_to_end = k % RUN_TO_END_EVERY == 0
            _reset(reset, goals, run_to_end)
            ran += run_to_end
            succeeded += run_to_end and goals.ended[goal] == GoalStatus.STATUS_SUCCEEDED
    finally:
        bench.close()
    return accepted, seen, ran, succeeded


def _until(condition: Callable[[], bool], nodes: list[_Node], culprit: _Node, what: str) -> None:
    """Wait for ``condition``; if a node exits first, or ``STARTUP_TIMEOUT`` passes, fail with a node's log."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not condition():
        _check_running(nodes)
        if time.monotonic() > deadline:
            raise culprit.failure(f"{what} within {STARTUP_TIMEOUT} s")
        time.sleep(0.05)


def _check_running(nodes: list[_Node]) -> None:
    """Fail with the log of the first node that has exited, if any."""
    for node in nodes:
        if node.process.poll() is not None:
            raise node.failure("exited")


def _warm_up(publisher: Publisher, goals: _GoalLog, nodes: list[_Node], target: np.ndarray) -> None:
    """Publish ``target`` until it becomes an accepted goal: the first one may be lost while discovery completes."""
    _, policy_node = nodes
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        known = goals.seen()
        publisher.publish(point_msg(target))
        if goals.new_goal(known, ACCEPT_TIMEOUT) is not None:
            return
        _check_running(nodes)
        if time.monotonic() > deadline:
            raise policy_node.failure(f"sent no accepted goal for the first target within {STARTUP_TIMEOUT} s")


def _reset(reset: Client, goals: _GoalLog, run_to_end: bool) -> None:
    """Put the arm at home at rest (after every goal has ended, with ``run_to_end``; else aborting the running
    one), wait for every goal to end, and let the policy node's joint state catch up."""
    if run_to_end and not goals.idle(TRAJECTORY_TIMEOUT):
        raise TimeoutError(f"a goal still runs {TRAJECTORY_TIMEOUT} s after its acceptance")
    reply = wait_reply(reset.call_async(Trigger.Request()))
    if not reply.success:
        raise RuntimeError(f"/arm_node/reset failed: {reply.message}")
    if not goals.idle(TRAJECTORY_TIMEOUT):
        raise TimeoutError(f"a goal did not end within {TRAJECTORY_TIMEOUT} s of /arm_node/reset")
    time.sleep(SETTLE)
