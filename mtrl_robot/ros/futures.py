"""Waiting without stopping the process: for an rclpy future that another thread's executor completes, and for a
published message's acknowledgement."""

from __future__ import annotations

import threading
import time

from rclpy.duration import Duration
from rclpy.publisher import Publisher
from rclpy.task import Future

ACK_POLL = 0.002  # s between asking whether a message has been acknowledged


def wait_for(future: Future, timeout: float) -> bool:
    """Block until ``future`` is done (True) or ``timeout`` s pass (False); an executor must be spinning elsewhere."""
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    return done.wait(timeout)


def wait_acknowledged(publisher: Publisher, timeout: float) -> bool:
    """Block until every matched reliable subscription has acknowledged what ``publisher`` sent (True) or ``timeout``
    s pass (False).

    rclpy's ``wait_for_all_acked`` holds the interpreter lock while it waits, and an acknowledgement can take the
    middleware's heartbeat period: one long call would stop every other thread of the process, its executor's
    callbacks too. It is asked without waiting instead, between pauses that release the lock.
    """
    deadline, pause = time.monotonic() + timeout, threading.Event()
    while not publisher.wait_for_all_acked(Duration(seconds=0)):
        if time.monotonic() >= deadline:
            return False
        pause.wait(ACK_POLL)
    return True
