"""Where the package's data folders (sim/, config/, launch/) live: in the source tree or installed."""

from __future__ import annotations

import sys
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def data_dir(name: str) -> Path:
    """``sim``, ``config`` or ``launch``: beside the package in a checkout, else under share/mtrl_robot."""
    candidates = [_SOURCE_ROOT / name, Path(sys.prefix) / "share" / "mtrl_robot" / name]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"data folder '{name}' not found in {', '.join(map(str, candidates))}")
