"""Reading torch files safely: tensors and plain containers only, an intact archive, finite numbers.

``torch.load`` reads the zip archive ``torch.save`` writes without checking its CRCs, so bytes overwritten in the
middle of a file load as silently wrong weights. :func:`load_torch_file` checks every member's CRC first, loads
with ``weights_only=True`` (no pickled code runs), then refuses any floating-point tensor with NaN or inf. Every
failure is one :class:`CheckpointError` line naming the file and the problem.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A torch file is missing, unreadable, corrupt, not ours, or does not fit what reads it."""


def load_torch_file(path: str | Path, what: str = "checkpoint") -> Any:
    """The content of a ``torch.save`` file, on the CPU, after checking its archive and that it is all finite."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such {what} file")
    try:
        with zipfile.ZipFile(path) as archive:
            corrupt = archive.testzip()
        if corrupt is not None:
            raise CheckpointError(f"{path}: corrupt {what}: the archive member {corrupt} fails its CRC check")
        content = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as e:  # zipfile and torch raise many types for truncated, corrupt, foreign or unsafe files
        raise CheckpointError(f"{path}: not a readable torch {what} (corrupt, truncated or unsafe): "
                              f"{first_line(e)}") from e
    where = first_non_finite(content)
    if where is not None:
        raise CheckpointError(f"{path}: the {what} holds NaN or inf in {where}")
    return content


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def first_non_finite(content: Any, prefix: str = "") -> str | None:
    """The key path (``a.b.0``) of the first floating-point tensor with NaN or inf in nested containers, or None."""
    if isinstance(content, torch.Tensor):
        if content.is_floating_point() and not bool(torch.isfinite(content).all()):
            return prefix or "the tensor"
        return None
    if isinstance(content, dict):
        items = content.items()
    elif isinstance(content, (list, tuple)):
        items = enumerate(content)
    else:
        return None
    for key, value in items:
        found = first_non_finite(value, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None
