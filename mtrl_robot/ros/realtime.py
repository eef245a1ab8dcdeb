"""Real-time scheduling (Linux SCHED_FIFO) for a node's threads, as ros2_control's controller manager asks for its
update loop.

A SCHED_FIFO thread runs as soon as it is woken, ahead of every normally scheduled thread, so a message that
arrives while the machine is busy is taken at once. Linux grants it to root and to users allowed a real-time
priority (``ulimit -r``; ``rtprio`` in ``/etc/security/limits.conf``, as the ros2_control and Franka real-time
guides set up); elsewhere the request is refused and the thread keeps normal scheduling.

Nodes on the path from a target to a goal (the arm and policy nodes) run the threads that take ROS messages
and run callbacks at ``executor_priority``: the executor's (and the threads it starts later, which inherit it) and
the middleware's.

A woken thread also waits for its CPU to leave its idle state, and on a virtual machine an idle CPU is handed back
to the host. :func:`cpus_awake` keeps every CPU out of such states for as long as it is held: Linux's CPU latency
request (PM QoS), which stays in force while ``/dev/cpu_dma_latency`` is held open, as cyclictest and tuned's
latency-performance profile set it. It is system-wide and costs power (idle CPUs poll), so it is a machine's
setting, made for a measurement or on a robot's control computer, not a node's.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rclpy.node import Node

from mtrl_robot.ros.parameters import Range

MIDDLEWARE_THREADS = "dds."  # name prefix of the middleware's threads
CPU_LATENCY_DEVICE = Path("/dev/cpu_dma_latency")  # Linux's CPU latency request, in µs as a 32-bit integer
EXECUTOR_PRIORITY = 40  # below the arm node's physics thread (50, as ros2_control's controller manager)
EXECUTOR_PRIORITY_PARAMETER = {  # a node's parameter table entry: name: (default, description, Range)
    "executor_priority": (EXECUTOR_PRIORITY, "SCHED_FIFO priority of the node's threads that take ROS messages and "
                          "run its callbacks (0: normal scheduling; without the permission, a warning and normal "
                          "scheduling)", Range(0, 99)),
}


def fifo_refusal(priority: int, thread: int = 0) -> str | None:
    """Schedule ``thread`` (a thread id; 0: the calling thread) under SCHED_FIFO at ``priority``; why not, if
    refused (None if granted, or if the thread has ended meanwhile)."""
    try:
        os.sched_setscheduler(thread, os.SCHED_FIFO, os.sched_param(priority))
    except ProcessLookupError:
        return None
    except (OSError, AttributeError) as exc:  # AttributeError: a platform without SCHED_FIFO
        return f"SCHED_FIFO {priority} refused ({exc})"
    return None


def messaging_threads() -> list[int]:
    """The ids of this process's threads that take ROS messages: the middleware's (Fast DDS names them ``dds.*``)."""
    found = []
    for task in Path("/proc/self/task").iterdir():
        try:
            if (task / "comm").read_text().startswith(MIDDLEWARE_THREADS):
                found.append(int(task.name))
        except OSError:  # the thread has ended meanwhile
            continue
    return sorted(found)


def executor_fifo_refusal(priority: int) -> str | None:
    """Schedule the calling thread (the executor's; the threads it starts later inherit it) and the middleware's
    under SCHED_FIFO at ``priority`` (0: leave scheduling as it is); why not, if refused. Compute pools (BLAS,
    OpenMP) keep normal scheduling: a worker spinning for work at a real-time priority would hold a core."""
    if priority == 0:
        return None
    try:
        threads = [0, *messaging_threads()]
    except OSError as exc:
        return f"SCHED_FIFO {priority} refused (no list of this process's threads: {exc})"
    for thread in threads:
        refusal = fifo_refusal(priority, thread)
        if refusal is not None:
            return refusal
    return None


def serve_at_priority(node: Node, priority: int) -> None:
    """Run the calling thread (``node``'s executor's) and the middleware's at SCHED_FIFO ``priority`` (the node's
    ``executor_priority``); a warning if refused."""
    refusal = executor_fifo_refusal(priority)
    if refusal is not None:
        node.get_logger().warning(f"ROS callbacks at normal priority: {refusal}; set executor_priority:=0 to "
                                  "silence this")


def normal_scheduling() -> None:
    """Put the calling thread back under normal scheduling (for work that must not take the CPU first)."""
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


@contextmanager
def cpus_awake(device: Path = CPU_LATENCY_DEVICE) -> Iterator[str | None]:
    """While the block runs, ask that no CPU take more than 0 µs to wake (idle CPUs poll instead of sleeping);
    yields why not, if refused (None if in force). The request ends with the block."""
    handle = None
    try:
        handle = os.open(device, os.O_WRONLY)
        os.write(handle, struct.pack("i", 0))
        refusal = None
    except OSError as exc:
        refusal = f"CPU wake-up latency left as it is ({device}: {exc.strerror})"
    try:
        yield refusal
    finally:
        if handle is not None:
            os.close(handle)
