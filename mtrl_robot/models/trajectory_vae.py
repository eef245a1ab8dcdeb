"""A β-VAE over joint trajectories: a normalised trajectory ↔ a small latent z, for reaching and for hitting.

A normaliser turns a trajectory into a flat vector of normalised features and back, with dataset statistics kept
as buffers (so they travel with the weights); it is the only part that differs between the tasks:

- :class:`OffsetScaler` (reaching): (T, dof) joint offsets from the first waypoint, minus the mean offset per
  waypoint, over a per-joint scale (the spread of the final offsets).
- :class:`TimedPathScaler` (hitting): (T, dof) joint positions and the duration, standardised per feature.

The VAE itself works on normalised features: an MLP encoder to the mean and log-variance of q(z | τ) (the
log-variance clamped to :data:`~mtrl_robot.models.gaussian.LOG_VAR_RANGE`), an MLP decoder back, and the loss
reconstruction MSE (normalised units) + ``beta`` · KL(q(z | τ) || N(0, I)) with a reparameterised draw of z.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor, nn

from mtrl_robot.models.gaussian import kl_to_standard_normal, split_gaussian
from mtrl_robot.models.mlp import mlp

MIN_OFFSET_SCALE = 0.05  # rad, the smallest per-joint scale of OffsetScaler (a joint that never moves must not blow up)
MIN_FEATURE_STD = 1e-3  # the smallest per-feature scale of TimedPathScaler (rad, or s for the duration)


class Normalizer(Protocol):
    """Trajectories ↔ flat normalised features of ``size`` entries."""

    size: int

    def normalize(self, *trajectory: Tensor) -> Tensor: ...

    def denormalize(self, features: Tensor) -> Tensor | tuple[Tensor, ...]: ...


class OffsetScaler(nn.Module):
    """(T, dof) offsets ↔ (T·dof) features: minus the mean offset per waypoint, over a per-joint scale.

    The scale of a joint is the standard deviation of its final offset over the dataset (at least
    ``MIN_OFFSET_SCALE``).
    """

    def __init__(self, n_waypoints: int, dof: int):
        super().__init__()
        self.n_waypoints, self.dof, self.size = n_waypoints, dof, n_waypoints * dof
        self.register_buffer("mean", torch.zeros(n_waypoints, dof))
        self.register_buffer("scale", torch.ones(n_waypoints, dof))

    def set_statistics(self, offsets: Tensor) -> None:
        """Statistics of a dataset of offsets (N, T, dof)."""
        if offsets.ndim != 3 or offsets.shape[1:] != (self.n_waypoints, self.dof) or len(offsets) < 2:
            raise ValueError(f"statistics need offsets of shape (N >= 2, {self.n_waypoints}, {self.dof}), "
                             f"got {tuple(offsets.shape)}")
        self.mean.copy_(offsets.mean(dim=0))
        self.scale.copy_(offsets[:, -1].std(dim=0).clamp_min(MIN_OFFSET_SCALE).expand(self.n_waypoints, -1))

    def normalize(self, offsets: Tensor) -> Tensor:
        """(..., T, dof) offsets in rad → (..., T·dof) normalised."""
        return ((offsets - self.mean) / self.scale).flatten(-2)

    def denormalize(self, features: Tensor) -> Tensor:
        """(..., T·dof) normalised → (..., T, dof) offsets in rad."""
        return features.unflatten(-1, (self.n_waypoints, self.dof)) * self.scale + self.mean


class TimedPathScaler(nn.Module):
    """(n, T, dof) positions and (n,) durations ↔ (n, T·dof + 1) features, standardised per feature."""

    def __init__(self, n_waypoints: int, dof: int):
        super().__init__()
        self.n_waypoints, self.dof, self.size = n_waypoints, dof, n_waypoints * dof + 1
        self.register_buffer("mean", torch.zeros(self.size))
        self.register_buffer("std", torch.ones(self.size))

    def _flat(self, positions: Tensor, durations: Tensor) -> Tensor:
        positions = torch.as_tensor(positions, dtype=torch.float32)
        durations = torch.as_tensor(durations, dtype=torch.float32)
        expected = (self.n_waypoints, self.dof)
        if positions.ndim != 3 or tuple(positions.shape[1:]) != expected or durations.shape != positions.shape[:1]:
            raise ValueError(f"expected positions (n, {expected[0]}, {expected[1]}) and durations (n,), got "
                             f"{tuple(positions.shape)} and {tuple(durations.shape)}")
        return torch.cat([positions.flatten(1), durations[:, None]], dim=1)

    def set_statistics(self, positions: Tensor, durations: Tensor) -> None:
        """Mean and spread (at least ``MIN_FEATURE_STD``) of every feature over a dataset."""
        flat = self._flat(positions, durations)
        self.mean.copy_(flat.mean(dim=0))
        self.std.copy_(flat.std(dim=0).clamp_min(MIN_FEATURE_STD))

    def normalize(self, positions: Tensor, durations: Tensor) -> Tensor:
        """Positions (n, T, dof) in rad and durations (n,) in s → standardised features (n, T·dof + 1)."""
        return (self._flat(positions, durations) - self.mean) / self.std

    def denormalize(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Features (n, T·dof + 1) → positions (n, T, dof) in rad and durations (n,) in s."""
        flat = features * self.std + self.mean
        return flat[:, :-1].unflatten(1, (self.n_waypoints, self.dof)), flat[:, -1]


class TrajectoryVAE(nn.Module):
    """Encoder features → q(z | τ), decoder z → features, for the trajectories of ``normalizer``."""

    def __init__(self, normalizer: Normalizer, latent_dim: int, hidden: Sequence[int], beta: float):
        super().__init__()
        self.latent_dim, self.hidden, self.beta = latent_dim, tuple(hidden), beta
        self.normalizer = normalizer
        self.encoder = mlp([normalizer.size, *self.hidden, 2 * latent_dim])
        self.decoder = mlp([latent_dim, *reversed(self.hidden), normalizer.size])

    def encode(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z | τ) for normalised features (..., size)."""
        return split_gaussian(self.encoder(features))

    def decode(self, z: Tensor) -> Tensor:
        """z (..., latent_dim) → normalised features (..., size)."""
        return self.decoder(z)

    def loss(self, features: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """β-VAE loss on a batch of normalised features: (total, reconstruction MSE, mean KL per trajectory)."""
        mean, log_var = self.encode(features)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        z = mean + (0.5 * log_var).exp() * noise
        reconstruction = (self.decoder(z) - features).square().mean()
        kl = kl_to_standard_normal(mean, log_var)
        return reconstruction + self.beta * kl, reconstruction, kl
