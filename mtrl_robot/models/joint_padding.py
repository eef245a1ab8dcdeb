"""Arms with different joint counts in one model: joint columns padded to the widest arm, padding ignored.

A model across families has as many joint columns as the arm with the most joints; an arm with fewer fills its
first columns (joints by position) and the rest are padding. Padding is NaN in the offsets a model learns from:
normalised, it stays NaN, and :func:`masked_mse` leaves it out of every loss (pretraining, meta-training,
adaptation, fine-tuning), so nothing is learned about joints an arm does not have; when a model's output is turned
back into a trajectory for an arm, only that arm's columns are kept.
"""

from __future__ import annotations

import torch
from torch import Tensor


def pad_joints(offsets: Tensor, columns: int) -> Tensor:
    """(..., dof) → (..., columns): the missing joints' columns NaN (``columns`` >= dof)."""
    missing = columns - offsets.shape[-1]
    if missing < 0:
        raise ValueError(f"{offsets.shape[-1]} joints do not fit a model of {columns} joint columns")
    if missing == 0:
        return offsets
    return torch.cat([offsets, offsets.new_full((*offsets.shape[:-1], missing), float("nan"))], dim=-1)


def masked_mse(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over the entries of ``target`` that are not NaN (the padding)."""
    known = ~target.isnan()
    return torch.where(known, prediction - target.nan_to_num(), 0.0).square().sum() / known.sum()


def nan_statistics(values: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and (n − 1) standard deviation over the first dimension, leaving NaN entries out."""
    known = ~values.isnan()
    count = known.sum(dim=0)
    mean = values.nan_to_num().sum(dim=0) / count
    spread = torch.where(known, values - mean, 0.0).square().sum(dim=0) / (count - 1).clamp_min(1)
    return mean, spread.sqrt()
