"""Atomic file writes: readers see the old file or the complete new one, never half a file.

The content goes to a temporary file ``.<name>.*.tmp`` in the target's folder, is flushed to disk, made readable
by everyone (0o644: written files are meant to be shared, while ``mkstemp`` makes them private), optionally
checked, and then renamed over the target. On any error the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


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
