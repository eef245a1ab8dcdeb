"""Fixtures shared by test modules of every folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtrl_robot.learning.puck.train import train_puck


@pytest.fixture(scope="session")
def small_puck_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A puck meta-RL run of the ``small`` preset, trained once per session for the modules that read it (a module
    may add a file of its own, e.g. a history policy; none changes what training wrote)."""
    return train_puck("small", tmp_path_factory.mktemp("small_puck_run"), progress=False)
