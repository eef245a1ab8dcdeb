"""One way to run independent pieces of work: an ordered map on local processes or on a Ray cluster.

A :class:`Workers` maps a picklable function over a list of work items and returns the results in the items'
order, whatever the order in which they finish, so that a run's numbers depend on the items (which the caller
splits by ids: robots, families, tasks, conditions), never on the number of workers or nodes. :func:`workers` keeps
them up for several maps (a training loop); :func:`ordered_map` is one map. The setting that chooses
where the work runs is :class:`ComputeConfig`, the ``compute`` section of every preset (``--set compute.backend=ray``
on the command line):

- ``local`` (the default): a ``spawn`` process pool of ``workers`` processes on this machine, or this process when
  ``workers`` is 1 (:mod:`.local`); nothing of Ray is imported;
- ``ray``: one Ray task per item on the cluster at ``address``, at most ``workers`` at a time, each retried when its
  worker process or node dies (:mod:`.ray_cluster`).

Either way the caller's process draws one progress bar over the items, Ctrl-C stops the workers, a worker lost for
good ends the map with :class:`WorkerLost` rather than a wait for its work, and files are written by the caller or
atomically (:mod:`mtrl_robot.core.atomic`), so nothing is left half-written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from mtrl_robot.core.config import PROCESSES, setting
from mtrl_robot.core.errors import ConfigError

BACKENDS = ("local", "ray")

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class ComputeConfig:
    """Where and how wide a run computes: this changes the speed, never the result."""

    workers: int = setting(2, "processes on this machine (local), or Ray tasks at a time (ray)",
                           above=0, maximum=PROCESSES)
    threads: int = setting(1, "torch threads per process (more than one slows small models down on a busy "
                              "machine)", above=0, maximum=PROCESSES)
    backend: str = setting("local", "local: processes on this machine | ray: tasks on a Ray cluster",
                           choices=BACKENDS)
    address: str = setting("auto", "the Ray cluster (backend ray): auto (the one started on this machine with "
                                   "`ray start`) or host:port of its head")

    def __post_init__(self) -> None:
        host, colon, port = self.address.rpartition(":")
        if self.address != "auto" and not (colon and host and port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(None, "address", f"expected auto or host:port, got {self.address!r}")


class WorkerLost(OSError):
    """A worker process died before finishing its work (a local one, or a Ray task's beyond its retries)."""


LOCAL = ComputeConfig()  # the default: local processes
IN_THIS_PROCESS = ComputeConfig(workers=1)  # one local worker: the calling process itself


class Workers(Protocol):
    """Workers that stay up between maps (local processes started once, one connection to the cluster)."""

    def map(self, function: Callable[[Item], Result], items: Sequence[Item], *, desc: str, unit: str = "item",
            progress: bool = True, sizes: Sequence[int] | None = None) -> list[Result]:
        """``[function(item) for item in items]`` in the items' order; the bar advances by ``sizes[i]`` (default
        1) when item ``i`` is done. ``function`` must pickle (module level, or a ``functools.partial`` of one)."""
        ...


def check_reachable(compute: ComputeConfig) -> None:
    """Connect now to the Ray cluster ``compute`` names, if any, so that a run that cannot reach it stops before its
    first step, in one line (:class:`~mtrl_robot.distributed.ray_cluster.ClusterUnreachable`)."""
    if compute.backend == "ray":
        from mtrl_robot.distributed.ray_cluster import connect

        connect(compute.address)


@contextlib.contextmanager
def workers(compute: ComputeConfig) -> Iterator[Workers]:
    """The workers ``compute`` describes, for as long as the ``with`` block lasts."""
    if compute.backend == "ray":
        from mtrl_robot.distributed.ray_cluster import RayWorkers

        yield RayWorkers(compute)
        return
    from mtrl_robot.distributed.local import LocalWorkers

    with LocalWorkers(compute.workers) as local:
        yield local


def ordered_map(compute: ComputeConfig, function: Callable[[Item], Result], items: Sequence[Item], *, desc: str,
                unit: str = "item", progress: bool = True, sizes: Sequence[int] | None = None) -> list[Result]:
    """One :meth:`Workers.map` on the workers ``compute`` describes."""
    with workers(compute) as running:
        return running.map(function, items, desc=desc, unit=unit, progress=progress, sizes=sizes)


def sizes_of(items: Sequence, sizes: Sequence[int] | None) -> list[int]:
    """The progress each item is worth (1 each by default), one per item."""
    sizes = [1] * len(items) if sizes is None else list(sizes)
    if len(sizes) != len(items):
        raise ValueError(f"{len(sizes)} sizes for {len(items)} items")
    return sizes
