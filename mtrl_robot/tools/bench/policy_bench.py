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
model file and targets, and :func:`~mtrl_robot.tools.bench.stage_bench.stage_latency` times each stage of the work
between a target and its accepted goal on the first ``STAGE_TARGETS`` of them, back to back and after an idle spell
(unless ``time_stages`` is off).

Each target is sent three times, back to back in the same processes: once with the policy node's default
``goal_points``, once with every point the model predicts (``ALL_POINTS``, set through the node's ``set_parameters``
service in between) and once to the floor relay (:mod:`~mtrl_robot.tools.bench.ros_floor`: the same hops, a target to
a relay node that sends a fixed goal of the same size to an action server that accepts it, with nothing planned or
checked), the order rotating from target to target, so the three latencies are measured in the same conditions. The
floor is what rclpy and the middleware cost on this machine; the policy node's latency over it is reported as a ratio
(``target_to_goal_accepted_p50_over_ros_floor``, p99 likewise). Every node runs its executor and middleware
threads at ``executor_priority`` (:mod:`~mtrl_robot.ros.realtime`; 0: normal scheduling); the figures say whether
the system granted it (``executor_sched_fifo``). With ``keep_cpus_awake``, the measurement runs with every CPU kept out
of its idle states (:func:`~mtrl_robot.ros.realtime.cpus_awake`; ``cpus_awake`` says whether the system allowed
it). For the trajectories run to their end, both
executions are recorded from ``/joint_states`` and compared: the flange path (how far each point of the thinned
goal's path lies from the nearest point of the full goal's path), and each final joint error against the planned
final posture (the same for both).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from action_msgs.msg import GoalStatus, GoalStatusArray
from geometry_msgs.msg import PointStamped
from rcl_interfaces.srv import SetParameters
from rclpy.client import Client
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.hardware.presets import load_preset as load_hardware_preset
from mtrl_robot.learning.reaching.presets import load_preset
from mtrl_robot.learning.reaching.train import train_from_preset
from mtrl_robot.models.model_file import load_model_file
from mtrl_robot.models.numpy_model import NumpyReachingModel
from mtrl_robot.ros.conversions import point_msg
from mtrl_robot.ros.conversions import seconds as stamp_seconds
from mtrl_robot.ros.policy_node import GOAL_POINTS, plan, plan_latency
from mtrl_robot.ros.realtime import EXECUTOR_PRIORITY, cpus_awake
from mtrl_robot.ros.run import node_command
from mtrl_robot.tools.bench.ros_bench import BenchClient, percentiles_ms, stop_process, wait_reply
from mtrl_robot.tools.bench.ros_floor import FLOOR, floor_command
from mtrl_robot.tools.bench.stage_bench import stage_latency

STARTUP_TIMEOUT = 60.0  # s for both nodes to come up and the first target to become a goal (loaded machine)
ACCEPT_TIMEOUT = 10.0  # s from publishing a target to its goal's acceptance
TRAJECTORY_TIMEOUT = 30.0  # s from a goal's acceptance to its end
SETTLE = 0.5  # s after the reset before the next target: the policy node's joint state is the home one, both idle
TARGETS = 120  # timed targets per run
STAGE_TARGETS = 40  # of them, timed stage by stage without ROS (each after an idle spell, and back to back)
RUN_TO_END_EVERY = 10  # one target in this many has its trajectories run to their end; the others' are aborted
ALL_POINTS = 32  # goal_points that sends every point the model predicts: the comparison
SHORT_REACH = 0.05  # m, the most a target lies from the flange's home position along each axis
LOG_TAIL = 3000  # characters of a node's log quoted when it fails
STATUS_TOPIC = "/joint_trajectory_controller/follow_joint_trajectory/_action/status"
FLOOR_STATUS_TOPIC = f"{FLOOR}/follow_joint_trajectory/_action/status"
ORDER = [GOAL_POINTS, ALL_POINTS, FLOOR]  # each target's three trials, the order rotating from target to target
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
    it ended, on the action's status topic; ``active``: the statuses that count as seen active."""

    def __init__(self, active: tuple[int, ...] = ACTIVE) -> None:
        self.active = active
        self.accepted: dict[bytes, float] = {}
        self.stamps: dict[bytes, float] = {}
        self.ended: dict[bytes, int] = {}
        self._changed = threading.Condition()

    def __call__(self, msg: GoalStatusArray) -> None:
        now = time.perf_counter()
        with self._changed:
            for status in msg.status_list:
                goal = bytes(status.goal_info.goal_id.uuid)
                if status.status in self.active:
                    self.accepted.setdefault(goal, now)
                    self.stamps.setdefault(goal, stamp_seconds(status.goal_info.stamp))
                if status.status in ENDED:
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


class _JointStates:
    """The arm's joint positions from ``/joint_states`` while recording, in ``names``' order."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        self._lock = threading.Lock()
        self._rows: list[np.ndarray] | None = None

    def __call__(self, msg: JointState) -> None:
        with self._lock:
            if self._rows is not None:
                index = {n: j for j, n in enumerate(msg.name)}
                self._rows.append(np.array([msg.position[index[n]] for n in self.names]))

    def start(self) -> None:
        with self._lock:
            self._rows = []

    def stop(self) -> np.ndarray:
        """The positions (T, dof) received since :meth:`start`."""
        with self._lock:
            rows, self._rows = self._rows, None
        return np.array(rows)


@dataclass
class _Trials:
    """What one ``goal_points`` setting gave: latencies (s), and the executions run to their end by target index."""

    accepted: list[float] = field(default_factory=list)
    seen: list[float] = field(default_factory=list)
    paths: dict[int, np.ndarray] = field(default_factory=dict)  # joint positions from the target's publication on
    succeeded: int = 0


def bench_policy(targets: int = TARGETS, seed: int = 0, executor_priority: int = EXECUTOR_PRIORITY,
                 keep_cpus_awake: bool = False, time_stages: bool = True) -> dict[str, float]:
    """Target → accepted-goal latency of the policy node over ``targets`` targets near home, with its default
    ``goal_points`` and with every point, planning alone, and how thinning changed the executed motions; every node
    (the floor's too) at ``executor_priority``, and whether each got it (``executor_sched_fifo``); with
    ``keep_cpus_awake``, CPUs kept out of idle states while measuring, and whether they were (``cpus_awake``)."""
    arm = load_family("panda")
    home = flange_position(arm, arm.home_q)  # the first target is the untimed warm-up
    points = home + np.random.default_rng(seed).uniform(-SHORT_REACH, SHORT_REACH, (targets + 1, 3))
    domain = 101 + os.getpid() % 100
    preset = load_hardware_preset("sim_panda")
    limits = preset.safety_limits(arm)
    with tempfile.TemporaryDirectory(prefix="mtrl_policy_bench_") as tmp:
        folder = Path(tmp)
        run = train_from_preset(load_preset("small", TRAINING), folder / "run", progress=False)
        model = run / "checkpoints" / "panda.model.pt"
        env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
               "ROS_LOG_DIR": tmp}
        nodes: list[_Node] = []
        try:
            priority = {"executor_priority": executor_priority}
            nodes.append(_Node("arm_node", node_command("arm_node", {"robot": "panda", **priority}), env, folder))
            nodes.append(_Node("policy_node", node_command("policy_node", {
                "model": model, "robot": "panda", "preset": "sim_panda", **priority}), env, folder))
            nodes += [_Node(f"floor_{role}", floor_command(role, GOAL_POINTS, executor_priority=executor_priority),
                            env, folder) for role in ("relay", "server")]
            with cpus_awake() if keep_cpus_awake else nullcontext("not asked for") as refusal:
                if keep_cpus_awake and refusal:
                    print(f"policy bench: {refusal}")
                trials = _measure(domain, nodes, points, arm.joint_names)
            fifo = all(os.sched_getscheduler(node.process.pid) == os.SCHED_FIFO for node in nodes)
        finally:
            for node in reversed(nodes):
                stop_process(node.process)
        model_file = load_model_file(model)
        planning = {n: plan_latency(model_file, arm, points[1:], limits, n) for n in (GOAL_POINTS, ALL_POINTS)}
        stages = stage_latency(model_file, arm, preset, points[1:1 + STAGE_TARGETS], GOAL_POINTS) if time_stages else {}
    planner = NumpyReachingModel(model_file)
    thin, full, floor = trials[GOAL_POINTS], trials[ALL_POINTS], trials[FLOOR]
    ran = sorted(thin.paths)
    planned = [plan(planner, arm, points[1 + k], arm.home_q, limits, ALL_POINTS).positions[-1] for k in ran]
    deviation = [_path_deviation(arm, thin.paths[k], full.paths[k]) for k in ran]
    return {"executor_priority": executor_priority, "executor_sched_fifo": fifo, "cpus_awake": refusal is None,
            "targets": len(thin.accepted), "goal_points": GOAL_POINTS, "trajectories_run_to_end": len(ran),
            "trajectories_succeeded": thin.succeeded,
            **percentiles_ms(thin.accepted, "target_to_goal_accepted"),
            **percentiles_ms(thin.seen, "target_to_status_seen"),
            "planning_only_p50_ms": planning[GOAL_POINTS]["p50_ms"],
            "planning_only_p99_ms": planning[GOAL_POINTS]["p99_ms"],
            "all_points": ALL_POINTS, "all_points_trajectories_succeeded": full.succeeded,
            **percentiles_ms(full.accepted, "all_points_target_to_goal_accepted"),
            **percentiles_ms(full.seen, "all_points_target_to_status_seen"),
            **percentiles_ms(floor.accepted, "ros_floor_target_to_goal_accepted"),
            **percentiles_ms(floor.seen, "ros_floor_target_to_status_seen"),
            **{f"target_to_goal_accepted_{q}_over_ros_floor": float(np.percentile(thin.accepted, p)
                                                                    / np.percentile(floor.accepted, p))
               for q, p in (("p50", 50), ("p99", 99))},
            "all_points_planning_only_p50_ms": planning[ALL_POINTS]["p50_ms"],
            "all_points_planning_only_p99_ms": planning[ALL_POINTS]["p99_ms"],
            **stages,
            "executed_path_deviation_p50_mm": 1e3 * float(np.median(deviation)),
            "executed_path_deviation_max_mm": 1e3 * float(np.max(deviation)),
            "final_joint_error_max_rad": _final_error(thin.paths, ran, planned),
            "all_points_final_joint_error_max_rad": _final_error(full.paths, ran, planned),
            "start_joint_error_max_rad": _start_error(thin.paths, arm.home_q),
            "all_points_start_joint_error_max_rad": _start_error(full.paths, arm.home_q)}


def _path_deviation(arm: Arm, thin: np.ndarray, full: np.ndarray) -> float:
    """How far (m) the flange's path along joint positions ``thin`` strays from its path along ``full``: the largest
    distance from a point of the one to the nearest point of the other."""
    a, b = flange_position(arm, thin), flange_position(arm, full)
    return float(np.sqrt(((a[:, None] - b[None]) ** 2).sum(axis=2)).min(axis=1).max())


def _final_error(paths: dict[int, np.ndarray], ran: list[int], planned: list[np.ndarray]) -> float:
    """The largest |final joint position − planned final posture| (rad) over the executions ``ran``."""
    return float(max(np.abs(paths[k][-1] - q).max() for k, q in zip(ran, planned, strict=True)))


def _start_error(paths: dict[int, np.ndarray], home: np.ndarray) -> float:
    """The largest |joint position when the target was published − home| (rad) over the executions ``paths``."""
    return float(max(np.abs(path[0] - home).max() for path in paths.values()))


def _measure(domain: int, nodes: list[_Node], points: np.ndarray, names: tuple[str, ...]) -> dict[int | str, _Trials]:
    """Each target but the first sent with ``GOAL_POINTS``, with ``ALL_POINTS`` and to the floor relay (``FLOOR``):
    seconds from publishing it to its goal's acceptance stamp and to its status seen here, and the joint positions
    of the executions run to their end, by ``goal_points``."""
    arm_node, policy_node, floor_relay, floor_server = nodes
    bench = BenchClient(domain, "policy_bench_client")
    client = bench.node
    goals, floor_goals = _GoalLog(), _GoalLog(ACTIVE + ENDED)  # the floor server aborts each goal at once
    states = _JointStates(names)
    client.create_subscription(GoalStatusArray, STATUS_TOPIC, goals, STATUS_QOS)
    client.create_subscription(GoalStatusArray, FLOOR_STATUS_TOPIC, floor_goals, STATUS_QOS)
    client.create_subscription(JointState, "/joint_states", states, 10)
    publisher = client.create_publisher(PointStamped, "/target", 10)
    floor_publisher = client.create_publisher(PointStamped, f"{FLOOR}/target", 10)
    reset = client.create_client(Trigger, "/arm_node/reset")
    parameters = client.create_client(SetParameters, "/policy_node/set_parameters")
    bench.start()
    trials: dict[int | str, _Trials] = {GOAL_POINTS: _Trials(), ALL_POINTS: _Trials(), FLOOR: _Trials()}
    try:
        _until(reset.service_is_ready, nodes, arm_node, "offered no /arm_node/reset service")
        _until(parameters.service_is_ready, nodes, policy_node, "offered no /policy_node/set_parameters service")
        _until(lambda: client.count_publishers(STATUS_TOPIC) > 0, nodes, arm_node, "published no goal status")
        _until(lambda: publisher.get_subscription_count() > 0, nodes, policy_node, "did not subscribe to /target")
        _until(lambda: client.count_publishers(FLOOR_STATUS_TOPIC) > 0, nodes, floor_server, "published no goal status")
        _warm_up(publisher, goals, nodes, policy_node, points[0])
        _wait_end(goals)
        _reset(reset, goals)
        _warm_up(floor_publisher, floor_goals, nodes, floor_relay, points[0])
        for k, target in enumerate(points[1:]):
            run_to_end = k % RUN_TO_END_EVERY == 0
            for goal_points in ORDER[k % len(ORDER):] + ORDER[:k % len(ORDER)]:
                trial = trials[goal_points]
                if goal_points == FLOOR:  # the floor server ends each goal at once: no reset, only the idle
                    _time_goal(floor_publisher, floor_goals, target, floor_relay, trial)
                    _wait_end(floor_goals)
                    time.sleep(SETTLE)
                    continue
                _set_goal_points(parameters, goal_points)
                if run_to_end:
                    states.start()
                goal = _time_goal(publisher, goals, target, policy_node, trial)
                if run_to_end:
                    _wait_end(goals)
                    trial.paths[k] = states.stop()
                    trial.succeeded += goals.ended[goal] == GoalStatus.STATUS_SUCCEEDED
                _reset(reset, goals)
    finally:
        bench.close()
    return trials


def _set_goal_points(parameters: Client, goal_points: int) -> None:
    request = SetParameters.Request(parameters=[Parameter("goal_points", value=goal_points).to_parameter_msg()])
    result = wait_reply(parameters.call_async(request)).results[0]
    if not result.successful:
        raise RuntimeError(f"the policy node refused goal_points {goal_points}: {result.reason}")


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


def _time_goal(publisher: Publisher, goals: _GoalLog, target: np.ndarray, sender: _Node, trial: _Trials) -> bytes:
    """Publish ``target`` and wait for the new goal it becomes; append to ``trial`` the seconds from publishing to
    the goal's acceptance stamp and to its status seen here; the goal's id."""
    known = goals.seen()
    message = point_msg(target)
    started_wall, started = time.time(), time.perf_counter()
    publisher.publish(message)
    goal = goals.new_goal(known, ACCEPT_TIMEOUT)
    if goal is None:
        raise sender.failure(f"sent no accepted goal for target {target.round(3).tolist()} within {ACCEPT_TIMEOUT} s")
    trial.accepted.append(goals.stamps[goal] - started_wall)
    trial.seen.append(goals.accepted[goal] - started)
    return goal


def _warm_up(publisher: Publisher, goals: _GoalLog, nodes: list[_Node], sender: _Node, target: np.ndarray) -> None:
    """Publish ``target`` until it becomes an accepted goal: the first one may be lost while discovery completes."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        known = goals.seen()
        publisher.publish(point_msg(target))
        if goals.new_goal(known, ACCEPT_TIMEOUT) is not None:
            return
        _check_running(nodes)
        if time.monotonic() > deadline:
            raise sender.failure(f"sent no accepted goal for the first target within {STARTUP_TIMEOUT} s")


def _wait_end(goals: _GoalLog) -> None:
    """Wait for every goal to end."""
    if not goals.idle(TRAJECTORY_TIMEOUT):
        raise TimeoutError(f"a goal still runs {TRAJECTORY_TIMEOUT} s after its acceptance")


def _reset(reset: Client, goals: _GoalLog) -> None:
    """Put the arm at home at rest (aborting a running goal), wait for every goal to end, and let the policy node's
    joint state catch up."""
    reply = wait_reply(reset.call_async(Trigger.Request()))
    if not reply.success:
        raise RuntimeError(f"/arm_node/reset failed: {reply.message}")
    if not goals.idle(TRAJECTORY_TIMEOUT):
        raise TimeoutError(f"a goal did not end within {TRAJECTORY_TIMEOUT} s of /arm_node/reset")
    time.sleep(SETTLE)
