"""SIGINT and SIGTERM as exceptions, so that a file being written atomically is discarded, not left half-done.

A signal's default action ends a process at once: a temporary file of :func:`~mtrl_robot.core.atomic.write_atomic`
stays behind, never renamed. :func:`raise_on_signals` makes both signals raise :class:`Interrupted` in the main
thread instead, which unwinds through ``write_atomic`` (removing its temporary file) to whoever reports it.

A pool worker leaves SIGINT (Ctrl-C reaches the whole process group) to its parent, which ends the pool
(:func:`leave_sigint_to_parent`), and a job that writes files runs :func:`exiting_on_sigterm`, so that the SIGTERM
of a pool being ended unwinds it the same way and the worker ends quietly, without a traceback.

Code being unwound may replace the exception a signal raised: ``torch.save``'s zip writer, closed mid-record, raises
a ``RuntimeError`` of its own. :func:`signals_prevail` ends a block with the signal's exception all the same, so that
an interrupted command reports the interrupt, and an ended pool worker exits rather than waiting for its next job.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The process received SIGINT or SIGTERM; ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {self.name}")


def raise_on_signals() -> None:
    """From now on, SIGINT and SIGTERM raise :class:`Interrupted` in the main thread."""
    for signum in SIGNALS:
        signal.signal(signum, _raise)


def leave_sigint_to_parent() -> None:
    """In a pool worker (its initializer): ignore SIGINT; the parent, which receives it too, ends the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def exiting_on_sigterm() -> Iterator[None]:
    """While inside, SIGTERM raises ``SystemExit``, which unwinds what the job writes and ends a pool worker quietly,
    whatever the job made of it (:func:`signals_prevail`); outside (e.g. while an idle worker exits), it keeps its
    default action."""
    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        with signals_prevail():
            yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_prevail() -> Iterator[None]:
    """A block that this module's signal handlers raised into ends with the first exception they raised, even if
    the code inside replaced that exception with another or swallowed it."""
    before = len(_raised)
    try:
        yield
    finally:
        if len(_raised) > before:
            raise _raised[before]


@contextlib.contextmanager
def signals_noted() -> Iterator[Callable[[], None]]:
    """While inside, SIGINT and SIGTERM are only noted, and the callable it gives acts on a noted one as the handler
    before would have (e.g. raise :class:`Interrupted`): for waits in compiled code that a handler must not raise
    into. Outside the main thread, where no handler runs, the callable does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    noted: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: noted.append(signum)) for signum in SIGNALS}

    def act() -> None:
        if noted:
            signum = noted[0]
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            else:  # the default action (or none): as if it came now
                signal.signal(signum, handler)
                os.kill(os.getpid(), signum)

    try:
        yield act
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


_raised: list[BaseException] = []  # what the handlers below raised, in order


def _raise(signum: int, frame: FrameType | None) -> None:
    _raised.append(Interrupted(signum))
    raise _raised[-1]


def _exit(signum: int, frame: FrameType | None) -> None:
    _raised.append(SystemExit(128 + signum))
    raise _raised[-1]
