"""Forward kinematics in torch: batched, differentiable, float64 by default.

The constant parts of the chain (joint origins, axes, flange) are precomputed once per arm, so a
call costs one small matrix product per joint.
"""

from __future__ import annotations

import numpy as np
import torch

from mtrl_robot.arms.chain import Arm


class TorchFK(torch.nn.Module):
    """Flange pose as a differentiable function of joint angles for one arm."""

    def __init__(self, arm: Arm, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.dof = arm.dof
        origins = np.stack([arm.joint_origin(i) for i in range(arm.dof)])
        axes = np.stack([np.asarray(j.axis, float) for j in arm.joints])
        skew = np.zeros((arm.dof, 3, 3))
        skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -axes[:, 2], axes[:, 1], -axes[:, 0]
        skew[:, 1, 0], skew[:, 2, 0], skew[:, 2, 1] = axes[:, 2], -axes[:, 1], axes[:, 0]
        self.register_buffer("base", torch.tensor(arm.base_transform(), dtype=dtype))
        self.register_buffer("origins", torch.tensor(origins, dtype=dtype))
        self.register_buffer("skew", torch.tensor(skew, dtype=dtype))
        self.register_buffer("skew2", torch.tensor(skew @ skew, dtype=dtype))
        self.register_buffer("flange", torch.tensor(arm.flange_transform(), dtype=dtype))

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
