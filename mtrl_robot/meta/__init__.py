"""Meta-learning algorithms in plain torch: MAML, first-order MAML, Meta-SGD step sizes, a probabilistic variant and
policy-gradient MAML."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from mtrl_robot.meta.maml import MAML, LossFn, MAMLConfig, TaskBatch, read_checkpoint
from mtrl_robot.meta.probabilistic import ProbabilisticMAML

__all__ = ["MAML", "MAMLConfig", "ProbabilisticMAML", "TaskBatch", "make_meta_learner", "read_checkpoint"]


def make_meta_learner(model: nn.Module, config: MAMLConfig, loss_fn: LossFn = F.mse_loss,
                      x_dim: int | None = None, y_dim: int | None = None) -> MAML:
    """``MAML``, or ``ProbabilisticMAML`` when ``config.latent_dim > 0`` (which needs the x and y widths)."""
    if config.latent_dim == 0:
        return MAML(model, loss_fn, config)
    if x_dim is None or y_dim is None:
        raise ValueError("config.latent_dim > 0 selects ProbabilisticMAML, which needs x_dim and y_dim")
    return ProbabilisticMAML(model, x_dim, y_dim, loss_fn, config)
