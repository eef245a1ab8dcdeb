"""Managed (lifecycle) nodes that move an arm, and the standard service call that changes a node's state.

A :class:`ManagedArmNode` reaches the arm only through a :class:`~mtrl_robot.ros.hardware_backend.HardwareBackend`,
and sends to it only while ``active``:

- ``configure``: the node loads what it acts with and makes its hardware client (:meth:`ManagedArmNode.load`);
  then the controller is checked: joint states naming the preset's joints and (unless in dry run) the action
  server, within ``controller_timeout`` s. A failure is one error line, and the node stays ``unconfigured``.
- ``activate``: sending is enabled.
- ``deactivate``: a running trajectory is stopped (its goal canceled, the position held) and nothing more is sent.
- ``cleanup`` and ``shutdown`` (also when the process ends): the client is closed and what was loaded released.

At start-up the node takes itself towards ``start_state``: up to ``active`` on the simulated arm, never beyond
``inactive`` with a real arm's preset (:func:`~mtrl_robot.hardware.activation.start_state`). Transitions are asked
for through the node's standard ``~/change_state`` service (``lifecycle_msgs/srv/ChangeState``), as ``ros2
lifecycle set`` does; :func:`change_state` is that call for ``mtrl-robot ros activate NODE`` and its siblings.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from mtrl_robot.hardware.activation import START_STATES, start_state
from mtrl_robot.ros.hardware_backend import HardwareBackend
from mtrl_robot.ros.parameters import OneOf, Range, declare_parameters
from mtrl_robot.ros.run import freeze_heap

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
TRANSITIONS = ("configure", "activate", "deactivate", "cleanup", "shutdown")  # labels of ~/change_state
LIFECYCLE_PARAMETERS = {  # name: (default, description, Range or OneOf)
    "start_state": ("active", "Lifecycle state the node takes itself to when it starts: active, inactive (configured, "
                              "sending nothing) or unconfigured; with a real arm's preset it stops at inactive until "
                              "a person activates it", OneOf(START_STATES)),
    "controller_timeout": (30.0, "s that configure waits for the controller's joint states and action server",
                           Range(0.1, 600.0)),
}


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type's name if it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


class ManagedArmNode(LifecycleNode):
    """A lifecycle node that sends trajectories to an arm only while active; subclasses :meth:`load` what they act
    with and send through ``self.backend``."""

    def __init__(self, name: str, parameters: Mapping[str, tuple]):
        """``parameters``: the node's parameter table, ``LIFECYCLE_PARAMETERS`` included."""
        super().__init__(name)
        self.backend: HardwareBackend | None = None
        self._active = threading.Event()
        try:
            self.p = declare_parameters(self, parameters)
        except Exception:  # a bad value stops the node; destroyed here, before the subclass has set itself up
            LifecycleNode.destroy_node(self)
            raise

    # ------------------------------------------------------------------------------------ for subclasses

    def load(self) -> HardwareBackend:
        """Load what the node acts with (a model, a policy) and return its hardware client; raise to refuse."""
        raise NotImplementedError

    def unload(self) -> None:
        """Drop what :meth:`load` loaded."""

    @property
    def active(self) -> bool:
        return self._active.is_set()

    @property
    def how_to_activate(self) -> str:
        return f"mtrl-robot ros activate {self.get_fully_qualified_name()}"

    # --------------------------------------------------------------------------------------- transitions

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.backend = self.load()
            self.backend.disable(f"{self.get_name()} is not active")
            self.backend.wait_ready(self.p["controller_timeout"])
        except Exception as exc:  # noqa: BLE001 - rclpy would turn it into a failed transition without a word
            self.get_logger().error(f"configure failed: {one_line(exc)}; {self.get_name()} stays unconfigured")
            self._release()
            return FAILURE
        freeze_heap()  # what configure loaded (the model) joins the start-up heap
        preset = self.backend.preset
        self.get_logger().info(f"configured for preset '{preset.name}' ({preset.driver}); inactive: nothing is sent "
                               "until activated")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.backend.enable()
        self._active.set()
        self.get_logger().info(f"active: sending trajectories to {self.backend.preset.action}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active.clear()
        report = self.backend.disable(f"{self.get_name()} is not active")
        self.get_logger().info(f"inactive: nothing more is sent; {report}")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("unconfigured: hardware client closed")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"a transition from {state.label} failed; releasing everything: "
                                f"{self.get_name()} is unconfigured")
        self._release()
        return SUCCESS

    def _release(self) -> None:
        """Nothing more sent; a running trajectory stopped; the client closed and what was loaded dropped."""
        self._active.clear()
        backend, self.backend = self.backend, None
        if backend is not None:
            backend.close()
        self.unload()

    # ------------------------------------------------------------------------------------------ start-up

    def bring_up(self) -> None:
        """Take the node to ``start_state``, but no further than ``inactive`` with a real arm's preset."""
        requested = self.p["start_state"]
        if requested == "unconfigured":
            self.get_logger().info(f"unconfigured, as start_state asks: configure with "
                                   f"`mtrl-robot ros configure {self.get_fully_qualified_name()}`")
            return
        if self.trigger_configure() != SUCCESS:
            return
        preset = self.backend.preset
        if start_state(requested, preset) == "active":
            self.trigger_activate()
        elif requested == "active":
            self.get_logger().warning(f"preset '{preset.name}' is a real arm's: {self.get_name()} stays inactive until "
                                      f"a person activates it (`{self.how_to_activate}`)")
        else:
            self.get_logger().info(f"inactive, as start_state asks: `{self.how_to_activate}` to send")

    def destroy_node(self) -> None:
        """Shut down first when configured: the arm stopped if moving, the client closed."""
        if self.backend is not None:
            self.trigger_shutdown()
        super().destroy_node()


def change_state(node: str, transition: str | None, timeout: float = 60.0) -> str:
    """Ask the managed node ``node`` for ``transition`` (one of ``TRANSITIONS``; None: none) through its
    ``~/change_state`` service; return the state it is in afterwards. ``RuntimeError`` if it is not found, does
    not answer within ``timeout`` s or refuses the transition."""
    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    client = rclpy.create_node(f"lifecycle_client_{os.getpid()}", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(client)

    def call(service_type: type, service: str, request: object):
        name = f"{node.rstrip('/')}/{service}"
        caller = client.create_client(service_type, name)
        if not caller.wait_for_service(timeout_sec=timeout):
            raise RuntimeError(f"no service {name} within {timeout:g} s: is {node} running (a managed node), in "
                               "this ROS_DOMAIN_ID?")
        future = caller.call_async(request)
        executor.spin_until_future_complete(future, timeout_sec=timeout)
        if not future.done():
            raise RuntimeError(f"{name} did not answer within {timeout:g} s")
        return future.result()

    try:
        if transition is not None:
            reply = call(ChangeState, "change_state", ChangeState.Request(transition=Transition(label=transition)))
            if not reply.success:
                now = call(GetState, "get_state", GetState.Request()).current_state.label
                raise RuntimeError(f"{node} refused or failed to {transition}; it is {now} (its log says why)")
        return call(GetState, "get_state", GetState.Request()).current_state.label
    finally:
        executor.shutdown()
        client.destroy_node()
        rclpy.try_shutdown(context=context)
