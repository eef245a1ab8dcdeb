"""A test-side rclpy node spun by a background thread of its own, for the ROS and hardware-in-the-loop tests."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TypeVar

import rclpy
from rclpy.action import ActionClient
from rclpy.client import Client
from rclpy.executors import SingleThreadedExecutor
from rclpy.publisher import Publisher
from rclpy.subscription import Subscription
from rclpy.task import Future

from mtrl_robot.ros.futures import wait_for

T = TypeVar("T")
Entity = Subscription | Publisher | Client | ActionClient
REPLY_TIMEOUT = 10.0  # s for a service or action reply


class RosClient:
    """An rclpy node spun in a background thread, with helpers to wait for replies."""

    def __init__(self, name: str = "arm_node_test_client") -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._closed = threading.Event()
        self._chores: queue.Queue[tuple[Callable[[], object], Future]] = queue.Queue()  # run between waits
        self._wake = self.node.create_guard_condition(lambda: None)  # ends the executor's current wait
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._spinner.start()

    def _spin(self) -> None:
        while not self._closed.is_set():
            self.executor.spin_once(timeout_sec=0.05)
            while not self._chores.empty():
                chore, done = self._chores.get()
                try:
                    done.set_result(chore())
                except Exception as exc:  # noqa: BLE001 - handed to the waiting caller
                    done.set_exception(exc)

    def between_waits(self, chore: Callable[[], T]) -> T:
        """Run ``chore`` on the spinning thread while the executor is not waiting: rclpy entities must not be
        built or destroyed while an executor iterates over them."""
        if threading.current_thread() is self._spinner:  # from a callback: the executor is not waiting now
            return chore()
        done = Future()
        self._chores.put((chore, done))
        self._wake.trigger()
        assert wait_for(done, REPLY_TIMEOUT), "the client's executor did not come round to a chore"
        return done.result()

    def action_client(self, action_type: type, name: str) -> ActionClient:
        return self.between_waits(lambda: ActionClient(self.node, action_type, name))

    def destroy(self, entity: Entity) -> None:
        """Destroy one of the client's entities."""
        self.between_waits(lambda: self._destroy_now(entity))

    def _destroy_now(self, entity: Entity) -> None:
        if isinstance(entity, ActionClient):
            entity.destroy()
        elif isinstance(entity, Subscription):
            self.node.destroy_subscription(entity)
        elif isinstance(entity, Publisher):
            self.node.destroy_publisher(entity)
        else:
            self.node.destroy_client(entity)

    def wait(self, future: Future, timeout: float = REPLY_TIMEOUT):
        assert wait_for(future, timeout), f"no reply within {timeout} s"
        return future.result()

    def close(self) -> None:
        self._closed.set()
        self._spinner.join(timeout=5.0)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
