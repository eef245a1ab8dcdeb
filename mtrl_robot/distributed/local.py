"""Local workers (:class:`~mtrl_robot.distributed.compute.Workers`): a ``spawn`` process pool, or this process.

``spawn`` is safe on every platform and with threads in the parent; as with any ``spawn`` pool, a script that
maps with more than one worker must do so under ``if __name__ == "__main__":``. The pool is the standard library's
``ProcessPoolExecutor``, which notices a worker that dies (killed by the out-of-memory killer, say): the map then
ends with :class:`~mtrl_robot.distributed.compute.WorkerLost` instead of waiting for the lost work forever. Workers
leave SIGINT to the parent, which ends the pool by sending them SIGTERM (it unwinds what a worker was writing,
:mod:`mtrl_robot.core.interrupt`), and their progress bars are drawn by the parent, one line per worker
(:class:`~mtrl_robot.core.progress.BarRelay`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from mtrl_robot.core.interrupt import exiting_on_sigterm, leave_sigint_to_parent
from mtrl_robot.core.progress import BarRelay, progress_bar, relay_bars_to
from mtrl_robot.distributed.compute import WorkerLost, sizes_of


class LocalWorkers:
    """This process for one worker; else a pool of ``workers`` processes, started by the first map that needs it
    (with as many processes as it has items, up to ``workers``) and ended with the ``with`` block."""

    def __init__(self, workers: int):
        self.workers = workers
        self._stack = contextlib.ExitStack()
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalWorkers:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self._pool is not None:
            if exc_type is not None:  # interrupted or failed: the jobs still running unwind and end their workers
                for worker in list(self._pool._processes.values()):  # Python 3.14: self._pool.terminate_workers()
                    worker.terminate()
            self._pool.shutdown(wait=True, cancel_futures=True)  # when done, the workers exit once their bars are sent
        self._stack.close()  # stops drawing the workers' bars

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
                self._pool = ProcessPoolExecutor(min(self.workers, len(items)),
                                                 mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_init_worker, initargs=(bars.queue,))
            try:
                for result, size in zip(self._pool.map(_Quiet(function), items), sizes, strict=True):
                    results.append(result)
                    bar.update(size)
            except BrokenProcessPool:
                raise WorkerLost(f"{desc}: a worker process died (killed by a signal, or by the out-of-memory "
                                 "killer); its work was not done") from None
        return results


class _Quiet:
    """``function`` in a pool worker: ended by the pool's SIGTERM, it discards what it was writing and its worker
    process ends at once, quietly (the executor would take the ``SystemExit`` for the job's result and wait for the
    next job)."""

    def __init__(self, function: Callable):
        self.function = function

    def __call__(self, item: Any) -> Any:
        try:
            with exiting_on_sigterm():
                return self.function(item)
        except SystemExit as ended:
            os._exit(ended.code if isinstance(ended.code, int) else 1)


def _init_worker(bars: Any) -> None:
    """A worker leaves SIGINT to the parent and sends its progress bars to the parent's :class:`BarRelay`."""
    leave_sigint_to_parent()
    relay_bars_to(bars)
