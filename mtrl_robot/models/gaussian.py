"""Diagonal Gaussian latents: an encoder's output split into mean and (clamped) log-variance, and the KL to N(0, I)."""

from __future__ import annotations

from torch import Tensor

LOG_VAR_RANGE = (-12.0, 6.0)  # clamp of every predicted log-variance: σ from 2.5e-3 to 20


def split_gaussian(output: Tensor) -> tuple[Tensor, Tensor]:
    """An output of 2·d features → the mean and the clamped log-variance of a diagonal Gaussian over d variables."""
    mean, log_var = output.chunk(2, dim=-1)
    return mean, log_var.clamp(*LOG_VAR_RANGE)


def kl_to_standard_normal(mean: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)), summed over the last dimension and averaged over the rest."""
    return 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).sum(dim=-1).mean()
