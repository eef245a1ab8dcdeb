"""Waiting for an rclpy future that another thread's executor completes."""

from __future__ import annotations

import threading

from rclpy.task import Future


def wait_for(future: Future, timeout: float) -> bool:
    """Block until ``future`` is done (True) or ``timeout`` s pass (False); an executor must be spinning elsewhere."""
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    return done.wait(timeout)
