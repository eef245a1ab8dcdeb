"""Progress bars that stay readable when worker processes work side by side.

In a single process :func:`progress_bar` is a plain tqdm bar. Worker processes must not draw on the terminal
themselves: two processes moving the cursor at once garble each other's lines. A pool started inside
:class:`BarRelay`, with :func:`relay_bars_to` as (part of) its initializer, makes every :func:`progress_bar` in its
workers send its state to the parent instead; the parent draws one line per worker process.

Inside :func:`observed_bars`, the bars of this process draw nothing and hand their state to a callback instead (a
ROS node reports training progress that way).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from queue import Empty
from typing import IO, Any, NamedTuple

from tqdm import tqdm

_queue: Any = None  # set in a worker process by relay_bars_to
QUIET = 0.05  # s without a message after which an ended BarRelay stops drawing


class BarState(NamedTuple):
    """What a bar shows: its description, count, total (None if unknown), unit and postfix (e.g. ``loss=1.2e-03``)."""

    description: str
    n: float
    total: float | None
    unit: str
    postfix: str


_observer: Callable[[BarState], None] | None = None  # set inside observed_bars


class _NullStream:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class _RelayedBar(tqdm):
    """A tqdm bar that sends (pid, description, n, total, unit, postfix) to the parent instead of drawing."""

    def __init__(self, *args, **kwargs):
        kwargs["file"] = _NullStream()
        kwargs.pop("position", None)  # the parent gives each worker process its own line
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        state = self.format_dict
        _queue.put((os.getpid(), state["prefix"] or "", state["n"], state["total"], state["unit"],
                    state["postfix"] or ""))
        return True


class _ObservedBar(tqdm):
    """A tqdm bar that hands its state to the observer of :func:`observed_bars` instead of drawing."""

    def __init__(self, *args, **kwargs):
        kwargs["file"] = _NullStream()
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        state = self.format_dict
        if _observer is not None:
            _observer(BarState(state["prefix"] or "", state["n"], state["total"], state["unit"],
                               state["postfix"] or ""))
        return True


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """A tqdm bar (same arguments) that is relayed to the parent when this is a worker of a :class:`BarRelay`, or
    observed inside :func:`observed_bars`."""
    if kwargs.get("disable"):
        return tqdm(iterable, **kwargs)
    if _observer is not None:
        return _ObservedBar(iterable, **kwargs)
    if _queue is None:
        return tqdm(iterable, **kwargs)
    return _RelayedBar(iterable, **kwargs)


@contextmanager
def observed_bars(observer: Callable[[BarState], None]) -> Iterator[None]:
    """While inside, the bars this process makes draw nothing and call ``observer`` with their state on every
    refresh (from the thread that updates them)."""
    global _observer
    previous, _observer = _observer, observer
    try:
        yield
    finally:
        _observer = previous


def relay_bars_to(queue: Any) -> None:
    """Pool initializer: this worker's bars go to ``queue`` (:attr:`BarRelay.queue`); they take a thread lock
    (tqdm's default multiprocessing one leaks a semaphore)."""
    global _queue
    _queue = queue
    tqdm.set_lock(threading.RLock())


class BarRelay:
    """Draws the bars of worker processes in this (the parent) process, one line per worker, while in use."""

    def __init__(self, file: IO[str] | None = None):
        self.queue = multiprocessing.get_context("spawn").Queue()
        self._file = file if file is not None else sys.stderr
        self._bars: dict[int, tqdm] = {}
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._draw, daemon=True)

    def __enter__(self) -> BarRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        # ended by an event, not by a message: a worker killed while sending leaves the queue's write lock taken
        self._ended.set()
        self._thread.join()
        for line in self._bars.values():
            line.close()
        self.queue.close()

    def _draw(self) -> None:
        """Draw what the workers send until ended and nothing more has come for :data:`QUIET` s."""
        while True:
            try:
                message = self.queue.get(timeout=QUIET)
            except Empty:
                if self._ended.is_set():
                    return
                continue
            pid, description, n, total, unit, postfix = message
            line = self._bars.get(pid)
            if line is None:
                line = self._bars[pid] = tqdm(total=total, desc=description, unit=unit, file=self._file,
                                              position=len(self._bars), dynamic_ncols=True)
            elif line.desc != description:  # the worker moved on to its next bar
                line.reset(total=total)
                line.unit = unit
                line.set_description_str(description, refresh=False)
            line.n = n
            line.set_postfix_str(postfix, refresh=False)
            line.refresh()
