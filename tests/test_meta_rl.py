"""Meta-RL for puck hitting: a tiny run, checkpoints, the inner step, presets, evaluation and camera mode."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.torch_files import CheckpointError
from mtrl_robot.distributed.compute import ComputeConfig
from mtrl_robot.learning.puck import adapt as puck_adapt
from mtrl_robot.learning.puck import methods as puck_methods
from mtrl_robot.learning.puck.evaluate import OverheadCamera, evaluate_puck
from mtrl_robot.learning.puck.train import (
    BASELINE_FILE,
    META_FILE,
    SUMMARY_FILE,
    VAE_FILE,
    load_policy,
    load_preset,
    new_policy,
    save_policy,
    simulated_world,
    train_puck,
)
from mtrl_robot.meta.policy_gradient_maml import Batch, adapt, meta_parameters, sample
from mtrl_robot.meta.step_sizes import StepSizes
from mtrl_robot.models.hitting_vae import HittingVAE
from mtrl_robot.models.policy import GaussianPolicy
from mtrl_robot.tasks.puck import MISSED_DISTANCE, START_UNIT, HitBatch, PuckHittingEnv, condition_task


@pytest.fixture(scope="module")
def run(small_puck_run):
    return small_puck_run


@pytest.fixture(scope="module")
def env(run):
    environment = PuckHittingEnv("panda", motion_vae=HittingVAE.load(run / VAE_FILE))
    yield environment
    environment.close()


def test_tiny_run_trains_without_nan(run):
    config = load_preset("small")
    summary = json.loads((run / SUMMARY_FILE).read_text())
    assert summary["hits_per_policy"] == config.iterations * config.tasks_per_iteration * 2 * config.rollouts
    for file, kind in ((META_FILE, "meta"), (BASELINE_FILE, "baseline")):
        trained = load_policy(run / file)
        assert trained.kind == kind
        assert trained.config == dataclasses.replace(config, compute=ComputeConfig())  # not how it computed
        assert len(trained.history) == config.iterations
        assert all(torch.all(torch.isfinite(p)) for p in trained.policy.parameters())
        assert np.all(np.isfinite([h["distance_by_step"] for h in trained.history]))
        assert np.isfinite([h["loss"] for h in trained.history]).all()
    meta, baseline = load_policy(run / META_FILE), load_policy(run / BASELINE_FILE)
    meta_rates = torch.cat([rate.flatten() for rate in meta.lrs().values()])
    assert not torch.allclose(meta_rates, torch.tensor(config.inner_lr))  # learned step sizes
    scores = summary["baseline_lr_scores"]  # step size → mean distance after the inner steps
    assert len(scores) == len(config.baseline_lr_factors)
    baseline_rates = torch.cat([rate.flatten() for rate in baseline.lrs().values()])
    assert torch.allclose(baseline_rates, torch.tensor(float(min(scores, key=scores.get))), rtol=1e-5)


def test_checkpoint_round_trip(run, tmp_path):
    trained = load_policy(run / META_FILE)
    again = load_policy(save_policy(trained, tmp_path / "copy.pt"))
    assert again.config == trained.config and again.kind == trained.kind and again.history == trained.history
    obs = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    for a, b in zip(trained.policy(obs), again.policy(obs), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(again.lrs.stored, trained.lrs.stored, rtol=0, atol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.pt"]  # no temporary file left behind
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    for name, message in (("missing.pt", "no such"), ("garbage.pt", "not a readable"), ("other.pt", "not a puck")):
        with pytest.raises(CheckpointError, match=message):
            load_policy(tmp_path / name)


def test_nan_is_refused():
    policy = GaussianPolicy(2, 2, (8,))
    params = meta_parameters(policy)
    obs, generator = torch.zeros(4, 2), torch.Generator().manual_seed(0)
    actions, log_probs = sample(policy, params, obs, generator)
    lrs = StepSizes(params, 0.1, learn=False)()
    with pytest.raises(FloatingPointError, match="non-finite"):
        adapt(policy, params, Batch(obs, actions, log_probs, torch.full((4,), torch.nan)), lrs, create_graph=False)
    with torch.no_grad():
        policy.body[0].weight.fill_(torch.nan)
    with pytest.raises(FloatingPointError, match="non-finite actions"):
        sample(policy, params, obs, generator)


def test_one_inner_step_improves_a_fixed_condition_on_average(env):
    """Untrained policy aimed off, iso_low: after one inner step on 16 hits the mean action lands closer (fixed
    seed). Its mean action is moved half-way to the box's edge along the latent axis that follows the contact speed
    (the box's centre alone already hits about as far as the goals lie on average)."""
    config = dataclasses.replace(load_preset("small"), rollouts=16, eval_goals=16)
    world = simulated_world(env, config)
    torch.manual_seed(0)
    policy, lrs = new_policy(config, learn_lr=False)
    with torch.no_grad():
        policy.body[-1].bias += torch.atanh(torch.tensor([0.0, -0.5]))
    curves = np.array([puck_adapt.adapt_policy(policy, lrs, world, condition_task("iso_low"), config, 1, [0, i])[0]
                       for i in range(6)])
    before, after = curves[:, 0], curves[:, 1]
    assert after.mean() < 0.8 * before.mean(), curves
    assert (after < before).sum() >= 5, curves


def test_training_gives_the_same_files_for_any_number_of_worker_processes(run, tmp_path):
    assert load_preset("small").compute.workers == 1
    two = train_puck(load_preset("small", overrides=["compute.workers=2"]), tmp_path / "two", progress=False)
    for file in (VAE_FILE, META_FILE, BASELINE_FILE):
        assert (two / file).read_bytes() == (run / file).read_bytes(), file
    summaries = [json.loads((folder / SUMMARY_FILE).read_text()) for folder in (run, two)]
    for key in ("meta_history", "baseline_history", "baseline_lr_scores"):
        assert summaries[0][key] == summaries[1][key], key


def test_presets_are_validated(tmp_path):
    default, small = load_preset("default"), load_preset("small")
    assert default.name == "default" and small.name == "small"
    assert small.seed == default.seed and small.iterations < default.iterations  # inherits, overrides
    path = tmp_path / "presets.yaml"
    for text, field in (("a: {iterations: 0}", "a"), ("a: {iterations: 2.5}", "a.iterations"),
                        ("a: {bogus: 1}", "a.bogus"), ("a: {goal_distance: [0.3, 0.1]}", "a"),
                        ("a: {learn_inner_lr: 1}", "a.learn_inner_lr"), ("a: {base: b}\nb: {base: a}", "cycle"),
                        ("a: {base: nowhere}", "nowhere")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=field):
            load_preset("a", path)


def test_evaluation_writes_table_and_plot(run, tmp_path):
    for camera, conditions in ((False, ("iso_low", "aniso_low_y")), (True, ("iso_medium",))):
        table, plot = evaluate_puck(run, tmp_path, repeats=2, camera=camera, conditions=conditions, progress=False)
        text = table.read_text()
        rows = [line.split(" | ")[:2] for line in text.splitlines() if line.startswith("| ") and " | step" not in line]
        assert rows == [[f"| {c}", kind] for c in conditions for kind in ("meta", "baseline")], rows
        assert ("camera" in text) == camera and "step 2" in text
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        raw = json.loads((tmp_path / f"puck_eval_{'camera' if camera else 'sim'}.json").read_text())
        steps = load_preset("small").eval_steps + 1
        assert np.array(raw["curves_m"]["baseline"][raw["conditions"][0]]).shape == (2, steps)
    with pytest.raises(ValueError, match="at least 2"):
        evaluate_puck(run, tmp_path, repeats=1)


class CentreOfTheBox(puck_methods.AdaptationMethod):
    """Always the VAE box's centre; keeps what the procedure gave it."""

    def __init__(self):
        self.begun, self.proposed, self.learned = [], [], []

    def begin(self, seed: int) -> None:
        self.begun.append(seed)

    def propose(self, goals: np.ndarray, starts: np.ndarray, explore: bool) -> np.ndarray:
        self.proposed.append((goals.copy(), starts.copy(), explore))
        return np.zeros((len(goals), 2))

    def learn(self, hits: HitBatch) -> None:
        self.learned.append(hits)


def test_evaluation_runs_any_method_in_either_engine(run, tmp_path, monkeypatch):
    built = []
    monkeypatch.setitem(puck_methods.METHODS, "centre", lambda *_: built.append(CentreOfTheBox()) or built[-1])
    table, _ = evaluate_puck(run, tmp_path, repeats=2, conditions=("iso_low",), methods=("centre", "baseline"),
                             backend="pybullet", progress=False)
    text = table.read_text()
    assert "PyBullet" in text and table.name == "puck_eval_pybullet.md" and "Goal" not in text  # no meta: no goal
    config = load_preset("small")
    begun = [seed for centre in built for seed in centre.begun]  # one method per chunk of repeats
    assert len(begun) == 2 and len(set(begun)) == 2  # one puck per repeat, seeded apart
    learned = [hits for centre in built for hits in centre.learned]
    explored = [p for centre in built for p in centre.proposed if p[2]]
    assert len(learned) == len(explored) == 2 * config.eval_steps
    for hits, (goals, starts, _) in zip(learned, explored, strict=True):
        assert hits.goals.shape == hits.starts.shape == hits.finals.shape == (config.rollouts, 2)
        assert np.array_equal(goals, hits.goals) and np.array_equal(starts, hits.starts)
        assert np.all(hits.actions == 0) and np.all(np.isfinite(hits.finals))
        assert np.all(hits.distances < MISSED_DISTANCE)
        np.testing.assert_allclose(hits.distances, np.linalg.norm(hits.finals - hits.goals, axis=1))
    raw = json.loads((tmp_path / "puck_eval_pybullet.json").read_text())
    assert raw["backend"] == "pybullet" and raw["methods"] == ["centre", "baseline"]
    for bad, message in (({"methods": ("meta", "nope")}, "unknown, repeated or no methods"),
                         ({"methods": ("meta", "meta")}, "repeated"), ({"backend": "gazebo"}, "unknown backend"),
                         ({"backend": "pybullet", "camera": True}, "camera mode")):
        with pytest.raises(ValueError, match=message):
            evaluate_puck(run, tmp_path / "bad", repeats=2, **bad)
    assert not (tmp_path / "bad").exists()


def test_a_policy_that_observes_the_start_sees_each_hits_offset(env):
    config = dataclasses.replace(load_preset("small"), observe_start=True)
    world = simulated_world(env, config)
    rng = np.random.default_rng(0)
    task = world.random_task(rng)
    layout = world.layout(task, 5, rng)
    offsets = layout.starts - world.start
    assert np.all(np.abs(offsets) > 0) and np.all(np.abs(offsets) < 0.1)  # N(0, 2 cm), drawn per hit
    assert np.array_equal(world.layout(condition_task("iso_low"), 3, rng).starts, np.tile(world.start, (3, 1)))
    goals = world.goals(5, rng)
    obs = world.observe(goals, layout.starts)
    torch.testing.assert_close(obs[:, 2:], torch.as_tensor(offsets / START_UNIT, dtype=torch.float32))
    torch.testing.assert_close(obs[:, :2], torch.as_tensor((goals - layout.starts) / config.goal_distance[1],
                                                           dtype=torch.float32))
    torch.manual_seed(0)
    policy, lrs = new_policy(config, learn_lr=False)
    method = puck_methods.PolicyMethod(policy, lrs, config, world)
    method.begin(0)
    actions = method.propose(goals, layout.starts, explore=True)
    method.learn(world.strike(layout, goals, actions))
    assert any(not torch.equal(a, b) for a, b in zip(method.params.values(), policy.parameters(), strict=True))
    with pytest.raises(ValueError, match="explore=True"):
        method.learn(world.strike(layout, goals, actions))  # its exploratory hits were learned from already
    # the camera sees a different puck for every hit; the policy's answer follows it
    shifted = method.propose(goals, layout.starts + 0.02, explore=False)
    assert not torch.equal(shifted, method.propose(goals, layout.starts, explore=False))


def test_camera_sees_the_puck_where_the_simulator_has_it(env):
    camera = OverheadCamera(env)
    rng = np.random.default_rng(0)
    low, high = env.action_space.low, env.action_space.high
    try:
        for condition in ("iso_low", "iso_medium", "aniso_low_x", "aniso_low_y"):
            for _ in range(3):
                env.reset(options={"condition": condition, "goal": (0.6, 0.0)})
                info = env.step(rng.uniform(low, high))[4]
                seen = camera()
                assert seen is not None
                assert np.linalg.norm(seen - info["puck_final"]) < 0.004, (seen, info["puck_final"])
    finally:
        camera.close()


def test_adapt_writes_a_policy_adapted_to_one_condition(run, tmp_path):
    out = tmp_path / "adapted" / "iso_low.pt"
    out.parent.mkdir()
    path, curve = puck_adapt.adapt(run, out, "iso_low", steps=1, rollouts=4)
    trained, adapted = load_policy(run / META_FILE), load_policy(path)
    assert path == out and [p.name for p in out.parent.iterdir()] == ["iso_low.pt"]  # atomic: nothing else left
    assert curve.shape == (2,) and np.all(np.isfinite(curve))
    assert adapted.kind == trained.kind and adapted.config == trained.config
    changed = [not torch.equal(a, b) for a, b in zip(adapted.policy.parameters(), trained.policy.parameters(),
                                                     strict=True)]
    assert any(changed)  # one inner step moved the parameters
    again, curve_again = puck_adapt.adapt(run, tmp_path / "again.pt", "iso_low", steps=1, rollouts=4)
    np.testing.assert_array_equal(curve_again, curve)  # same seed, same hits, same adapted policy
    for a, b in zip(load_policy(again).policy.parameters(), adapted.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown condition"):
        puck_adapt.adapt(run, tmp_path / "bad.pt", "icy", steps=1)
    with pytest.raises(ValueError, match="steps"):
        puck_adapt.adapt(run, tmp_path / "bad.pt", "iso_low", steps=0)
    assert not (tmp_path / "bad.pt").exists()
