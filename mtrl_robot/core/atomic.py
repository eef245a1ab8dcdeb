"""Atomic file writes: readers see the old file or the complete new one, never half a file.

The content goes to a temporary file ``.<name>.*.tmp`` (:data:`TEMPORARY`) in the target's folder, is flushed to
disk, made readable by everyone (0o644: written files are meant to be shared, while ``mkstemp`` makes them
private), optionally checked, and then renamed over the target. On any error (and on SIGINT/SIGTERM, see
:mod:`mtrl_robot.core.interrupt`) the temporary file is removed and the target is untouched; only a process killed
outright leaves it behind, which :func:`remove_temporaries` clears up, and which work run inside
:func:`discarding_temporaries` clears up when it is interrupted.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

TEMPORARY = ".*.*.tmp"  # the name pattern of write_atomic's temporary files


def write_atomic(path: str | Path, content: str | bytes | Callable[[BinaryIO], object], *,
                 verify: Callable[[Path], object] | None = None) -> Path:
    """Write text (UTF-8), bytes or what ``content(file)`` writes to ``path``, ``verify(tmp)`` it, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:  # at once: an interrupt (Ctrl-C, a cancelled Ray task) must find the temporary file covered
        tmp = Path(name)
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o644)
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
    return path


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files that interrupted atomic writes left in ``folder`` and below; returns them."""
    folder = Path(folder)
    stale = sorted(p for p in folder.rglob(TEMPORARY) if p.is_file()) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def discarding_temporaries(folder: str | Path) -> Iterator[None]:
    """Work that writes into ``folder`` runs inside; when it ends by an exception (e.g. Ctrl-C), by which time the
    workers it started have ended or been cancelled, the temporary files any of them left are removed."""
    try:
        yield
    except BaseException:
        remove_temporaries(folder)
        raise
