"""Forward kinematics in torch: batched, differentiable, float64 by default.

The constant parts of the chain (joint origins, axes, flange) are precomputed once per arm, so a
call costs one small matrix product per joint.
"""

from __future__ import annotations

import torch

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.fk import CompiledChain


class TorchFK(torch.nn.Module):
    """Flange pose as a differentiable function of joint angles for one arm."""

    def __init__(self, arm: Arm, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.dof = arm.dof
        chain = CompiledChain(arm)
        for name in ("base", "origins", "skew", "skew2", "flange"):
            self.register_buffer(name, torch.tensor(getattr(chain, name), dtype=dtype))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """(..., dof) joint angles → (..., 4, 4) flange pose in the world frame."""
        if q.shape[-1] != self.dof:
            raise ValueError(f"expected joint vectors of length {self.dof}, got shape {tuple(q.shape)}")
        q = q.to(self.base.dtype)
        s = torch.sin(q)[..., None, None]
        c = torch.cos(q)[..., None, None]
        eye3 = torch.eye(3, dtype=q.dtype, device=q.device)
        rotations = eye3 + s * self.skew + (1.0 - c) * self.skew2  # (..., dof, 3, 3)
        t = self.base.expand(*q.shape[:-1], 4, 4)
        for i in range(self.dof):
            t = t @ self.origins[i]
            r = t[..., :3, :3] @ rotations[..., i, :, :]
            t = torch.cat([torch.cat([r, t[..., :3, 3:]], dim=-1), t[..., 3:, :]], dim=-2)
        return t @ self.flange

    def position(self, q: torch.Tensor) -> torch.Tensor:
        """(..., dof) → (..., 3) flange position."""
        return self.forward(q)[..., :3, 3]
