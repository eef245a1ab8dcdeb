"""SIGINT and SIGTERM as exceptions, so that a file being written atomically is discarded, not left half-done.

A signal's default action ends a process at once: a temporary file of :func:`~mtrl_robot.core.atomic.write_atomic`
stays behind, never renamed. :func:`raise_on_signals` makes both signals raise :class:`Interrupted` in the main
thread instead, which unwinds through ``write_atomic`` (removing its temporary file) to whoever reports it; worker
processes call :func:`exit_on_signals` to unwind the same way and end quietly, without a traceback.
"""

from __future__ import annotations

import signal
import sys
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


def exit_on_signals() -> None:
    """From now on, SIGINT and SIGTERM end this (worker) process with ``SystemExit``, unwinding quietly."""
    for signum in SIGNALS:
        signal.signal(signum, _exit)


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _exit(signum: int, frame: FrameType | None) -> None:
    sys.exit(128 + signum)
