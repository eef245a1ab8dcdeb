"""Pretraining the generative motor model on one joint set: first the β-VAE on trajectories, then target → z.

1. **VAE.** Normalisation statistics from the demos, then Adam on the β-VAE loss (reconstruction + β KL).
2. **Policy.** The target policy is trained on the reaching loss -- MSE between decoder(policy(target)) and
   the demo, in normalised units -- while the VAE keeps training on its own loss, so that encoder and decoder
   stay a VAE while the decoder also serves the policy. The step size decays along a cosine.

The demos are the nominal robot's (``source: nominal``) or every training robot's (``source: population``, the
multi-task baseline). Both stages draw batches from one seeded generator, so a pretraining run is repeatable.
Demos of arms with fewer joints than the model has columns are padded (NaN), and every loss leaves the padding out
(:mod:`~mtrl_robot.models.joint_padding`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.progress import progress_bar
from mtrl_robot.core.torch_files import CheckpointError, load_torch_file
from mtrl_robot.learning.reaching.presets import ModelConfig, PretrainConfig
from mtrl_robot.models.joint_padding import masked_mse
from mtrl_robot.models.policy import ReachingModel, TargetPolicy
from mtrl_robot.models.trajectory_vae import OffsetScaler, TrajectoryVAE

LogFn = Callable[[str, int, float], None]  # (stage, step, loss)


def build_model(config: ModelConfig, n_waypoints: int, dof: int, task_dim: int = 0,
                seed: int = 0, code_dim: int = 0) -> tuple[TrajectoryVAE, ReachingModel]:
    """A fresh VAE and the reaching model sharing its decoder, initialised from ``seed`` (``code_dim``: the width of
    a family code beside the target)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = TrajectoryVAE(OffsetScaler(n_waypoints, dof), config.latent_dim, config.vae_hidden, config.beta)
        policy = TargetPolicy(config.latent_dim, config.policy_hidden, task_dim, code_dim)
    return vae, ReachingModel(vae, policy)


def pretrain(targets: Tensor, offsets: Tensor, model_config: ModelConfig, config: PretrainConfig,
             task_dim: int = 0, progress: bool = True, log: LogFn | None = None) -> tuple[TrajectoryVAE, ReachingModel]:
    """Train the VAE on ``offsets`` (N, T, dof; NaN columns: padding), then the policy on ``targets`` (N, 3, or
    N, 3 + code width: each demo's family code after its target) → offsets (VAE alongside)."""
    if len(targets) < 2 or len(targets) != len(offsets):
        raise ValueError(f"pretraining needs at least 2 demos with one target each, got {len(targets)} targets "
                         f"and {len(offsets)} trajectories")
    vae, model = build_model(model_config, offsets.shape[1], offsets.shape[2], task_dim, config.seed,
                             targets.shape[1] - 3)
    vae.normalizer.set_statistics(offsets)
    model.policy.set_statistics(targets[:, :3])
    y = model.normalize(offsets)
    reaching_loss = masked_mse if y.isnan().any() else F.mse_loss
    generator = torch.Generator().manual_seed(config.seed)
    batch = min(config.batch_size, len(targets))
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.lr, foreach=True)
    for step in progress_bar(range(config.vae_steps), desc="pretrain vae", unit="step", disable=not progress,
                             leave=False):
        index = torch.randint(len(offsets), (batch,), generator=generator)
        loss, _, _ = vae.loss(y[index], generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if log:
            log("vae", step, loss.item())

    optimizer = torch.optim.Adam([*vae.parameters(), *model.policy.parameters()], lr=config.lr, foreach=True)
    for step in progress_bar(range(config.policy_steps), desc="pretrain policy", unit="step", disable=not progress,
                     leave=False):
        for group in optimizer.param_groups:
            group["lr"] = cosine(config.lr, config.lr * 1e-2, step, config.policy_steps)
        index = torch.randint(len(targets), (batch,), generator=generator)
        trajectories = y[index]
        reaching = reaching_loss(model(model.inputs(targets[index])), trajectories)
        loss = reaching + vae.loss(trajectories, generator)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if log:
            log("policy", step, reaching.item())
    return vae, model


def cosine(start: float, end: float, step: int, total: int) -> float:
    """Step size at ``step`` of a cosine decay from ``start`` to ``end`` over ``total`` steps."""
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def save_pretrained(path: Path, vae: TrajectoryVAE, model: ReachingModel) -> Path:
    """Write a pretrained VAE and reaching model atomically (read back by :func:`load_pretrained`)."""
    return write_atomic(path, lambda f: torch.save({"vae": vae.state_dict(), "model": model.state_dict()}, f))


def load_pretrained(path: Path, vae: TrajectoryVAE, model: ReachingModel, what: str) -> ReachingModel:
    """Load a file of :func:`save_pretrained` into ``vae`` and ``model`` (built to the same sizes); returns ``model``.

    ``CheckpointError`` naming the file and ``what`` it should be when it is unreadable or does not fit.
    """
    state = load_torch_file(path, what)
    try:
        vae.load_state_dict(state["vae"])
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a {what} of this preset ({e}); delete it to train it again") from e
    return model
