"""Waiting on ROS in tests: for a message, a discovery match or a log line, each with a timeout, never a sleep.

Used by ``tests/ros`` and ``tests/hil``. Callbacks run on whatever thread spins the node; waits block the test's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from rcl_interfaces.msg import Log
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, QoSProfile

from mtrl_robot.ros.conversions import seconds
from mtrl_robot.ros.futures import wait_acknowledged

Message = TypeVar("Message")
TIMEOUT = 10.0  # s, the default wait
ROSOUT_QOS = QoSProfile(depth=1000, durability=DurabilityPolicy.TRANSIENT_LOCAL)  # as /rosout is published


class Messages(Generic[Message]):
    """Every message given to it (use it as a subscription's callback), and waits for one that qualifies."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._changed = threading.Condition()

    def __call__(self, msg: Message) -> None:
        with self._changed:
            self.messages.append(msg)
            self._changed.notify_all()

    def __len__(self) -> int:
        return len(self.messages)

    def latest(self) -> Message:
        return self.messages[-1]

    def wait_for(self, condition: Callable[[Message], bool] = lambda _: True, timeout: float = TIMEOUT,
                 start: int = 0, what: str = "message") -> Message:
        """The first message from index ``start`` on meeting ``condition``; ``AssertionError`` after ``timeout`` s."""
        found: list[Message] = []

        def arrived() -> bool:
            nonlocal start
            for msg in self.messages[start:]:
                if condition(msg):
                    found.append(msg)
                    return True
            start = len(self.messages)
            return False

        with self._changed:
            assert self._changed.wait_for(arrived, timeout), f"no {what} within {timeout} s"
        return found[0]

    def stamped_after(self, moment: float, timeout: float = TIMEOUT) -> Message:
        """The first message whose header stamp (s) is later than ``moment``; messages may come out of order."""
        return self.wait_for(lambda msg: seconds(msg.header.stamp) > moment, timeout,
                             what=f"message stamped after {moment:.3f}")


def matched_publisher(node: Node, msg_type: type, topic: str, timeout: float = TIMEOUT,
                      depth: int = 10) -> Publisher:
    """A publisher on ``topic``, returned once a subscription has matched it (so what it sends next arrives)."""
    matched = threading.Event()

    def on_matched(info) -> None:
        if info.current_count > 0:
            matched.set()

    publisher = node.create_publisher(msg_type, topic, depth,
                                      event_callbacks=PublisherEventCallbacks(matched=on_matched))
    if not matched.wait(timeout) and publisher.get_subscription_count() == 0:
        node.destroy_publisher(publisher)
        raise AssertionError(f"nothing subscribed to {topic} within {timeout} s")
    return publisher


def publish_acknowledged(publisher: Publisher, msg: object, timeout: float = TIMEOUT) -> None:
    """Publish ``msg`` and wait until every matched (reliable) subscription has acknowledged it: it is then in the
    subscriber's queue, ahead of any request sent after it (rclpy executors take messages before requests). The wait
    leaves the test process's other threads running (:func:`~mtrl_robot.ros.futures.wait_acknowledged`)."""
    publisher.publish(msg)
    assert wait_acknowledged(publisher, timeout), f"{publisher.topic_name}: not acknowledged within {timeout} s"


def rosout(node: Node) -> Messages[Log]:
    """Log messages every node of the domain sends to ``/rosout`` from now on (and the history it keeps)."""
    lines: Messages[Log] = Messages()
    node.create_subscription(Log, "/rosout", lines, ROSOUT_QOS)
    return lines


def logged(lines: Messages[Log], text: str, timeout: float = TIMEOUT, start: int = 0) -> Log:
    """The first log message containing ``text``; ``AssertionError`` naming it after ``timeout`` s."""
    return lines.wait_for(lambda line: text in line.msg, timeout, start, what=f"log line with '{text}'")
