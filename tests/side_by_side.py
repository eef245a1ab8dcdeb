"""Independent commands side by side: each in a subprocess of its own, as many at a time as there are cores."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def side_by_side(function: Callable[[Item], Result], items: Iterable[Item]) -> list[Result]:
    """``function`` of each item, in the items' order, run from up to one thread per core at a time (``function``
    runs a subprocess and waits for it, so the subprocesses share the cores)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(function, items))
