"""Forward kinematics in torch: batched, differentiable, float64 by default.

The constant parts of the chain (joint origins, axes, flange) are precomputed once per arm, so a
call costs one small matrix product per joint. :class:`TorchFK` is one arm; :class:`StackedFK` is several arms
(e.g. the robots of a meta-batch) at once, their constants stacked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.fk import CompiledChain

_CONSTANTS = ("base", "origins", "skew", "skew2", "flange")


def _flange_pose(q: torch.Tensor, base: torch.Tensor, origins: torch.Tensor, skew: torch.Tensor,
                 skew2: torch.Tensor, flange: torch.Tensor) -> torch.Tensor:
    """(..., dof) joint angles → (..., 4, 4) flange pose; the constants (``CompiledChain``'s, with leading dimensions
    that broadcast against q's) are base and flange (..., 4, 4), origins (..., dof, 4, 4), skew and skew2
    (..., dof, 3, 3)."""
    s = torch.sin(q)[..., None, None]
    c = torch.cos(q)[..., None, None]
    eye3 = torch.eye(3, dtype=q.dtype, device=q.device)
    rotations = eye3 + s * skew + (1.0 - c) * skew2  # (..., dof, 3, 3)
    t = base.expand(*q.shape[:-1], 4, 4)
    for i in range(q.shape[-1]):
        t = t @ origins[..., i, :, :]
        r = t[..., :3, :3] @ rotations[..., i, :, :]
        t = torch.cat([torch.cat([r, t[..., :3, 3:]], dim=-1), t[..., 3:, :]], dim=-2)
    return t @ flange


class TorchFK(torch.nn.Module):
    """Flange pose as a differentiable function of joint angles for one arm."""

    def __init__(self, arm: Arm, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.dof = arm.dof
        chain = CompiledChain(arm)
        for name in _CONSTANTS:
            self.register_buffer(name, torch.tensor(getattr(chain, name), dtype=dtype))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """(..., dof) joint angles → (..., 4, 4) flange pose in the world frame."""
        if q.shape[-1] != self.dof:
            raise ValueError(f"expected joint vectors of length {self.dof}, got shape {tuple(q.shape)}")
        q = q.to(self.base.dtype)
        return _flange_pose(q, *(getattr(self, name) for name in _CONSTANTS))

    def position(self, q: torch.Tensor) -> torch.Tensor:
        """(..., dof) → (..., 3) flange position."""
        return self.forward(q)[..., :3, 3]


class StackedFK(torch.nn.Module):
    """Flange positions of several arms in one batched call, differentiable in the joint angles.

    Each arm's joints fill the first of ``dof`` columns (the most joints of the arms) in the arm's own joint order;
    the columns an arm does not have are fixed joints (identity origin, no rotation) whose angles are ignored,
    whatever their value (NaN included).
    """

    def __init__(self, arms: Sequence[Arm], dtype: torch.dtype = torch.float64):
        super().__init__()
        if not arms:
            raise ValueError("StackedFK needs at least one arm")
        self.dof = max(arm.dof for arm in arms)
        constants = {name: [] for name in _CONSTANTS}
        for arm in arms:
            chain, missing = CompiledChain(arm), self.dof - arm.dof
            constants["base"].append(chain.base)
            constants["flange"].append(chain.flange)
            constants["origins"].append(np.concatenate([chain.origins, np.broadcast_to(np.eye(4), (missing, 4, 4))]))
            for name in ("skew", "skew2"):
                constants[name].append(np.concatenate([getattr(chain, name), np.zeros((missing, 3, 3))]))
        for name, values in constants.items():
            self.register_buffer(name, torch.tensor(np.stack(values), dtype=dtype))
        self.register_buffer("joints", torch.arange(self.dof) < torch.tensor([arm.dof for arm in arms])[:, None])

    def position(self, q: torch.Tensor, arms: torch.Tensor) -> torch.Tensor:
        """(n, m, dof) joint angles, the m configurations of arm ``arms[i]`` (n indices into the arms given) →
        (n, m, 3) flange positions."""
        if q.ndim != 3 or q.shape[-1] != self.dof or arms.shape != q.shape[:1]:
            raise ValueError(f"expected joint angles (n, m, {self.dof}) and n arm indices, got shapes "
                             f"{tuple(q.shape)} and {tuple(arms.shape)}")
        q = torch.where(self.joints[arms, None, :], q.to(self.base.dtype), 0.0)
        constants = (getattr(self, name)[arms, None] for name in _CONSTANTS)
        return _flange_pose(q, *constants)[..., :3, 3]
