"""torch's intra-op thread count for one piece of work, restored after it.

torch starts one intra-op thread per core in every process. Small models only lose time to handing work between
threads, and worker processes side by side, each with a thread per core, fight over the cores; work of that kind
runs inside :func:`torch_threads` with the count it needs (a preset's ``compute.threads`` in workers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from functools import partial
from typing import TypeVar

import torch

Result = TypeVar("Result")


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Inside, torch uses ``count`` intra-op threads (``None``: as many as before); after, as many as before."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def in_torch_threads(function: Callable[..., Result], count: int | None) -> Callable[..., Result]:
    """``function`` run inside :func:`torch_threads` with ``count``: a job for workers (it pickles if ``function``
    does)."""
    return partial(_call, function, count)


def _call(function: Callable[..., Result], count: int | None, *args, **kwargs) -> Result:
    with torch_threads(count):
        return function(*args, **kwargs)
