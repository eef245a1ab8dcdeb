"""The puck-hitting baselines beside the meta-policy: system identification and the history-conditioned policy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.torch_files import CheckpointError
from mtrl_robot.learning.puck.evaluate import evaluate_puck
from mtrl_robot.learning.puck.history_policy import (
    HISTORY_FILE,
    HistoryMethod,
    HistoryPolicyConfig,
    load_history_policy,
    train_history_policy,
)
from mtrl_robot.learning.puck.methods import METHODS
from mtrl_robot.learning.puck.system_id import SystemIdConfig, SystemIdMethod, search_ranges, simulator
from mtrl_robot.learning.puck.train import VAE_FILE, load_preset
from mtrl_robot.models.hitting_vae import HittingVAE
from mtrl_robot.randomization import parse_spec
from mtrl_robot.tasks.puck import HitBatch, PuckHittingEnv, condition_task

SMALL_HISTORY = HistoryPolicyConfig(tasks=6, hits_per_task=8, steps=30, batch=4)


@pytest.fixture(scope="module")
def run(small_puck_run):
    return small_puck_run


@pytest.fixture(scope="module")
def tables(run):
    """Two simulated puck tables: the puck being hit, and the one a method simulates on."""
    vae, config = HittingVAE.load(run / VAE_FILE), load_preset("small")
    (puck_env, puck), (sim_env, sim) = simulator(vae, config), simulator(vae, config)
    yield puck, sim
    puck_env.close()
    sim_env.close()


@pytest.fixture(scope="module")
def history_file(run):
    return train_history_policy(run, SMALL_HISTORY, progress=False)


def hits(world, method, condition: str, n: int, seed: int) -> HitBatch:
    """``n`` hits the method proposes (to learn from) on ``world`` with a fixed condition's physics."""
    rng = np.random.default_rng(seed)
    goals = world.goals(n, rng)
    layout = world.layout(condition_task(condition), n, rng)
    return world.strike(layout, goals, method.propose(goals, layout.starts, explore=True))


def test_system_identification_recovers_a_known_friction_and_then_hits_closer(tables):
    puck, sim = tables
    method = SystemIdMethod(sim, SystemIdConfig(grid=5))
    method.begin(0)
    assert method.estimate["puck.friction.slide_x"] == pytest.approx(0.55)  # the middle of [0.15, 0.95]
    observed = hits(puck, method, "iso_low", 8, seed=1)  # μ = 0.2, aimed with the prior's μ = 0.55
    method.learn(observed)
    assert method.estimate["puck.friction.slide_x"] == pytest.approx(0.2, abs=0.05)
    assert method.estimate["puck.friction.slide_y"] == pytest.approx(0.2, abs=0.05)
    again = puck.strike(puck.layout(condition_task("iso_low"), 8, np.random.default_rng(1)), observed.goals,
                        method.propose(observed.goals, observed.starts, explore=False))
    assert again.distances.mean() < observed.distances.mean() / 2


def test_system_identification_is_seeded(tables):
    puck, sim = tables
    estimates = []
    for _ in range(2):
        method = SystemIdMethod(sim, SystemIdConfig(population=4, elites=2, iterations=1, grid=3))
        method.begin(7)
        method.learn(hits(puck, method, "aniso_low_x", 4, seed=2))
        estimates.append(method.estimate)
    assert estimates[0] == estimates[1]


def test_system_identification_closes_its_own_table(run, tables):
    puck, _ = tables
    with METHODS["sysid"](run, puck, load_preset("small")) as method:
        assert isinstance(method.table, PuckHittingEnv) and method.simulator is not puck  # a table of its own
    assert method.table is None
    with pytest.raises(RuntimeError, match="closed"):
        method.propose(puck.goals(1, np.random.default_rng(0)), np.tile(puck.start, (1, 1)), explore=False)


def test_system_identification_settings_and_spec_are_checked(tables):
    _, sim = tables
    with pytest.raises(ConfigError, match="elites"):
        SystemIdConfig(population=3, elites=4)
    with pytest.raises(ConfigError, match="matched_hits"):
        SystemIdConfig(matched_hits=0)
    spec = parse_spec({"parameters": {"puck.mass": {"distribution": "uniform", "range": [0.05, 0.5]}}})
    with pytest.raises(ValueError, match="slide_x.*not randomized"):
        search_ranges(spec, ("puck.friction.slide_x", "puck.mass"))
    assert search_ranges(sim.randomization, ("puck.mass",)) == [("puck.mass", 0.05, 0.5, None)]


def test_history_policy_trains_and_its_hits_change_with_the_history(run, history_file, tables):
    puck, _ = tables
    assert history_file == run / HISTORY_FILE
    policy, config = load_history_policy(history_file)
    assert config == SMALL_HISTORY
    assert all(torch.all(torch.isfinite(p)) for p in policy.parameters())
    rng = np.random.default_rng(3)
    goals = puck.goals(5, rng)
    starts = np.tile(puck.start, (5, 1))
    proposals = {}
    for condition in (None, "iso_low", "iso_medium"):
        method = HistoryMethod(policy)
        method.begin(0)
        if condition is not None:
            method.learn(hits(puck, method, condition, 6, seed=4))
        proposals[condition] = method.propose(goals, starts, explore=False)
        assert proposals[condition].shape == (5, 2) and torch.all(proposals[condition].abs() <= 1)
    assert not torch.allclose(proposals[None], proposals["iso_low"])
    assert not torch.allclose(proposals["iso_low"], proposals["iso_medium"])
    method.begin(1)  # a new puck forgets the hits
    torch.testing.assert_close(method.propose(goals, starts, explore=False), proposals[None], rtol=0, atol=0)


def test_history_policy_drops_hits_without_an_outcome(history_file, tables):
    puck, _ = tables
    method = HistoryMethod(load_history_policy(history_file)[0])
    batch = hits(puck, method, "iso_low", 3, seed=5)
    finals = batch.finals.copy()
    finals[1] = np.nan  # a refused hit or a puck the camera did not find
    method.learn(batch._replace(finals=finals))
    assert len(method.history[0]) == 2 and np.all(np.isfinite(method.history[0]))


def test_a_file_that_is_not_a_history_policy_is_refused(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    for name, message in (("missing.pt", "no such"), ("garbage.pt", "not a readable"),
                          ("other.pt", "not a puck history policy")):
        with pytest.raises(CheckpointError, match=message):
            load_history_policy(tmp_path / name)
    with pytest.raises(ConfigError, match="steps"):
        dataclasses.replace(SMALL_HISTORY, steps=0)


def test_the_history_policy_runs_through_the_evaluation(run, history_file, tmp_path):
    table, plot = evaluate_puck(run, tmp_path, repeats=2, conditions=("iso_low",), methods=("baseline", "history"),
                                progress=False)
    text = table.read_text()
    assert "| iso_low | history |" in text and "| iso_low | baseline |" in text and plot.exists()
