"""Atomic file writes: readers see the old file or the complete new one, never half a file.

The content goes to a temporary file ``.<name>.*.tmp`` (:data:`TEMPORARY`) in the target's folder, is flushed to
disk, made readable by everyone (0o644: written files are meant to be shared, while ``mkstemp`` makes them
private), optionally checked, and then renamed over the target. On any error (and on SIGINT/SIGTERM, see
:mod:`mtrl_robot.core.interrupt`) the temporary file is removed and the target is untouched; only a process killed
outright leaves it behind, which :func:`remove_temporaries` clears up.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMPORARY = ".*.*.tmp"  # the name pattern of write_atomic's temporary files


def write_atomic(path: str | Path, content: str | bytes | Callable[[BinaryIO], object], *,
                 verify: Callable[[Path], object] | None = None) -> Path:
    """Write text (UTF-8), bytes or what ``content(file)`` writes to ``path``, ``verify(tmp)`` it, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
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
        tmp.unlink(missing_ok=True)
        raise
    return path


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files that interrupted atomic writes left in ``folder`` and below; returns them."""
    folder = Path(folder)
    stale = sorted(p for p in folder.rglob(TEMPORARY) if p.is_file()) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
