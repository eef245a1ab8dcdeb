"""The arm node's threads: real-time scheduling (SCHED_FIFO at ``thread_priority`` for physics, as ros2_control's
controller manager asks for; at ``executor_priority`` for the executor and the middleware), or normal scheduling
with 0."""

from __future__ import annotations

import os
from pathlib import Path


def fifo_priorities(pid: int) -> dict[str, list[int]]:
    """The SCHED_FIFO priorities of the threads of process ``pid`` by thread name."""
    found: dict[str, list[int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        tid = int(task.name)
        if os.sched_getscheduler(tid) == os.SCHED_FIFO:
            found.setdefault((task / "comm").read_text().strip(), []).append(os.sched_getparam(tid).sched_priority)
    return found


def test_the_physics_thread_runs_at_the_fifo_priority_asked_for_or_says_why_not(launcher):
    node, _ = launcher.start("/realtime", thread_priority=30, executor_priority=0)
    priorities = fifo_priorities(node.process.pid)
    if not priorities:  # a machine refusing SCHED_FIFO: the node says so and runs on
        assert "physics thread at normal priority: SCHED_FIFO 30 refused" in node.output(), node.output()
    else:
        assert list(priorities.values()) == [[30]]


def test_the_executor_and_the_middleware_run_at_the_executor_priority(launcher):
    node, _ = launcher.start("/executor", thread_priority=0, executor_priority=20)
    pid = node.process.pid
    priorities = fifo_priorities(pid)
    if not priorities:  # a machine refusing SCHED_FIFO: the node says so and runs on
        assert "ROS callbacks at normal priority: SCHED_FIFO 20 refused" in node.output(), node.output()
        return
    assert {p for values in priorities.values() for p in values} == {20}, priorities
    assert any(name.startswith("dds.") for name in priorities), priorities
    assert os.sched_getscheduler(pid) == os.SCHED_FIFO, "the executor's thread (the main one) is not real-time"


def test_thread_priority_zero_keeps_normal_scheduling(launcher):
    node, _ = launcher.start("/normal", thread_priority=0, executor_priority=0)
    assert fifo_priorities(node.process.pid) == {}
    assert "SCHED_FIFO" not in node.output()
