"""The ROS side of ``mtrl-robot teach``: the few-shot adaptation launch's nodes, one request at a time.

Each request of :mod:`mtrl_robot.motions.teaching` becomes what a person would otherwise do from a second shell:

- :class:`~mtrl_robot.motions.teaching.StartEpisode`: the target on ``/demo_target`` (``geometry_msgs/PointStamped``,
  frame ``world``; acknowledged by the recorder before anything else), then ``/demo_recorder/start_episode``.
- :class:`~mtrl_robot.motions.teaching.StopEpisode`: ``/demo_recorder/stop_episode``.
- :class:`~mtrl_robot.motions.teaching.Adapt`: ``/adaptation_node/adapt``.
- :class:`~mtrl_robot.motions.teaching.Reach`: the target on ``/target``; the answer is the flange point the policy
  node shows on ``/policy_node/markers`` once the trajectory for this target has ended, or the line it logs on
  ``/rosout`` when it does not execute the target. A policy node that is not active (a managed node: with a real
  arm's preset it waits inactive) is named with its state before anything is sent.
- :class:`~mtrl_robot.motions.teaching.Activate`: the policy node's lifecycle transitions up to active.
- :class:`~mtrl_robot.motions.teaching.Suggest`: ``/adaptation_node/suggest``, where to demonstrate next; an
  adaptation node without it is not waited for (the reply says it is not available).

Requests run on a worker thread and the node is spun on another, so the screen stays responsive; a missing node or
service is named in the reply.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future as Pending
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import rclpy
from geometry_msgs.msg import PointStamped
from lifecycle_msgs.srv import GetState
from rcl_interfaces.msg import Log
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.signals import SignalHandlerOptions
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from mtrl_robot.arms.chain import Arm
from mtrl_robot.motions.teaching import Activate, Adapt, Reach, Reply, Request, StartEpisode, StopEpisode, Suggest
from mtrl_robot.ros.conversions import point_msg
from mtrl_robot.ros.futures import wait_acknowledged, wait_for
from mtrl_robot.ros.lifecycle import change_state
from mtrl_robot.ros.markers import REACHED_ID, TARGET_ID
from mtrl_robot.ros.robot_description import LATCHED_QOS

DEMO_TARGET_TOPIC = "/demo_target"
TARGET_TOPIC = "/target"
JOINT_STATES_TOPIC = "/joint_states"
MARKERS_TOPIC = "/policy_node/markers"
POLICY_NODE = "policy_node"
SERVICES = {  # request type: (node, service)
    StartEpisode: ("demo_recorder", "/demo_recorder/start_episode"),
    StopEpisode: ("demo_recorder", "/demo_recorder/stop_episode"),
    Adapt: ("adaptation_node", "/adaptation_node/adapt"),
    Suggest: ("adaptation_node", "/adaptation_node/suggest"),
}
OPTIONAL = {Suggest}  # services the procedure does without
REPLY_TIMEOUT = 10.0  # s for the recorder to answer
ADAPT_TIMEOUT = 600.0  # s for an adaptation (converting the bags, the gradient steps, the policy node's reload)
REACH_TIMEOUT = 120.0  # s from sending a test target to the end of its trajectory
ACK_TIMEOUT = 5.0  # s for a published target to be acknowledged by its subscribers
ROSOUT_QOS = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL)  # as /rosout is published


@dataclass(frozen=True)
class Missing:
    """Something the procedure needs that is not there yet: the node that should offer it, and what it is."""

    node: str
    what: str

    def __str__(self) -> str:
        return f"{self.node}: {self.what}"


class TeachClient:
    """An rclpy node in a context of its own that carries out the teaching procedure's requests."""

    def __init__(self, arm: Arm) -> None:
        self.arm = arm
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context, signal_handler_options=SignalHandlerOptions.NO)  # Ctrl-C: caller
        self.node = rclpy.create_node("teach", context=self.context)
        self.services = {kind: self.node.create_client(Trigger, name) for kind, (_, name) in SERVICES.items()}
        self.demo_targets = self.node.create_publisher(PointStamped, DEMO_TARGET_TOPIC, 10)
        self.targets = self.node.create_publisher(PointStamped, TARGET_TOPIC, 10)
        self.policy_state = self.node.create_client(GetState, f"/{POLICY_NODE}/get_state")
        self._watch: tuple[np.ndarray, Pending] | None = None  # the test target awaited, and its outcome
        self._lock = threading.Lock()
        self.node.create_subscription(MarkerArray, MARKERS_TOPIC, self._on_markers, LATCHED_QOS)
        self.node.create_subscription(Log, "/rosout", self._on_log, ROSOUT_QOS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()
        self._worker = ThreadPoolExecutor(max_workers=1)

    def missing(self) -> list[Missing]:
        """What the procedure needs that is not there now (empty once every node is up)."""
        found = [Missing(node, f"no service {name}") for kind, (node, name) in SERVICES.items()
                 if kind not in OPTIONAL and not self.services[kind].service_is_ready()]
        if not self.node.count_publishers(JOINT_STATES_TOPIC):
            found.append(Missing("arm", f"nothing publishes {JOINT_STATES_TOPIC} (start the arm's driver, or "
                                        "sim:=true)"))
        for node, topic in (("demo_recorder", DEMO_TARGET_TOPIC), (POLICY_NODE, TARGET_TOPIC)):
            if not any(info.node_name == node for info in self.node.get_subscriptions_info_by_topic(topic)):
                found.append(Missing(node, f"not subscribed to {topic}"))
        return found

    def submit(self, request: Request) -> Pending:
        """Carry out ``request`` on the worker thread; the future's result is its :class:`Reply`."""
        return self._worker.submit(self._carry_out, request)

    def _carry_out(self, request: Request) -> Reply:
        if isinstance(request, Reach):
            return self._reach(request)
        if isinstance(request, Activate):
            return self._activate(request)
        if isinstance(request, StartEpisode):
            self.demo_targets.publish(point_msg(request.target))
            if not wait_acknowledged(self.demo_targets, ACK_TIMEOUT):
                return Reply(request, False, f"demo_recorder: the target on {DEMO_TARGET_TOPIC} was not acknowledged "
                                             f"within {ACK_TIMEOUT:.0f} s")
        return self._call(request, ADAPT_TIMEOUT if isinstance(request, (Adapt, Suggest)) else REPLY_TIMEOUT)

    def _call(self, request: Request, timeout: float) -> Reply:
        node, name = SERVICES[type(request)]
        client = self.services[type(request)]
        if not client.service_is_ready():
            return Reply(request, False, f"{node}: service {name} is not available (is {node} running?)")
        future = client.call_async(Trigger.Request())
        if not wait_for(future, timeout):
            client.remove_pending_request(future)
            return Reply(request, False, f"{node}: no reply from {name} within {timeout:.0f} s")
        reply = future.result()
        return Reply(request, reply.success, reply.message)

    def _policy_node_state(self) -> str | None:
        """The policy node's lifecycle state (``active``, ``inactive``, …); None when it does not answer."""
        if not self.policy_state.service_is_ready():
            return None
        future = self.policy_state.call_async(GetState.Request())
        if not wait_for(future, REPLY_TIMEOUT):
            self.policy_state.remove_pending_request(future)
            return None
        return future.result().current_state.label

    def _activate(self, request: Activate) -> Reply:
        state = self._policy_node_state()
        if state is None:
            return Reply(request, False, f"no answer from /{POLICY_NODE}/get_state (is {POLICY_NODE} running?)")
        try:
            if state == "unconfigured":
                change_state(f"/{POLICY_NODE}", "configure", REPLY_TIMEOUT)
            if state != "active":
                state = change_state(f"/{POLICY_NODE}", "activate", REPLY_TIMEOUT)
        except RuntimeError as exc:
            return Reply(request, False, str(exc))
        return Reply(request, state == "active", state)

    def _reach(self, request: Reach) -> Reply:
        if not self.targets.get_subscription_count():
            return Reply(request, False, f"{POLICY_NODE}: nothing subscribes to {TARGET_TOPIC} (is {POLICY_NODE} "
                                         "running?)")
        state = self._policy_node_state()
        if state not in (None, "active"):
            return Reply(request, False, f"{POLICY_NODE} is {state}, so it sends nothing: press p to activate it "
                                         "(a real arm then moves)")
        outcome: Pending = Pending()
        with self._lock:
            self._watch = (request.target, outcome)
        try:
            self.targets.publish(point_msg(request.target))
            try:
                reached, message = outcome.result(REACH_TIMEOUT)
            except TimeoutError:
                return Reply(request, False, f"{POLICY_NODE}: no reached point on {MARKERS_TOPIC} within "
                                             f"{REACH_TIMEOUT:.0f} s")
        finally:
            with self._lock:
                self._watch = None
        return Reply(request, reached is not None, message, reached)

    def _on_markers(self, msg: MarkerArray) -> None:
        by_id = {m.id: m for m in msg.markers}
        if TARGET_ID not in by_id or REACHED_ID not in by_id or by_id[REACHED_ID].action != Marker.ADD:
            return
        base = self.arm.base_transform()

        def world(point) -> np.ndarray:
            return base[:3, :3] @ np.array([point.x, point.y, point.z]) + base[:3, 3]

        self._settle(world(by_id[TARGET_ID].pose.position), (world(by_id[REACHED_ID].pose.position), ""))

    def _on_log(self, msg: Log) -> None:
        if msg.name == POLICY_NODE and msg.level >= Log.ERROR:
            with self._lock:
                watched = self._watch
            if watched is not None and (str(watched[0].round(3).tolist()) in msg.msg or "no model" in msg.msg):
                self._settle(watched[0], (None, f"{POLICY_NODE}: {msg.msg}"))

    def _settle(self, target: np.ndarray, outcome: tuple[np.ndarray | None, str]) -> None:
        """Complete the awaited test target's outcome, if ``target`` is the one awaited."""
        with self._lock:
            if self._watch is not None and np.allclose(self._watch[0], target, rtol=0.0, atol=1e-9):
                watched, self._watch = self._watch[1], None
                watched.set_result(outcome)

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
        self.executor.shutdown()
        self._spinner.join(timeout=5.0)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
