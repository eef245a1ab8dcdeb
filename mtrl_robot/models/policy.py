"""Policies: target position → latent z (reaching), the reaching model (that policy, then the VAE decoder), and the
Gaussian policy of puck hitting's policy-gradient meta-learning."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtrl_robot.models.joint_padding import pad_joints
from mtrl_robot.models.mlp import mlp
from mtrl_robot.models.trajectory_vae import TrajectoryVAE

MIN_TARGET_SCALE = 1e-3  # m, the smallest per-axis normalisation scale of targets
LOG_STD_MIN = -5.0  # floor of the Gaussian policy's log standard deviation


class TargetPolicy(nn.Module):
    """Target xyz (m), normalised with buffered dataset statistics, → latent z of the motor VAE.

    With ``task_dim`` > 0 the input is ``cat(target, task latent)`` (probabilistic MAML's task variable); with
    ``code_dim`` > 0 (a model across families) ``cat(target, family code, …)``, the code a one-hot of the arm family
    kept in the ``code`` buffer for the family the model acts for (zeros: a family not trained on). Only the target
    part is normalised.
    """

    def __init__(self, latent_dim: int, hidden: Sequence[int] = (256, 256, 256), task_dim: int = 0,
                 code_dim: int = 0):
        super().__init__()
        self.task_dim, self.code_dim = task_dim, code_dim
        self.register_buffer("target_mean", torch.zeros(3))
        self.register_buffer("target_scale", torch.ones(3))
        if code_dim:
            self.register_buffer("code", torch.zeros(code_dim))
        self.body = mlp([3 + code_dim + task_dim, *hidden], final_activation=True)
        self.head = nn.Linear(hidden[-1], latent_dim)

    def set_statistics(self, targets: Tensor) -> None:
        """Normalisation from a dataset of targets (N, 3)."""
        if targets.ndim != 2 or targets.shape[1] != 3 or len(targets) < 2:
            raise ValueError(f"statistics need targets of shape (N >= 2, 3), got {tuple(targets.shape)}")
        self.target_mean.copy_(targets.mean(dim=0))
        self.target_scale.copy_(targets.std(dim=0).clamp_min(MIN_TARGET_SCALE))

    def forward(self, x: Tensor) -> Tensor:
        target = (x[..., :3] - self.target_mean) / self.target_scale
        return self.head(self.body(torch.cat([target, x[..., 3:]], dim=-1)))


class ReachingModel(nn.Module):
    """Target (m) → normalised flat trajectory: the policy, then the VAE's decoder and scaler (shared, not copied)."""

    def __init__(self, vae: TrajectoryVAE, policy: TargetPolicy):
        super().__init__()
        self.policy = policy
        self.decoder = vae.decoder
        self.scaler = vae.normalizer

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.policy(x))

    def condition(self, targets: Tensor) -> Tensor:
        """Targets (..., 3) → what the policy takes before any task latent: with a family code, ``cat(target,
        code)`` (the learner's inputs)."""
        if self.policy.code_dim == 0:
            return targets
        return torch.cat([targets, self.policy.code.expand(*targets.shape[:-1], -1)], dim=-1)

    def inputs(self, targets: Tensor, task: Tensor | None = None) -> Tensor:
        """The model's input for targets (..., 3): with a task latent, ``cat(target, task)`` (zeros: the prior)."""
        if self.policy.task_dim == 0:
            return targets
        task = targets.new_zeros(self.policy.task_dim) if task is None else task
        return torch.cat([targets, task.expand(*targets.shape[:-1], -1)], dim=-1)

    def normalize(self, offsets: Tensor) -> Tensor:
        """(..., T, dof) joint offsets → (..., T·columns), the units of ``forward``; an arm with fewer joints than
        the model has columns is padded (NaN, :mod:`~mtrl_robot.models.joint_padding`)."""
        return self.scaler.normalize(pad_joints(offsets, self.scaler.dof))

    def offsets(self, flat: Tensor, dof: int | None = None) -> Tensor:
        """``forward``'s output → (..., T, dof) joint offsets from the start posture, rad: the first ``dof``
        columns (default: all)."""
        return self.scaler.denormalize(flat)[..., :dof]


class GaussianPolicy(nn.Module):
    """obs → N(tanh(MLP(obs)), diag(σ²)): a mean inside the unit box and a state-independent spread σ."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (64, 64), init_std: float = 0.3):
        super().__init__()
        if not init_std > 0:
            raise ValueError(f"init_std must be positive, got {init_std}")
        self.body = mlp([obs_dim, *hidden, act_dim], activation=nn.Tanh)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Mean (…, act_dim) in (−1, 1) and log standard deviation (act_dim,)."""
        return torch.tanh(self.body(obs)), self.log_std.clamp_min(LOG_STD_MIN)
