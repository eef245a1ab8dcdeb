"""Workers on a Ray cluster (:class:`~mtrl_robot.distributed.compute.Workers`): one Ray task per work item.

The run connects, as a driver, to a cluster someone started (``ray start --head`` on one machine, ``ray start
--address <head>`` on the others; every node runs the same version of this package). At most ``workers`` tasks are
in flight, spread over the nodes; each asks for one CPU and is retried up to :data:`RETRIES` times when its worker
process or node dies, while an exception raised by the work itself ends the run with that exception. Results are
put back in the items' order. Ray is imported only here, so a local run never loads it.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mtrl_robot.core.interrupt import signals_noted
from mtrl_robot.core.progress import progress_bar
from mtrl_robot.distributed.compute import ComputeConfig, WorkerLost, sizes_of

RETRIES = 3  # re-runs of a task whose worker process or node died
CONNECT_TIMEOUT = 10.0  # s: the longest wait for the cluster's head to answer
SIGNAL_CHECK = 0.2  # s: how often a wait for tasks acts on a signal (Ctrl-C) that came meanwhile
UNWIND_TIMEOUT = 10.0  # s: the longest wait, when interrupted, for cancelled tasks to discard what they wrote


class ClusterUnreachable(ConnectionError):
    """No Ray cluster answers at the configured address."""

    def __init__(self, address: str, problem: str):
        self.address = address
        super().__init__(f"compute.address {address}: cannot reach a Ray cluster there ({problem})")


def connect(address: str) -> Any:
    """The ``ray`` module, connected as a driver to the cluster at ``address`` (``auto`` or ``host:port``) unless
    this process is connected already; :class:`ClusterUnreachable` after at most :data:`CONNECT_TIMEOUT` seconds."""
    import ray

    if ray.is_initialized():
        return ray
    head = _head(ray, address)
    host, _, port = head.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except (OSError, ValueError) as exc:
        raise ClusterUnreachable(address, str(exc) if address == head else f"{head}: {exc}") from None
    try:
        ray.init(address=head, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterUnreachable(address, str(exc).splitlines()[0]) from None
    return ray


def _head(ray: Any, address: str) -> str:
    """``host:port`` of the head: ``address`` itself, or for ``auto`` the cluster Ray records on this machine."""
    if address != "auto":
        return address
    from ray._private.services import canonicalize_bootstrap_address_or_die

    try:
        return canonicalize_bootstrap_address_or_die("auto")
    except ConnectionError:
        raise ClusterUnreachable(address, "no cluster started on this machine; start one with `ray start --head` "
                                          "or give host:port") from None


def _work_item(function: Callable, item: Any) -> tuple[Any, str]:
    """One task: the item's result and the id of the node it ran on."""
    import ray

    return function(item), ray.get_runtime_context().get_node_id()


class RayWorkers:
    """Ray tasks on the cluster at ``compute.address``, at most ``compute.workers`` in flight."""

    def __init__(self, compute: ComputeConfig):
        self.ray = connect(compute.address)
        self.workers = compute.workers
        # SPREAD: the items go round the nodes rather than queueing where the driver is, however short each one is
        self.task = self.ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=False,
                                    scheduling_strategy="SPREAD")(_work_item)

    def map(self, function: Callable, items: Sequence, *, desc: str, unit: str = "item", progress: bool = True,
            sizes: Sequence[int] | None = None) -> list:
        """Interrupted (Ctrl-C), it cancels the tasks still running, which unwinds what they were writing."""
        ray, sizes = self.ray, sizes_of(items, sizes)
        shared = ray.put(function)  # sent to the cluster once, not with every item
        results: list[Any] = [None] * len(items)
        nodes: set[str] = set()
        pending: dict[Any, int] = {}
        queued = iter(range(len(items)))
        with progress_bar(total=sum(sizes), desc=desc, unit=unit, disable=not progress) as bar, \
                signals_noted() as act_on_signal:
            try:
                for index in queued:
                    pending[self.task.remote(shared, items[index])] = index
                    if len(pending) == self.workers:
                        break
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1, timeout=SIGNAL_CHECK)
                    act_on_signal()
                    if not done:
                        continue
                    index = pending.pop(done[0])
                    results[index], node = _get(ray, done[0], desc)
                    nodes.add(node)
                    bar.update(sizes[index])
                    for index in queued:
                        pending[self.task.remote(shared, items[index])] = index
                        break
            except BaseException:
                for ref in pending:
                    ray.cancel(ref)  # KeyboardInterrupt in the task: its atomic writes remove their temporaries
                if pending:
                    ray.wait(list(pending), num_returns=len(pending), timeout=UNWIND_TIMEOUT)
                raise
        if progress:
            print(f"{desc}: {len(items)} Ray tasks on {len(nodes)} node(s)", file=sys.stderr)
        return results


def _get(ray: Any, ref: Any, desc: str) -> Any:
    """The task's value; an exception raised by the work is raised here as itself (not wrapped by Ray), a task lost
    beyond its retries as :class:`WorkerLost`."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, Exception):
            raise cause from None
        raise
    except ray.exceptions.RayError as exc:
        raise WorkerLost(f"{desc}: a Ray task was lost {RETRIES + 1} times ({str(exc).splitlines()[0]})") from None
