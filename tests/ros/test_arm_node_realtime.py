"""The arm node's physics thread: real-time scheduling (SCHED_FIFO at ``thread_priority``) as ros2_control's
controller manager asks for, or normal scheduling with ``thread_priority:=0``."""

from __future__ import annotations

import os
from pathlib import Path


def fifo_priorities(pid: int) -> list[int]:
    """The SCHED_FIFO priorities of the threads of process ``pid``."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        tid = int(task.name)
        if os.sched_getscheduler(tid) == os.SCHED_FIFO:
            found.append(os.sched_getparam(tid).sched_priority)
    return found


def test_the_physics_thread_runs_at_the_fifo_priority_asked_for_or_says_why_not(launcher):
    node, _ = launcher.start("/realtime", thread_priority=30)
    priorities = fifo_priorities(node.process.pid)
    if not priorities:  # a machine refusing SCHED_FIFO: the node says so and runs on
        assert "physics thread at normal priority: SCHED_FIFO 30 refused" in node.output(), node.output()
    else:
        assert priorities == [30]


def test_thread_priority_zero_keeps_normal_scheduling(launcher):
    node, _ = launcher.start("/normal", thread_priority=0)
    assert fifo_priorities(node.process.pid) == []
    assert "SCHED_FIFO" not in node.output()
