"""A β-VAE over joint trajectories: a normalised trajectory ↔ a small latent z, for reaching and for hitting.

A normaliser turns a trajectory into a flat vector of normalised features and back, with dataset statistics kept
as buffers (so they travel with the weights); it is the only part that differs between the tasks:

- :class:`OffsetScaler` (reaching): (T, dof) joint offsets from the first waypoint, minus the mean offset per
  waypoint, over a per-joint scale (the spread of the final offsets).
- :class:`PrincipalPathScaler` (hitting): (T, dof) joint positions along a path, as coordinates along the
  training paths' principal directions, and one scalar that times the path (the paddle's speed at contact),
  standardised.

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
from mtrl_robot.models.joint_padding import masked_mse, nan_statistics
from mtrl_robot.models.mlp import mlp

MIN_OFFSET_SCALE = 0.05  # rad, the smallest per-joint scale of OffsetScaler (a joint that never moves must not blow up)
MIN_FEATURE_STD = 1e-3  # the smallest per-feature scale of PrincipalPathScaler (rad, or the timing scalar's unit)


class Normalizer(Protocol):
    """Trajectories ↔ flat normalised features of ``size`` entries."""

    size: int

    def normalize(self, *trajectory: Tensor) -> Tensor: ...

    def denormalize(self, features: Tensor) -> Tensor | tuple[Tensor, ...]: ...


class OffsetScaler(nn.Module):
    """(T, dof) offsets ↔ (T·dof) features: minus the mean offset per waypoint, over a per-joint scale.

    The scale of a joint is the standard deviation of its final offset over the dataset (at least
    ``MIN_OFFSET_SCALE``). Padded joints (NaN, :mod:`~mtrl_robot.models.joint_padding`) are left out of the
    statistics.
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
        if offsets.isnan().any():
            mean, final_spread = nan_statistics(offsets)[0], nan_statistics(offsets[:, -1])[1]
        else:
            mean, final_spread = offsets.mean(dim=0), offsets[:, -1].std(dim=0)
        self.mean.copy_(mean)
        self.scale.copy_(final_spread.clamp_min(MIN_OFFSET_SCALE).expand(self.n_waypoints, -1))

    def normalize(self, offsets: Tensor) -> Tensor:
        """(..., T, dof) offsets in rad → (..., T·dof) normalised."""
        return ((offsets - self.mean) / self.scale).flatten(-2)

    def denormalize(self, features: Tensor) -> Tensor:
        """(..., T·dof) normalised → (..., T, dof) offsets in rad."""
        return features.unflatten(-1, (self.n_waypoints, self.dof)) * self.scale + self.mean


class PrincipalPathScaler(nn.Module):
    """(n, T, dof) positions along a path and (n,) timing scalars ↔ (n, components + 1) features: the path's
    coordinates along the training set's first ``components`` principal directions, over the spread of the first,
    and the timing scalar, standardised. A decoded path is the training set's mean path plus a combination of those
    directions, so it is as smooth as the training paths are."""

    def __init__(self, n_points: int, dof: int, components: int):
        super().__init__()
        if not 1 <= components <= n_points * dof:
            raise ValueError(f"components must be between 1 and {n_points * dof}, got {components}")
        self.n_points, self.dof, self.components, self.size = n_points, dof, components, components + 1
        self.register_buffer("mean_path", torch.zeros(n_points * dof))
        self.register_buffer("directions", torch.eye(components, n_points * dof))
        self.register_buffer("mean", torch.zeros(self.size))
        self.register_buffer("std", torch.ones(self.size))

    def _flat(self, positions: Tensor, timing: Tensor) -> tuple[Tensor, Tensor]:
        positions = torch.as_tensor(positions, dtype=torch.float32)
        timing = torch.as_tensor(timing, dtype=torch.float32)
        expected = (self.n_points, self.dof)
        if positions.ndim != 3 or tuple(positions.shape[1:]) != expected or timing.shape != positions.shape[:1]:
            raise ValueError(f"expected positions (n, {expected[0]}, {expected[1]}) and timing (n,), got "
                             f"{tuple(positions.shape)} and {tuple(timing.shape)}")
        return positions.flatten(1), timing

    def _features(self, paths: Tensor, timing: Tensor) -> Tensor:
        return torch.cat([(paths - self.mean_path) @ self.directions.T, timing[:, None]], dim=1)

    def set_statistics(self, positions: Tensor, timing: Tensor) -> None:
        """Mean path, principal directions (each signed so that its largest entry is positive), the features' means,
        and their spreads (at least ``MIN_FEATURE_STD``; for the path, the first direction's) over a dataset."""
        paths, timing = self._flat(positions, timing)
        self.mean_path.copy_(paths.mean(dim=0))
        directions = torch.linalg.svd(paths - self.mean_path, full_matrices=False)[2][:self.components]
        largest = directions.gather(1, directions.abs().argmax(dim=1, keepdim=True))
        self.directions.copy_(directions * largest.sign())
        features = self._features(paths, timing)
        self.mean.copy_(features.mean(dim=0))
        std = features.std(dim=0).clamp_min(MIN_FEATURE_STD)
        std[:-1] = std[0]  # the path's coordinates keep their proportions: a path error weighs as it is in rad
        self.std.copy_(std)

    def normalize(self, positions: Tensor, timing: Tensor) -> Tensor:
        """Positions (n, T, dof) in rad and timing scalars (n,) → standardised features (n, components + 1)."""
        return (self._features(*self._flat(positions, timing)) - self.mean) / self.std

    def denormalize(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Features (n, components + 1) → positions (n, T, dof) in rad and timing scalars (n,)."""
        flat = features * self.std + self.mean
        paths = self.mean_path + flat[:, :-1] @ self.directions
        return paths.unflatten(1, (self.n_points, self.dof)), flat[:, -1]


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
        """β-VAE loss on a batch of normalised features: (total, reconstruction MSE, mean KL per trajectory).

        NaN features are padding: the encoder sees them as 0 and the reconstruction leaves them out."""
        padded = features.isnan().any()
        mean, log_var = self.encode(features.nan_to_num() if padded else features)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        z = mean + (0.5 * log_var).exp() * noise
        decoded = self.decode(z)
        reconstruction = masked_mse(decoded, features) if padded else (decoded - features).square().mean()
        kl = kl_to_standard_normal(mean, log_var)
        return reconstruction + self.beta * kl, reconstruction, kl
