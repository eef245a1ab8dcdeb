"""The one trajectory VAE with either normaliser, the one MLP builder, and the Meta-SGD step sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mtrl_robot.backends.limits import MotionLimits
from mtrl_robot.backends.trajectory import JointLimits
from mtrl_robot.core.torch_files import CheckpointError
from mtrl_robot.meta.maml import MAML, MAMLConfig
from mtrl_robot.meta.sinusoid import SinusoidTasks, make_mlp
from mtrl_robot.meta.step_sizes import StepSizes
from mtrl_robot.models.gaussian import LOG_VAR_RANGE
from mtrl_robot.models.hitting_vae import HittingVAE
from mtrl_robot.models.mlp import mlp
from mtrl_robot.models.policy import GaussianPolicy
from mtrl_robot.models.trajectory_vae import OffsetScaler, PrincipalPathScaler, TrajectoryVAE
from mtrl_robot.motions.hitting import HittingPath


def _offsets(n: int, seed: int = 0) -> torch.Tensor:
    """Smooth (n, 8, 3) offsets from zero: random end points reached along a ramp."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, 8)[None, :, None]
    return torch.tensor(ramp * rng.normal(0.0, 0.5, (n, 1, 3)), dtype=torch.float32)


def _timed_paths(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    offsets = _offsets(n, seed)
    return offsets + torch.tensor([0.1, -0.4, 0.2]), torch.tensor(np.random.default_rng(seed).uniform(0.5, 1.5, n),
                                                                  dtype=torch.float32)


def test_mlp_layers_and_activations():
    net = mlp([3, 5, 4, 2], activation=nn.Tanh)
    assert [type(m) for m in net] == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]
    assert [type(m) for m in mlp([3, 5], final_activation=True)] == [nn.Linear, nn.SiLU]


def test_vae_creates_its_layers_in_order_from_the_global_seed():
    """Encoder layers first, then the decoder's: the same weights as those linear layers created by hand."""
    torch.manual_seed(7)
    vae = TrajectoryVAE(OffsetScaler(8, 3), latent_dim=4, hidden=(16, 12), beta=1e-3)
    torch.manual_seed(7)
    by_hand = [nn.Linear(a, b) for a, b in ((24, 16), (16, 12), (12, 8), (4, 12), (12, 16), (16, 24))]
    for mine, theirs in zip([m for m in [*vae.encoder, *vae.decoder] if isinstance(m, nn.Linear)], by_hand,
                            strict=True):
        assert torch.equal(mine.weight, theirs.weight) and torch.equal(mine.bias, theirs.bias)


@pytest.mark.parametrize("kind", ["offsets", "timed"])
def test_vae_learns_either_normaliser(kind):
    torch.manual_seed(0)
    if kind == "offsets":
        normalizer, data = OffsetScaler(8, 3), (_offsets(256),)
    else:
        normalizer, data = PrincipalPathScaler(8, 3, 3), _timed_paths(256)  # the paths span 3 directions
    normalizer.set_statistics(*data)
    back = normalizer.denormalize(normalizer.normalize(*data))
    for original, restored in zip(data, back if isinstance(back, tuple) else (back,), strict=True):
        torch.testing.assert_close(restored, original, rtol=1e-5, atol=1e-5)
    vae = TrajectoryVAE(normalizer, latent_dim=3, hidden=(64, 64), beta=1e-3)
    features = normalizer.normalize(*data)
    assert features.shape == (256, normalizer.size)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(vae.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        loss, reconstruction, kl = vae.loss(features, generator)
        first = reconstruction.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss) and kl.item() > 0 and reconstruction.item() < 0.2 * first
    with torch.no_grad():
        mean, log_var = vae.encode(features)
        assert log_var.min() >= LOG_VAR_RANGE[0] and log_var.max() <= LOG_VAR_RANGE[1]
        decoded = normalizer.denormalize(vae.decode(mean))
    first_decoded = decoded if kind == "offsets" else decoded[0]
    assert (first_decoded - data[0]).abs().mean() < 0.1  # rad: the means reproduce the trajectories


def test_log_variance_is_clamped():
    vae = TrajectoryVAE(OffsetScaler(2, 1), latent_dim=1, hidden=(4,), beta=1.0)
    with torch.no_grad():
        vae.encoder[-1].bias.copy_(torch.tensor([0.0, 1e4]))
        assert vae.encode(torch.zeros(1, 2))[1].item() == LOG_VAR_RANGE[1]
        vae.encoder[-1].bias.copy_(torch.tensor([0.0, -1e4]))
        assert vae.encode(torch.zeros(1, 2))[1].item() == LOG_VAR_RANGE[0]


def test_principal_path_scaler_refuses_wrong_shapes_and_sizes():
    with pytest.raises(ValueError, match=r"expected positions \(n, 8, 3\) and timing \(n,\)"):
        PrincipalPathScaler(8, 3, 3).normalize(torch.zeros(2, 8, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="components must be between 1 and 24, got 25"):
        PrincipalPathScaler(8, 3, 25)


def test_gaussian_policy_is_built_with_the_mlp_builder():
    torch.manual_seed(1)
    policy = GaussianPolicy(2, 3, (8, 8), init_std=0.5)
    torch.manual_seed(1)
    body = mlp([2, 8, 8, 3], activation=nn.Tanh)
    assert [name for name, _ in policy.body.named_parameters()] == [name for name, _ in body.named_parameters()]
    for a, b in zip(policy.body.parameters(), body.parameters(), strict=True):
        assert torch.equal(a, b)
    mean, log_std = policy(torch.zeros(4, 2))
    assert mean.shape == (4, 3) and torch.allclose(log_std, torch.full((3,), math.log(0.5)))


# ---- step sizes


def test_step_size_modes():
    params = {"w": torch.zeros(3, 2, dtype=torch.float64), "b": torch.zeros(2, dtype=torch.float64)}
    assert StepSizes(params, 0.1, "none")() == {"w": 0.1, "b": 0.1}
    assert list(StepSizes(params, 0.1, "none").parameters()) == []
    per_tensor = StepSizes(params, 0.1, "per_tensor")()
    assert [r.shape for r in per_tensor.values()] == [(), ()] and per_tensor["b"].dtype == torch.float64
    with pytest.raises(ValueError, match="one dtype"):
        StepSizes({"w": torch.zeros(2), "b": torch.zeros(2, dtype=torch.float64)}, 0.1)
    per_element = StepSizes(params, 0.1, "per_element")
    assert [r.shape for r in per_element().values()] == [(3, 2), (2,)]
    assert all(p.requires_grad for p in per_element.parameters())
    assert not any(p.requires_grad for p in StepSizes(params, 0.1, learn=False).parameters())
    logs = StepSizes(params, 0.1, log_space=True)
    torch.testing.assert_close(logs()["w"], torch.full((3, 2), 0.1, dtype=torch.float64))
    assert torch.allclose(logs.stored, torch.full((8,), math.log(0.1), dtype=torch.float64))
    logs.fill_(0.4)
    torch.testing.assert_close(logs()["b"], torch.full((2,), 0.4, dtype=torch.float64))
    assert logs.per_tensor() == pytest.approx({"w": 0.4, "b": 0.4})
    with pytest.raises(ValueError, match="one of"):
        StepSizes(params, 0.1, "per_row")
    with pytest.raises(ValueError, match="positive"):
        StepSizes(params, -0.1)


def test_log_space_rates_stay_positive_under_a_large_push():
    rates = StepSizes({"w": torch.zeros(2)}, 0.01, log_space=True)
    optimizer = torch.optim.SGD(rates.parameters(), lr=1.0)
    for _ in range(20):
        optimizer.zero_grad()
        rates()["w"].sum().mul(100.0).backward()  # pushes the rate down hard
        optimizer.step()
    assert torch.all(rates()["w"] > 0)


def test_maml_learns_its_step_sizes_with_the_module():
    learner = MAML(make_mlp(seed=0), config=MAMLConfig(learn_inner_lr="per_element", inner_lr=0.01, seed=0))
    assert isinstance(learner.meta["inner_lrs"], StepSizes)
    before = {name: lr.detach().clone() for name, lr in learner.inner_lrs().items()}
    learner.fit(SinusoidTasks().sampler(5, 5), 3)
    after = learner.inner_lrs()
    assert all(after[name].shape == before[name].shape for name in before)
    assert any(not torch.equal(after[name], before[name]) for name in before)


def test_the_hitting_vae_is_the_trajectory_vae_with_its_own_file(tmp_path):
    limits = JointLimits(("a", "b"), np.full(2, -1.0), np.full(2, 1.0), np.ones(2), np.ones(2))
    path = HittingPath(np.linspace(-0.3, 0.2, 4), -0.07, MotionLimits(np.ones(2), np.ones(2), np.ones(2), 1e-3), 8)
    vae = HittingVAE(limits, path, hidden=(8,))
    assert isinstance(vae, TrajectoryVAE) and isinstance(vae.normalizer, PrincipalPathScaler)
    vae.latent_low.fill_(-1.0)
    vae.latent_high.fill_(1.0)
    path = vae.save(tmp_path / "vae.pt")
    assert torch.equal(HittingVAE.load(path).decoder[0].weight, vae.decoder[0].weight)
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "hidden": [16]}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: does not fit the hitting VAE it describes") as info:
        HittingVAE.load(tmp_path / "other.pt")
    assert "\n" not in str(info.value)
    torch.save({**payload, "format": 1}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="old.pt: not a hitting VAE file of format 3"):
        HittingVAE.load(tmp_path / "old.pt")
