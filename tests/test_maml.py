"""MAML, Meta-SGD and probabilistic MAML: sinusoid few-shot regression, exact meta-gradients, checkpoints."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_threads import one_thread  # noqa: F401

from mtrl_robot.core.torch_files import CheckpointError
from mtrl_robot.meta import MAMLConfig, ProbabilisticMAML, make_meta_learner, read_checkpoint
from mtrl_robot.meta import maml as maml_module
from mtrl_robot.meta.maml import MAML, TaskBatch
from mtrl_robot.meta.sinusoid import SinusoidTasks, make_mlp
from mtrl_robot.models.joint_padding import masked_mse

SINUSOIDS = SinusoidTasks()


def _few_shot_mse(learner: MAML, tasks: TaskBatch) -> float:
    """Query MSE after adapting on each task's support set, averaged over tasks."""
    errors = []
    with torch.no_grad():
        for sx, sy, qx, qy in zip(*tasks[:4], strict=True):
            errors.append(F.mse_loss(learner.predict(learner.adapt(sx, sy), qx), qy).item())
    return sum(errors) / len(errors)


# ---- (a) the headline: 5-shot sinusoid regression


def test_maml_five_shot_beats_multitask_pretraining_by_a_wide_margin():
    config = MAMLConfig(inner_steps=2, inner_lr=0.01, outer_lr=0.01, meta_batch_size=10, seed=0)
    meta_steps, shots, query = 600, 5, 10
    maml = MAML(make_mlp(seed=0), config=config)
    maml.fit(SINUSOIDS.sampler(shots, query), meta_steps)

    # Same architecture and initialisation, the same number of (x, y) examples, regressed on all tasks at once.
    pretrained = make_mlp(seed=0)
    optimizer = torch.optim.Adam(pretrained.parameters(), lr=config.outer_lr)
    generator = torch.Generator().manual_seed(config.seed)
    for _ in range(meta_steps):
        batch = SINUSOIDS.sample(config.meta_batch_size, shots, query, generator)
        loss = F.mse_loss(pretrained(torch.cat([batch.support_x, batch.query_x], 1)),
                          torch.cat([batch.support_y, batch.query_y], 1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    # Fine-tuned with the same inner steps; its step size is the best of three on the test tasks themselves.
    fresh = SINUSOIDS.sample(100, shots, 100, torch.Generator().manual_seed(1234))
    maml_mse = _few_shot_mse(maml, fresh)
    pretrained_mse = min(_few_shot_mse(MAML(pretrained, config=dataclasses.replace(config, inner_lr=lr)), fresh)
                         for lr in (config.inner_lr / 3, config.inner_lr, config.inner_lr * 3))
    assert maml_mse * 2.0 < pretrained_mse, (maml_mse, pretrained_mse)


# ---- (b) the meta-gradient is the right one


def test_second_order_matches_hand_derived_meta_gradient_and_first_order_differs():
    w0, alpha = 0.5, 0.1
    model = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        model.weight.fill_(w0)

    def column(*values: float) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64)[:, None]

    xs, ys, xq, yq = column(1.0, 2.0, -1.5), column(2.0, 3.0, -1.0), column(0.5, -2.0), column(1.0, -3.0)
    tasks = TaskBatch(xs[None], ys[None], xq[None], yq[None])

    # L_s(w) = mean((w xs - ys)^2);  w' = w - alpha L_s'(w);  dL_q(w')/dw = L_q'(w') (1 - 2 alpha mean(xs^2))
    w1 = w0 - alpha * 2 * (xs * (w0 * xs - ys)).mean()
    query_grad = 2 * (xq * (w1 * xq - yq)).mean()
    expected_second, expected_first = query_grad * (1 - 2 * alpha * xs.square().mean()), query_grad

    def meta_grad(first_order: bool) -> float:
        learner = MAML(model, config=MAMLConfig(inner_steps=1, inner_lr=alpha, first_order=first_order))
        return torch.autograd.grad(learner.meta_loss(tasks), [model.weight])[0].item()

    second, first = meta_grad(False), meta_grad(True)
    assert second == pytest.approx(expected_second.item(), rel=1e-12)
    assert first == pytest.approx(expected_first.item(), rel=1e-12)
    assert abs(second - first) > 0.1 * abs(first)


@pytest.mark.parametrize("learn_inner_lr", ["none", "per_element"])
def test_second_order_meta_gradient_matches_finite_differences(learn_inner_lr: str):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = nn.Sequential(nn.Linear(1, 6), nn.Tanh(), nn.Linear(6, 1)).double()  # smooth, for differences
    config = MAMLConfig(inner_steps=2, inner_lr=0.05, learn_inner_lr=learn_inner_lr)
    learner = MAML(model, config=config)
    tasks = SINUSOIDS.sample(3, 4, 6, torch.Generator().manual_seed(0))
    tasks = TaskBatch(*(t.double() for t in tasks[:4]))
    parameters = list(learner.meta.parameters())
    analytic = torch.autograd.grad(learner.meta_loss(tasks), parameters)
    eps = 1e-6
    with torch.no_grad():
        for parameter, gradient in zip(parameters, analytic, strict=True):
            flat, flat_grad = parameter.view(-1), gradient.reshape(-1)
            for i in range(flat.numel()):
                flat[i] += eps
                up = learner.meta_loss(tasks).item()
                flat[i] -= 2 * eps
                down = learner.meta_loss(tasks).item()
                flat[i] += eps
                assert (up - down) / (2 * eps) == pytest.approx(flat_grad[i].item(), rel=1e-5, abs=1e-8)


@pytest.mark.parametrize(("config", "padded", "factored"), [
    (MAMLConfig(inner_steps=3, inner_lr=0.02), False, False),  # factors larger than the weights: vmapped
    (MAMLConfig(inner_steps=2, inner_lr=0.02, learn_inner_lr="per_tensor", adapt_only=("2.", "4.weight")), True, True),
    (MAMLConfig(inner_steps=2, inner_lr=0.02, learn_inner_lr="per_tensor", first_order=True, adapt_only=("2.",)),
     False, True),
    (MAMLConfig(inner_steps=2, inner_lr=0.02, learn_inner_lr="per_element", adapt_only=("2.",)), False, False),
])
def test_meta_loss_and_gradient_equal_those_of_per_task_adaptation(config, padded, factored):
    """The meta-loss (adapted linear layers factored, all tasks as one batch; or vmapped) against adapting each task
    on its own with ``adapt``, which builds the adapted weights: the same loss and meta-gradient."""
    learner = MAML(make_mlp(in_dim=2, out_dim=3, seed=1), masked_mse if padded else F.mse_loss, config)
    assert learner._factors_pay(5) == factored
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 15, 2, generator=generator), torch.randn(4, 15, 3, generator=generator)
    if padded:
        y[..., 2] = float("nan")  # a padded joint column: left out of every loss
    tasks = TaskBatch(x[:, :5], y[:, :5], x[:, 5:], y[:, 5:])
    parameters = list(learner.meta.parameters())
    meta_loss = learner.meta_loss(tasks)
    per_task = torch.stack([learner.loss_fn(learner.predict(learner.adapt(sx, sy), qx), qy)
                            for sx, sy, qx, qy in zip(*tasks[:4], strict=True)]).mean()
    assert meta_loss.item() == pytest.approx(per_task.item(), rel=1e-5)
    for ours, theirs in zip(torch.autograd.grad(meta_loss, parameters), torch.autograd.grad(per_task, parameters),
                            strict=True):
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-6 * theirs.abs().max().item())
    with torch.no_grad():
        adapted = learner.adapt(tasks.support_x[0], tasks.support_y[0])
        assert torch.isfinite(learner.meta_loss(tasks))
    assert not any(p.requires_grad for p in adapted.values())


def test_meta_gradient_agrees_with_the_higher_library():
    pytest.importorskip("higher")
    from mtrl_robot.tools.bench.meta_bench import bench_meta

    figures = bench_meta(seconds=0.1, meta_batch_size=4, support_size=5, inner_steps=2)
    assert figures["first_meta_grad_relative_gap"] < 1e-5 and figures["first_meta_loss_gap"] < 1e-5


# ---- (c) Meta-SGD


@pytest.mark.parametrize("mode", ["per_tensor", "per_element"])
def test_meta_sgd_learns_its_inner_step_sizes(mode: str):
    config = MAMLConfig(learn_inner_lr=mode, inner_lr=0.01, outer_lr=0.003, meta_batch_size=5)
    learner = MAML(make_mlp(seed=0), config=config)
    before = {name: torch.as_tensor(lr).clone() for name, lr in learner.inner_lrs().items()}
    for name, p in learner.params().items():
        assert before[name].shape == (p.shape if mode == "per_element" else ())
    learner.fit(SINUSOIDS.sampler(5, 10), 20)
    for name, lr in learner.inner_lrs().items():
        assert not torch.allclose(lr.detach(), before[name]), name


# ---- (d) checkpoints


def _small_learner(seed: int = 0, hidden: int = 8, **config) -> MAML:
    return MAML(make_mlp(hidden=hidden, seed=seed), config=MAMLConfig(meta_batch_size=4, seed=seed, **config))


def _snapshot(learner: MAML) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in learner.meta.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_round_trip_resumes_exactly(tmp_path):
    sampler = SINUSOIDS.sampler(5, 5)
    learner = _small_learner(seed=0, learn_inner_lr="per_tensor")
    learner.fit(sampler, 3)
    path = learner.save_checkpoint(tmp_path / "meta.pt", extra={"note": "after 3", "losses": [1.0, 2.0]})
    assert read_checkpoint(path)["config"]["learn_inner_lr"] == "per_tensor"

    other = _small_learner(seed=5, learn_inner_lr="per_tensor")
    assert other.load_checkpoint(path) == {"note": "after 3", "losses": [1.0, 2.0]}
    assert _same(_snapshot(other), _snapshot(learner)) and other.step == 3 and other.config == learner.config
    assert learner.fit(sampler, 2) == other.fit(sampler, 2)  # same optimiser state and task stream
    assert _same(_snapshot(other), _snapshot(learner))
    assert os.listdir(tmp_path) == ["meta.pt"]


def test_failed_write_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    learner = _small_learner()
    path = learner.save_checkpoint(tmp_path / "meta.pt")
    saved = _snapshot(learner)
    learner.fit(SINUSOIDS.sampler(5, 5), 2)

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(maml_module.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        learner.save_checkpoint(path)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="would not load back"):
        learner.save_checkpoint(path, extra={"object": nn.Linear(1, 1)})
    assert os.listdir(tmp_path) == ["meta.pt"]
    fresh = _small_learner(seed=9)
    fresh.load_checkpoint(path)
    assert _same(_snapshot(fresh), saved)


def test_bad_checkpoints_raise_clear_errors_and_change_nothing(tmp_path):
    good = _small_learner().save_checkpoint(tmp_path / "good.pt")
    learner = _small_learner(seed=1)
    before = _snapshot(learner)

    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        learner.load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[:200])
    (tmp_path / "noise.pt").write_bytes(os.urandom(512))
    (tmp_path / "empty.pt").write_bytes(b"")
    for name in ("truncated.pt", "noise.pt", "empty.pt"):
        with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
            learner.load_checkpoint(tmp_path / name)
    torch.save({"w": torch.ones(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a mtrl_robot.meta checkpoint"):
        learner.load_checkpoint(tmp_path / "foreign.pt")
    torch.save(nn.Linear(2, 2), tmp_path / "pickled_module.pt")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        learner.load_checkpoint(tmp_path / "pickled_module.pt")
    torch.save({**torch.load(good, weights_only=True), "version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        learner.load_checkpoint(tmp_path / "future.pt")

    with pytest.raises(CheckpointError, match=r"model does not match: model.0.weight is \(8, 1\)"):
        _small_learner(hidden=16).load_checkpoint(good)
    with pytest.raises(CheckpointError, match="learn_inner_lr is 'none' in the checkpoint"):
        _small_learner(learn_inner_lr="per_element").load_checkpoint(good)
    probabilistic = ProbabilisticMAML(make_mlp(in_dim=3), 1, 1, config=MAMLConfig(latent_dim=2))
    with pytest.raises(CheckpointError, match="holds a MAML learner, this is a ProbabilisticMAML"):
        probabilistic.load_checkpoint(good)
    state = torch.load(good, weights_only=True)
    state["optimizer"]["param_groups"][0]["params"] = [0]  # passes the shape checks, fails in torch
    with pytest.raises(CheckpointError, match="cannot restore"):
        learner.load_state_dict(state)
    assert _same(_snapshot(learner), before) and learner.step == 0


# ---- (e) seeds and configuration


def test_same_seed_gives_identical_meta_parameters():
    def train(seed: int) -> dict[str, torch.Tensor]:
        learner = _small_learner(seed=seed, learn_inner_lr="per_element")
        learner.fit(SINUSOIDS.sampler((2, 6), 5), 15)
        return _snapshot(learner)

    assert _same(train(0), train(0))
    assert not _same(train(0), train(1))


def test_configuration_selects_the_learner_and_rejects_nonsense():
    assert type(make_meta_learner(make_mlp(), MAMLConfig())) is MAML
    probabilistic = make_meta_learner(make_mlp(in_dim=4), MAMLConfig(latent_dim=3), x_dim=1, y_dim=1)
    assert isinstance(probabilistic, ProbabilisticMAML)
    with pytest.raises(ValueError, match="needs x_dim and y_dim"):
        make_meta_learner(make_mlp(in_dim=4), MAMLConfig(latent_dim=3))
    with pytest.raises(ValueError, match="selects ProbabilisticMAML"):
        MAML(make_mlp(), config=MAMLConfig(latent_dim=3))
    with pytest.raises(ValueError, match="learn_inner_lr must be one of"):
        MAMLConfig(learn_inner_lr="yes")
    with pytest.raises(ValueError, match="inner_steps must be >= 0"):
        dataclasses.replace(MAMLConfig(), inner_steps=-1)


# ---- (f) probabilistic MAML


def test_probabilistic_maml_learns_and_its_spread_shrinks_with_more_shots():
    latent = 4
    config = MAMLConfig(inner_steps=2, inner_lr=0.01, outer_lr=0.01, meta_batch_size=10, latent_dim=latent,
                        kl_weight=1.0, seed=0)
    learner = ProbabilisticMAML(make_mlp(in_dim=1 + latent, seed=0), x_dim=1, y_dim=1, config=config)
    learner.fit(SINUSOIDS.sampler((1, 10), 10), 800)

    fresh = SINUSOIDS.sample(50, 10, 100, torch.Generator().manual_seed(4321))
    spread, error = {}, {}
    for shots in (1, 10):
        stds = []
        with torch.no_grad():
            for sx, sy, qx, _ in zip(*fresh[:4], strict=True):
                stds.append(learner.predict_distribution(sx[:shots], sy[:shots], qx, num_samples=16)[1].mean())
        spread[shots] = torch.stack(stds).mean().item()
        error[shots] = _few_shot_mse(learner, TaskBatch(fresh.support_x[:, :shots], fresh.support_y[:, :shots],
                                                        fresh.query_x, fresh.query_y))
    predict_zero = fresh.query_y.square().mean().item()
    assert spread[10] < 0.8 * spread[1], spread
    assert error[10] < error[1] < predict_zero, (error, predict_zero)
    assert error[10] < 0.6 * predict_zero, (error, predict_zero)
