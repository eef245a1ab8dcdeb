"""A β-VAE over motor trajectories: joint offsets from the start posture at fixed waypoints ↔ a small latent z.

A trajectory is (T, dof) joint offsets from its first waypoint, normalised by ``TrajectoryScaler`` (dataset
statistics kept as buffers, so they travel with the weights). The encoder maps the flattened, normalised
trajectory to the mean and log-variance of z; the decoder maps z back. The loss is the reconstruction MSE in
normalised units plus ``beta`` times KL(q(z | τ) || N(0, I)).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

MIN_SCALE = 0.05  # rad, the smallest per-joint normalisation scale (a joint that never moves must not blow up)


def mlp(sizes: Sequence[int], final_activation: bool = False) -> nn.Sequential:
    """Linear layers of the given sizes with SiLU between them (smooth, so second-order MAML sees curvature)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class TrajectoryScaler(nn.Module):
    """(T, dof) offsets ↔ flat normalised vectors: minus the mean offset per waypoint, over a per-joint scale.

    The scale of a joint is the standard deviation of its final offset over the dataset (at least ``MIN_SCALE``).
    """

    def __init__(self, n_waypoints: int, dof: int):
        super().__init__()
        self.n_waypoints, self.dof = n_waypoints, dof
        self.register_buffer("mean", torch.zeros(n_waypoints, dof))
        self.register_buffer("scale", torch.ones(n_waypoints, dof))

    def set_statistics(self, offsets: Tensor) -> None:
        """Statistics of a dataset of offsets (N, T, dof)."""
        if offsets.ndim != 3 or offsets.shape[1:] != (self.n_waypoints, self.dof) or len(offsets) < 2:
            raise ValueError(f"statistics need offsets of shape (N >= 2, {self.n_waypoints}, {self.dof}), "
                             f"got {tuple(offsets.shape)}")
        self.mean.copy_(offsets.mean(dim=0))
        self.scale.copy_(offsets[:, -1].std(dim=0).clamp_min(MIN_SCALE).expand(self.n_waypoints, -1))

    def normalize(self, offsets: Tensor) -> Tensor:
        """(..., T, dof) offsets in rad → (..., T·dof) normalised."""
        return ((offsets - self.mean) / self.scale).flatten(-2)

    def denormalize(self, flat: Tensor) -> Tensor:
        """(..., T·dof) normalised → (..., T, dof) offsets in rad."""
        return flat.unflatten(-1, (self.n_waypoints, self.dof)) * self.scale + self.mean


class MotorVAE(nn.Module):
    """Encoder τ → (μ, log σ²) of z, decoder z → τ, on normalised joint offsets."""

    def __init__(self, n_waypoints: int, dof: int, latent_dim: int = 8, hidden: Sequence[int] = (256, 256),
                 beta: float = 1e-3):
        super().__init__()
        self.latent_dim, self.beta = latent_dim, beta
        self.scaler = TrajectoryScaler(n_waypoints, dof)
        self.encoder = mlp([n_waypoints * dof, *hidden, 2 * latent_dim])
        self.decoder = mlp([latent_dim, *reversed(hidden), n_waypoints * dof])

    def encode(self, offsets: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z | τ) for offsets (..., T, dof)."""
        mean, log_var = self.encoder(self.scaler.normalize(offsets)).chunk(2, dim=-1)
        return mean, log_var.clamp(-12.0, 6.0)

    def decode(self, z: Tensor) -> Tensor:
        """z → offsets (..., T, dof) in rad."""
        return self.scaler.denormalize(self.decoder(z))

    def loss(self, offsets: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """β-VAE loss on a batch of offsets: (total, reconstruction MSE, mean KL per trajectory)."""
        mean, log_var = self.encode(offsets)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        z = mean + (0.5 * log_var).exp() * noise
        reconstruction = (self.decoder(z) - self.scaler.normalize(offsets)).square().mean()
        kl = 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).sum(dim=-1).mean()
        return reconstruction + self.beta * kl, reconstruction, kl
