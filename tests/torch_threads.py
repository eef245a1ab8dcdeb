"""One intra-op torch thread for a test module: on a small, busy machine it is faster and steadier than two.

A module uses it with ``from torch_threads import one_thread  # noqa: F401`` (an autouse fixture)."""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
