"""The one robot interface on a real arm: a ROS 2 client of the vendor driver's joint trajectory controller.

:class:`HardwareBackend` reaches the arm only through a :class:`~mtrl_robot.hardware.presets.HardwarePreset`'s
joint-state topic and its controller's ``FollowJointTrajectory`` action (or, with ``use_topic``, its
``JointTrajectory`` topic). Callers use the family model's joint names; the preset's ``joint_map`` renames them.

- **Joint states.** Messages lacking any of the arm's joints (a gripper's, say) are ignored; extra joints are
  dropped. :meth:`~HardwareBackend.read_state` waits up to ``state_timeout`` s for the first message. A message
  with a NaN or infinite position of the arm is never used: it counts as stale joint states at once (a running
  trajectory fails and the arm is stopped, nothing is sent, no hold) until a finite one arrives.
- **Safety.** Every trajectory goes through :meth:`SafetyChecker.check <mtrl_robot.hardware.safety.SafetyChecker.check>`
  against the latest measured state; a refusal raises ``SafetyError`` and nothing is sent. Nothing is sent on
  stale joint states either (:class:`HardwareError`). The one command sent unchecked is a hold at the measured
  position (see stop).
- **Goals** ask for :data:`~mtrl_robot.backends.trajectory.GOAL_TOLERANCE` at the end within
  :data:`~mtrl_robot.backends.trajectory.SETTLE_TIME` (ros2_control checks no end position by default). The
  result's error code and string are in :class:`ExecutionResult`'s message with the peak tracking error the
  controller's feedback reported. On the topic, success is judged from joint states by the same tolerance.
- **The topic.** Nothing is published on it before this client's publisher has matched every subscription to it
  that the ROS graph shows, the controller's (that of the node serving the action) among them: a message published
  earlier never reaches the controller, and a match with another subscriber (a recorder, a monitor) says nothing of
  the controller's. Not within ``SERVER_TIMEOUT`` s: :class:`HardwareError` naming the topic and its subscribers.
- **A goal the controller does not answer** within ``REPLY_TIMEOUT`` s fails with :class:`HardwareError`; should
  the controller accept it later, it is never reported as running: it is canceled and, as by stop, the arm is
  held (the hold on the topic preempts the goal at once, even where the cancel request is slow to arrive).
- **Stop** (:meth:`~HardwareBackend.stop`, or the ``~/stop`` ``std_srvs/Trigger`` service on the client's node):
  cancel the active goal and, where the controller has a trajectory topic and joint states are fresh and finite,
  publish a hold at the measured position (which also stops motion commanded by anyone else).
- **Watchdog.** While a trajectory runs, joint states going stale (:class:`~mtrl_robot.hardware.safety.Watchdog`, the
  preset's ``watchdog_timeout``) or the action server vanishing fails the execution and stops the arm.
- **Disable** (:meth:`~HardwareBackend.disable`, what a managed node does when it leaves ``active``): every later
  trajectory is refused with :class:`HardwareError` and a running one is stopped as by stop, until
  :meth:`~HardwareBackend.enable`. A trajectory being sent when it is called is sent first, then stopped.
- **Dry run** (the preset's ``dry_run`` unless overridden): trajectories are checked and logged with
  :meth:`SafetyChecker.describe <mtrl_robot.hardware.safety.SafetyChecker.describe>`; nothing is sent, stop included.

Every wait is bounded: ``wait(None)`` gives up (and stops the arm) ``RESULT_GRACE`` s after the trajectory
should have settled. The backend spins its own node in a background thread unless given one, which the caller
must then spin in another thread.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, partial

import numpy as np
import rclpy
from action_msgs.msg import GoalStatus
from control_msgs.action import FollowJointTrajectory
from control_msgs.msg import JointTolerance
from rclpy.action import ActionClient, get_action_server_names_and_types_by_node
from rclpy.action.client import ClientGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.exceptions import InvalidHandle
from rclpy.executors import ExternalShutdownException
from rclpy.experimental import EventsExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future
from sensor_msgs.msg import JointState as JointStateMsg
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.families import load_family
from mtrl_robot.backends.interface import ExecutionResult, RobotBackend
from mtrl_robot.backends.trajectory import (
    GOAL_TOLERANCE,
    SETTLE_TIME,
    GoalTolerance,
    JointLimits,
    JointState,
    JointTrajectory,
)
from mtrl_robot.hardware.presets import HardwarePreset, load_preset
from mtrl_robot.hardware.safety import SafetyChecker, SafetyError, Watchdog
from mtrl_robot.ros.conversions import joint_state_from_msg, to_duration, trajectory_to_msg
from mtrl_robot.ros.futures import wait_for

FJT = FollowJointTrajectory
STATE_TIMEOUT = 10.0  # s to wait for the first joint state
SERVER_TIMEOUT = 5.0  # s to wait for the controller's action server
REPLY_TIMEOUT = 5.0  # s for the controller to accept or reject a goal
RESULT_GRACE = 5.0  # s after a trajectory's end plus SETTLE_TIME that wait(None) waits for the result
HOLD_TIME = 0.1  # s, time_from_start of the hold point (at rest) published by stop
CHECKS_PER_TIMEOUT = 4  # watchdog checks per watchdog_timeout
MATCH_POLL = 0.01  # s between looks for the controller's subscription to the trajectory topic
ERROR_CODES = {getattr(FJT.Result, name): name for name in ("SUCCESSFUL", "INVALID_GOAL", "INVALID_JOINTS",
                                                             "OLD_HEADER_TIMESTAMP", "PATH_TOLERANCE_VIOLATED",
                                                             "GOAL_TOLERANCE_VIOLATED")}


class HardwareError(RuntimeError):
    """The arm cannot be reached or did not answer: no or stale joint states, no action server, a rejected goal."""


def to_hardware_names(trajectory: JointTrajectory, model_to_hardware: Mapping[str, str]) -> JointTrajectory:
    """``trajectory`` with model joint names replaced by hardware ones; columns stay, unknown names stay as given."""
    names = tuple(model_to_hardware.get(n, n) for n in trajectory.joint_names)
    return JointTrajectory(names, trajectory.times, trajectory.positions, trajectory.velocities)


def goal_msg(trajectory: JointTrajectory) -> FJT.Goal:
    """A goal for ``trajectory`` (hardware names) asking for GOAL_TOLERANCE at its end within SETTLE_TIME."""
    return FJT.Goal(trajectory=trajectory_to_msg(trajectory),
                    goal_tolerance=_goal_tolerances(tuple(trajectory.joint_names)),
                    goal_time_tolerance=to_duration(SETTLE_TIME))


@cache
def _goal_tolerances(names: tuple[str, ...]) -> tuple[JointTolerance, ...]:
    """The goal tolerance entries for joints ``names``, built once: every goal to the same joints repeats them."""
    return tuple(JointTolerance(name=n, position=GOAL_TOLERANCE) for n in names)


def _close_at_exit(reference: weakref.ref[HardwareBackend]) -> None:
    backend = reference()
    if backend is not None:
        backend.close()


@dataclass(eq=False)
class _Execution:
    """One trajectory handed to the controller; arrays in the preset's joint order."""

    final: np.ndarray  # commanded final positions
    duration: float  # s
    started: float = field(default_factory=time.monotonic)
    handle: ClientGoalHandle | None = None
    peak_error: np.ndarray | None = None  # largest |desired − actual| position the controller reported
    result: ExecutionResult | None = None
    done: threading.Event = field(default_factory=threading.Event)


class HardwareBackend(RobotBackend):
    """A real arm (or anything that looks like one through ROS) behind a joint trajectory controller."""

    def __init__(self, preset: HardwarePreset | str, *, dry_run: bool | None = None, use_topic: bool = False,
                 node: Node | None = None, node_name: str = "hardware_client", arm: Arm | None = None,
                 state_timeout: float = STATE_TIMEOUT):
        self.preset = p = load_preset(preset) if isinstance(preset, str) else preset
        if use_topic and p.trajectory_topic is None:
            raise ValueError(f"preset '{p.name}' has no trajectory topic; use the action")
        arm = arm if arm is not None else load_family(p.family)
        if set(arm.joint_names) != set(p.model_names):
            raise ValueError(f"preset '{p.name}' drives the joints {list(p.model_names)}, but robot {arm.robot_id} "
                             f"has {list(arm.joint_names)}")
        self.checker = SafetyChecker(p.safety_limits(arm))
        self.dry_run = p.dry_run if dry_run is None else dry_run
        self.use_topic = use_topic
        self.state_timeout = state_timeout
        effort = {j.name: j.effort for j in arm.joints}
        self._limits = JointLimits(p.model_names, p.lower, p.upper, p.velocity,
                                   np.array([effort[n] for n in p.model_names]))
        self._to_hardware = p.model_to_hardware
        self._watchdog = Watchdog(p.watchdog_timeout)
        self._lock = threading.Lock()  # guards _state, _watchdog, _current and executions' results
        self._state: JointState | None = None  # latest finite message with all the arm's joints, hardware names
        self._non_finite: str | None = None  # what was wrong with the latest message, if it was not finite
        self._first_state = threading.Event()
        self._current: _Execution | None = None
        self._closed = threading.Event()
        self._sending = threading.Lock()  # one trajectory sent at a time; disable() waits for one being sent
        self._refusal: str | None = None  # why sending is disabled; None: enabled
        self._other_joints: tuple[str, ...] | None = None  # names of the latest joint state lacking the arm's

        self._context = None if node is not None else rclpy.Context()
        if self._context is not None:
            # not the process's ROS arguments: a node's `-r __node:=NAME` would rename this client's node too
            rclpy.init(args=[], context=self._context, signal_handler_options=SignalHandlerOptions.NO)
            node = rclpy.create_node(node_name, context=self._context)
            self._executor = EventsExecutor(context=self._context)  # callbacks never block: one thread, no wait sets
            self._executor.add_node(node)
        self.node = node
        group = ReentrantCallbackGroup()  # for a caller's multi-threaded executor; the callbacks take locks
        self._subscription = node.create_subscription(JointStateMsg, p.joint_states_topic, self._on_joint_state,
                                                      qos_profile_sensor_data, callback_group=group)
        self._action = ActionClient(node, FJT, p.action, callback_group=group)
        # No matched-event callback: under the EventsExecutor, destroying a publisher that has one can crash the
        # process (ros2/rclpy#1644). Each send asks the graph instead (_controller_subscribed).
        self._publisher = node.create_publisher(JointTrajectoryMsg, p.trajectory_topic, 10) \
            if p.trajectory_topic else None
        self._service = node.create_service(Trigger, "~/stop", self._on_stop, callback_group=group)
        self._threads = [threading.Thread(target=self._monitor, daemon=True)]
        if self._context is not None:
            self._threads.append(threading.Thread(target=self._spin, daemon=True))
        for thread in self._threads:
            thread.start()
        self._at_exit = partial(_close_at_exit, weakref.ref(self))  # a spinning thread must not outlive the interpreter
        atexit.register(self._at_exit)
        mode = "DRY RUN, nothing will be sent" if self.dry_run else f"commands to {self._target}"
        node.get_logger().info(f"hardware client for preset '{p.name}' ({p.driver}): {mode}; joint states from "
                               f"{p.joint_states_topic}, watchdog {p.watchdog_timeout} s")

    @property
    def _target(self) -> str:
        return self.preset.trajectory_topic if self.use_topic else self.preset.action

    # ----------------------------------------------------------------------------------------- interface

    @property
    def limits(self) -> JointLimits:
        return self._limits

    def wait_ready(self, timeout: float = STATE_TIMEOUT) -> None:
        """Raise :class:`HardwareError` unless, within ``timeout`` s, joint states arrive and (unless in dry run)
        the controller's action server or trajectory-topic subscriber is found."""
        deadline = time.monotonic() + timeout
        if not self._first_state.wait(timeout):
            raise HardwareError(self._no_state(timeout))
        if not self.dry_run:
            self._connect(max(deadline - time.monotonic(), 0.0))

    def read_state(self) -> JointState:
        """The latest joint state, model names; waits up to ``state_timeout`` s for the first one."""
        return self.preset.to_model(self._measured(fresh=False))

    def send_trajectory(self, trajectory: JointTrajectory) -> None:
        """Check ``trajectory`` (model names) and start it; ``SafetyError`` or ``HardwareError`` send nothing."""
        with self._sending:
            if self._refusal is not None:
                raise HardwareError(f"nothing sent: {self._refusal}")
            self._send(trajectory)

    def _send(self, trajectory: JointTrajectory) -> None:
        measured = self._measured(fresh=True)
        try:
            checked = self.checker.check(to_hardware_names(trajectory, self._to_hardware), measured)
        except SafetyError as exc:
            self.node.get_logger().error(f"trajectory refused: {exc}")
            raise
        execution = _Execution(checked.positions[-1], checked.duration)
        if self.dry_run:
            self.node.get_logger().info(f"dry run, not sent to {self._target}:\n{self.checker.describe(checked)}")
            self._replace(execution)
            self._finish(execution, True, "dry run: nothing was sent")
        elif self.use_topic:
            self._connect(SERVER_TIMEOUT)
            self._replace(execution)
            self._publisher.publish(trajectory_to_msg(checked))
        else:
            execution.handle = self._send_goal(checked, execution)
            self._replace(execution)
            execution.handle.get_result_async().add_done_callback(partial(self._on_result, execution))

    def is_executing(self) -> bool:
        with self._lock:
            return self._current is not None and self._current.result is None

    def wait(self, timeout: float | None = None) -> ExecutionResult:
        """The current trajectory's result; after ``timeout`` s a failure saying it still runs (it is not stopped).

        With ``timeout=None``, a controller that has not reported ``RESULT_GRACE`` s after the trajectory
        should have settled is given up on: the execution fails and the arm is stopped.
        """
        execution = self._current
        if execution is None:
            return ExecutionResult(True, "no trajectory to wait for", np.zeros(len(self.joint_names)), 0.0)
        elapsed = time.monotonic() - execution.started
        budget = execution.duration + SETTLE_TIME + RESULT_GRACE - elapsed if timeout is None else timeout
        if not execution.done.wait(max(budget, 0.0)):
            if timeout is not None:
                return ExecutionResult(False, f"timeout after {timeout} s, trajectory still executing",
                                       self._error(execution), time.monotonic() - execution.started)
            self._abandon(execution, f"no result from {self._target} within {SETTLE_TIME + RESULT_GRACE:.1f} s "
                                     f"after the trajectory's end; stopping the arm")
        return execution.result

    def stop(self) -> None:
        """Abandon the current trajectory and hold the measured position."""
        self._stop("stop() called")

    def disable(self, reason: str) -> str:
        """Refuse every later trajectory (``HardwareError`` naming ``reason``) and stop a running one as
        :meth:`stop` does; what was done."""
        with self._sending:  # a trajectory being sent is sent first, so that it is the one stopped
            self._refusal = reason
        return self._stop(reason) if self.is_executing() else "no trajectory was running"

    def enable(self) -> None:
        """Send trajectories again after :meth:`disable`."""
        with self._sending:
            self._refusal = None

    def close(self) -> None:
        """Stop a running trajectory, then release the node's entities (and the node, if the backend made it)."""
        if self._closed.is_set():
            return
        atexit.unregister(self._at_exit)
        if self.is_executing():
            self._stop("the hardware client is closing")
        self._closed.set()
        for thread in self._threads:
            thread.join(timeout=5.0)
        if self._context is None:
            self._action.destroy()
            self.node.destroy_subscription(self._subscription)
            self.node.destroy_service(self._service)
            if self._publisher is not None:
                self.node.destroy_publisher(self._publisher)
            return
        self._executor.shutdown(timeout_sec=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self._context)

    def __enter__(self) -> HardwareBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def tracking_error(self) -> np.ndarray:
        """Peak |desired − actual| (rad) per joint the controller reported for the latest trajectory; NaN if none."""
        execution = self._current
        if execution is None or execution.peak_error is None:
            return np.full(len(self.joint_names), np.nan)
        return execution.peak_error.copy()

    # ------------------------------------------------------------------------------------------ internals

    def _measured(self, fresh: bool) -> JointState:
        """The latest hardware joint state; with ``fresh``, refused when the watchdog says it is stale."""
        if self._closed.is_set():
            raise HardwareError("the hardware client is closed")
        if not self._first_state.wait(self.state_timeout):
            raise HardwareError(self._no_state(self.state_timeout))
        with self._lock:
            state, age, stale, non_finite = self._state, self._watchdog.age(), self._watchdog.stale(), self._non_finite
        if fresh and non_finite:
            raise HardwareError(f"joint states on {self.preset.joint_states_topic} are not finite ({non_finite}); "
                                "nothing sent")
        if fresh and stale:
            raise HardwareError(f"joint states on {self.preset.joint_states_topic} are stale: none fresh for "
                                f"{age:.2f} s (watchdog timeout {self.preset.watchdog_timeout} s); nothing sent")
        return state

    def _no_state(self, timeout: float) -> str:
        with self._lock:
            non_finite = self._non_finite
        if non_finite:
            return (f"no finite joint state on {self.preset.joint_states_topic} within {timeout} s "
                    f"(the latest: {non_finite}): check the driver")
        if self._other_joints is not None:
            missing = [n for n in self.preset.joint_names if n not in self._other_joints]
            return (f"joint states on {self.preset.joint_states_topic} name {list(self._other_joints)}, without "
                    f"{missing} of preset '{self.preset.name}': is this the preset of the arm that is running?")
        return (f"no joint state with joints {list(self.preset.joint_names)} on {self.preset.joint_states_topic} "
                f"within {timeout} s: is the driver running, in this ROS_DOMAIN_ID?")

    def _connect(self, timeout: float) -> None:
        """Wait for the action server, or for the controller's subscription to the trajectory topic to be matched."""
        if not self.use_topic:  # asked once first: wait_for_server asks twice even when the server is there
            if not self._action.server_is_ready() and not self._action.wait_for_server(timeout_sec=timeout):
                raise HardwareError(f"no action server {self.preset.action} within {timeout:.1f} s")
            return
        deadline = time.monotonic() + timeout
        while True:
            matched, subscribers = self._controller_subscribed()
            if matched:
                return
            if time.monotonic() >= deadline:
                found = f"subscribers: {', '.join(subscribers)}" if subscribers else "no subscriber"
                raise HardwareError(f"the controller serving {self.preset.action} does not subscribe to "
                                    f"{self.preset.trajectory_topic} within {timeout:.1f} s ({found})")
            self._closed.wait(MATCH_POLL)

    def _controller_subscribed(self) -> tuple[bool, list[str]]:
        """Whether this client's publisher has matched every subscription to the trajectory topic the graph shows,
        one of them by the node serving the action; and the subscribing nodes' names.

        A message published before its subscription is matched never reaches it, and a match with some other
        subscriber (a recorder, a monitor) says nothing of the controller's: counting all of them does.
        """
        subscriptions = self.node.get_subscriptions_info_by_topic(self.preset.trajectory_topic)
        nodes = {(s.node_name, s.node_namespace) for s in subscriptions}
        matched = any(self._serves_action(*node) for node in nodes) \
            and self._publisher.get_subscription_count() >= len(subscriptions)
        return matched, sorted(f"{namespace.rstrip('/')}/{name}" if namespace.startswith("/")
                               else "a node not yet named" for name, namespace in nodes)

    def _serves_action(self, name: str, namespace: str) -> bool:
        """Whether node ``name`` in ``namespace`` serves the preset's action (False while the graph does not know
        the node yet, or no longer)."""
        if not namespace.startswith("/"):  # an endpoint seen before its node's name
            return False
        try:
            served = get_action_server_names_and_types_by_node(self.node, name, namespace)
        except _rclpy.RCLError:  # the node left the graph meanwhile
            return False
        return any(action == self.preset.action for action, _ in served)

    def _send_goal(self, checked: JointTrajectory, execution: _Execution) -> ClientGoalHandle:
        action = self.preset.action
        self._connect(SERVER_TIMEOUT)
        future = self._action.send_goal_async(goal_msg(checked), feedback_callback=partial(self._on_feedback,
                                                                                           execution))
        if not wait_for(future, REPLY_TIMEOUT):
            # Given up on, the goal must never run: should it be accepted later, it is canceled and the arm held at
            # once. No cancel is sent before: a request sent to a frozen controller can be lost and resent only
            # seconds after it resumes, and the action's later cancel requests queue behind it.
            future.add_done_callback(self._cancel_late_goal)
            raise HardwareError(f"{action} did not answer the goal within {REPLY_TIMEOUT} s; should it accept the "
                                "goal later, the goal is canceled and the arm held")
        handle = future.result()
        if handle is None or not handle.accepted:
            raise HardwareError(f"{action} rejected the goal (a ros2_control controller rejects invalid goals "
                                "without a reason; see the driver's log)")
        return handle

    def _cancel_late_goal(self, future: Future) -> None:
        """A goal accepted after send_trajectory gave up on it must not run: cancel it and hold the arm."""
        handle = future.result()
        if handle is not None and handle.accepted:
            self.node.get_logger().error(f"{self.preset.action} accepted a goal after the client had given up on "
                                         f"it: {self._halt(handle)}")

    def _replace(self, execution: _Execution) -> None:
        with self._lock:
            previous, self._current = self._current, execution
        if previous is not None:
            self._finish(previous, False, "preempted by a newer trajectory")

    def _error(self, execution: _Execution) -> np.ndarray:
        with self._lock:
            state = self._state
        return self.preset.to_model(state).positions - execution.final

    def _finish(self, execution: _Execution, success: bool, message: str) -> None:
        """Record the outcome of ``execution`` unless it already has one."""
        error = self._error(execution)
        with self._lock:
            if execution.result is not None:
                return
            peak = execution.peak_error
            if peak is not None:
                j = int(np.argmax(peak))
                message += f"; peak tracking error {peak[j]:.4f} rad ({self.joint_names[j]})"
            execution.result = ExecutionResult(success, message, error, time.monotonic() - execution.started)
        execution.done.set()

    def _abandon(self, execution: _Execution, reason: str) -> None:
        """Fail ``execution`` for ``reason`` and stop the arm."""
        self._finish(execution, False, reason)
        self.node.get_logger().error(f"{reason}: {self._halt(execution.handle)}")

    def _stop(self, reason: str) -> str:
        if self.dry_run:
            return "dry run: nothing was sent, so nothing to stop"
        with self._lock:
            execution = self._current if self._current is not None and self._current.result is None else None
        if execution is not None:
            self._finish(execution, False, f"stopped: {reason}")
        report = self._halt(execution.handle if execution is not None else None)
        self.node.get_logger().warning(f"stop ({reason}): {report}")
        return report

    def _halt(self, handle: ClientGoalHandle | None) -> str:
        """Cancel ``handle``'s goal and, if the controller has a topic and the state is fresh, hold position."""
        done = []
        if handle is not None:
            handle.cancel_goal_async()
            done.append("goal cancel requested")
        if self._publisher is not None:
            with self._lock:
                state, stale, non_finite = self._state, self._watchdog.stale(), self._non_finite
            if non_finite:
                done.append(f"no hold sent: the latest joint state is not finite ({non_finite})")
            elif state is not None and not stale:
                positions = self.preset.to_model(state).positions[None, :]
                hold = JointTrajectory(self.preset.joint_names, np.array([HOLD_TIME]), positions,
                                       np.zeros_like(positions))  # at rest: a cubic, not a velocity step
                self._publisher.publish(trajectory_to_msg(hold))
                done.append(f"hold at the measured position sent to {self.preset.trajectory_topic}")
            else:
                done.append("no hold sent: no fresh joint state")
        return "; ".join(done)

    # ------------------------------------------------------------------------------------------ callbacks

    def _on_joint_state(self, msg: JointStateMsg) -> None:
        try:
            state = joint_state_from_msg(msg)
        except ValueError as exc:
            self.node.get_logger().warning(f"ignoring a malformed joint state: {exc}", throttle_duration_sec=5.0)
            return
        if not set(self.preset.joint_names) <= set(state.names):
            self._other_joints = tuple(state.names)
            return
        positions = self.preset.to_model(state).positions
        if not np.all(np.isfinite(positions)):
            j = int(np.argmax(~np.isfinite(positions)))
            self._on_non_finite(f"{self.preset.joint_names[j]} position {positions[j]}")
            return
        with self._lock:
            self._state, self._non_finite = state, None
            self._watchdog.feed(state.stamp)
        self._first_state.set()

    def _on_non_finite(self, problem: str) -> None:
        """A joint state with a NaN or infinite position: stale at once; a running trajectory fails, the arm stops."""
        with self._lock:
            self._non_finite = problem
            execution = self._current if self._current is not None and self._current.result is None else None
        if execution is not None:
            self._abandon(execution, f"joint state on {self.preset.joint_states_topic} is not finite ({problem}); "
                                     "stopping the arm")
        else:
            self.node.get_logger().error(f"joint state on {self.preset.joint_states_topic} is not finite ({problem})",
                                         throttle_duration_sec=5.0)

    def _on_feedback(self, execution: _Execution, msg: FJT.Impl.FeedbackMessage) -> None:
        feedback = msg.feedback
        index = {n: j for j, n in enumerate(feedback.joint_names)}
        if not set(self.preset.joint_names) <= set(index) or len(feedback.error.positions) != len(index):
            return
        error = np.abs([feedback.error.positions[index[n]] for n in self.preset.joint_names])
        with self._lock:
            peak = execution.peak_error
            execution.peak_error = error if peak is None else np.maximum(peak, error)

    def _on_result(self, execution: _Execution, future: Future) -> None:
        response = future.result()
        if response is None:
            self._finish(execution, False, f"{self.preset.action} gave no result")
            return
        code, text = response.result.error_code, response.result.error_string
        success = response.status == GoalStatus.STATUS_SUCCEEDED and code == FJT.Result.SUCCESSFUL
        self._finish(execution, success, f"controller: {ERROR_CODES.get(code, 'error')} ({code}): {text}")

    def _on_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = True, self._stop("stop service called")
        return response

    # ---------------------------------------------------------------------------------------- threads

    def _spin(self) -> None:
        while not self._closed.is_set():
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except (InvalidHandle, ExternalShutdownException):  # an entity destroyed while being waited on
                pass

    def _monitor(self) -> None:
        """While a trajectory runs: the watchdog, the action server's presence, and the topic's outcome."""
        period = self.preset.watchdog_timeout / CHECKS_PER_TIMEOUT
        while not self._closed.wait(period):
            with self._lock:
                execution = self._current if self._current is not None and self._current.result is None else None
                stale, age = self._watchdog.stale(), self._watchdog.age()
            if execution is None:
                continue
            if stale:
                self._abandon(execution, f"joint states on {self.preset.joint_states_topic} went stale: none fresh "
                                         f"for {age:.2f} s (watchdog timeout {self.preset.watchdog_timeout} s); "
                                         "stopping the arm")
            elif execution.handle is not None and not self._action.server_is_ready():
                self._abandon(execution, f"the action server {self.preset.action} disappeared; stopping the arm")
            elif self.use_topic:
                self._judge(execution)

    def _judge(self, execution: _Execution) -> None:
        """A topic trajectory's outcome from joint states: settled at its end as every backend judges it."""
        late = time.monotonic() - execution.started - execution.duration
        if late < 0:
            return
        verdict = GoalTolerance.default(len(self.joint_names)).verdict(self.joint_names, late,
                                                                       self._error(execution))
        if verdict is not None:
            success, message = verdict
            self._finish(execution, success, f"{message} (judged from joint states)")
