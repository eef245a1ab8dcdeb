"""Local workers (:class:`~mtrl_robot.distributed.compute.Workers`): a ``spawn`` process pool, or this process.

``spawn`` is safe on every platform and with threads in the parent; as with any ``spawn`` pool, a script that
maps with more than one worker must do so under ``if __name__ == "__main__":``. Workers leave SIGINT to the
parent, which ends the pool (its SIGTERM unwinds what a worker was writing, :mod:`mtrl_robot.core.interrupt`),
and their progress bars are drawn by the parent, one line per worker (:class:`~mtrl_robot.core.progress.BarRelay`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any

from mtrl_robot.core.interrupt import exiting_on_sigterm, leave_sigint_to_parent
from mtrl_robot.core.progress import BarRelay, progress_bar, relay_bars_to
from mtrl_robot.distributed.compute import sizes_of


class LocalWorkers:
    """This process for one worker; else a pool of ``workers`` processes, started by the first map that needs it
    (with as many processes as it has items, up to ``workers``) and ended with the ``with`` block."""

    def __init__(self, workers: int):
        self.workers = workers
        self._stack = contextlib.ExitStack()
        self._pool: Any = None

    def __enter__(self) -> LocalWorkers:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self._pool is not None and exc_type is None:  # done: the workers exit on their own, bars sent in full
            self._pool.close()
            self._pool.join()
        self._stack.close()  # terminates the pool (SIGTERM) if it is still running, then stops drawing its bars

    def map(self, function: Callable, items: Sequence, *, desc: str, unit: str = "item", progress: bool = True,
            sizes: Sequence[int] | None = None) -> list:
        sizes = sizes_of(items, sizes)
        results = []
        with progress_bar(total=sum(sizes), desc=desc, unit=unit, disable=not progress) as bar:
            if self.workers == 1 or (self._pool is None and len(items) == 1):
                for item, size in zip(items, sizes, strict=True):
                    results.append(function(item))
                    bar.update(size)
                return results
            if self._pool is None:
                bars = self._stack.enter_context(BarRelay())
                self._pool = self._stack.enter_context(multiprocessing.get_context("spawn").Pool(
                    min(self.workers, len(items)), _init_worker, (bars.queue,)))
            for result, size in zip(self._pool.imap(_Quiet(function), items), sizes, strict=True):
                results.append(result)
                bar.update(size)
        return results


class _Quiet:
    """``function`` in a pool worker: ended by the pool's SIGTERM, it discards what it was writing and ends quietly."""

    def __init__(self, function: Callable):
        self.function = function

    def __call__(self, item: Any) -> Any:
        with exiting_on_sigterm():
            return self.function(item)


def _init_worker(bars: Any) -> None:
    """A worker leaves SIGINT to the parent and sends its progress bars to the parent's :class:`BarRelay`."""
    leave_sigint_to_parent()
    relay_bars_to(bars)
