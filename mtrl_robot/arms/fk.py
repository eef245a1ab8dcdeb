"""Forward kinematics in numpy, batched over any leading dimensions.

:class:`CompiledChain` precomputes an arm's constant transforms once; hot loops (IK, demo generation)
hold one, and the module functions build one per call.
"""

from __future__ import annotations

import numpy as np

from mtrl_robot.arms.chain import Arm


def skew_matrices(axes: np.ndarray) -> np.ndarray:
    """(n, 3) unit axes → (n, 3, 3) cross-product matrices K, so Rot(axis, θ) = I + sin θ K + (1 − cos θ) K²."""
    k = np.zeros((len(axes), 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axes[:, 2], axes[:, 1], -axes[:, 0]
    k[:, 1, 0], k[:, 2, 0], k[:, 2, 1] = axes[:, 2], -axes[:, 1], axes[:, 0]
    return k


class CompiledChain:
    """One arm's constant chain (base, joint origins with zero offsets, axes, flange), ready for batched FK."""

    def __init__(self, arm: Arm):
        self.arm = arm
        self.base = arm.base_transform()
        self.origins = np.stack([arm.joint_origin(i) for i in range(arm.dof)])
        self.axes = np.stack([np.asarray(j.axis, float) for j in arm.joints])
        self.skew = skew_matrices(self.axes)
        self.skew2 = self.skew @ self.skew
        self.flange = arm.flange_transform()
        # Per joint, (3, 9): a row vector v times it gives v·Oᵀ, v·(OK)ᵀ, v·(OK²)ᵀ (O the origin's rotation), the
        # three terms of the joint's rotation (Rodrigues) applied to v: flange_positions needs one product per joint.
        rotation = self.origins[:, :3, :3]
        self.rodrigues = np.concatenate([rotation, rotation @ self.skew, rotation @ self.skew2],
                                        axis=1).transpose(0, 2, 1)
        # Per joint, the most the flange can be from its axis in any posture (the lengths of the links after it):
        # turning the joints by Δq moves the flange by at most lever_arms · |Δq|.
        lengths = np.linalg.norm(np.vstack([self.origins[1:, :3, 3], self.flange[None, :3, 3]]), axis=1)
        self.lever_arms = np.cumsum(lengths[::-1])[::-1]

    def local_rotations(self, q: np.ndarray) -> np.ndarray:
        """(..., dof) → (..., dof, 3, 3): each joint's origin rotation times its rotation by q, i.e. the rotation of
        its child link in its parent link (the translation is the origin's, ``origins[:, :3, 3]``)."""
        s, c = np.sin(q)[..., None, None], np.cos(q)[..., None, None]
        return self.origins[:, :3, :3] @ (np.eye(3) + s * self.skew + (1.0 - c) * self.skew2)

    def frames(self, q: np.ndarray) -> np.ndarray:
        """World poses of every joint frame and the flange: (..., dof + 1, 4, 4)."""
        local = self.local_rotations(q)
        batch = q.shape[:-1]
        r = np.broadcast_to(self.base[:3, :3], batch + (3, 3))
        p = np.broadcast_to(self.base[:3, 3], batch + (3,))
        frames = np.zeros(batch + (self.arm.dof + 1, 4, 4))
        frames[..., 3, 3] = 1.0
        for i in range(self.arm.dof):
            p = p + r @ self.origins[i, :3, 3]
            r = r @ local[..., i, :, :]
            frames[..., i, :3, :3], frames[..., i, :3, 3] = r, p
        frames[..., -1, :3, :3] = r @ self.flange[:3, :3]
        frames[..., -1, :3, 3] = p + r @ self.flange[:3, 3]
        return frames

    def flange_positions(self, q: np.ndarray) -> np.ndarray:
        """(n, dof) → flange positions (n, 3), without the other frames: the flange's offset carried from the last
        joint back to the base, one (n, 3) × (3, 9) product per joint."""
        s, c = np.sin(q), 1.0 - np.cos(q)
        v = np.broadcast_to(self.flange[:3, 3], (len(q), 3))
        for i in range(self.arm.dof - 1, -1, -1):
            terms = v @ self.rodrigues[i]
            v = self.origins[i, :3, 3] + terms[:, :3] + s[:, i, None] * terms[:, 3:6] + c[:, i, None] * terms[:, 6:]
        return self.base[:3, 3] + v @ self.base[:3, :3].T

    def position_and_jacobian(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., dof) → flange positions (..., 3) and position Jacobians (..., 3, dof)."""
        frames = self.frames(q)
        flange = frames[..., -1, :3, 3]
        axes = np.einsum("...jab,jb->...ja", frames[..., :-1, :3, :3], self.axes)  # (..., dof, 3) in the world
        jac = np.cross(axes, flange[..., None, :] - frames[..., :-1, :3, 3])
        return flange, np.swapaxes(jac, -1, -2)


def joint_frames(arm: Arm, q: np.ndarray) -> np.ndarray:
    """World poses of every joint frame and the flange, (..., dof + 1, 4, 4)."""
    return CompiledChain(arm).frames(arm.check_q(q))


def flange_pose(arm: Arm, q: np.ndarray) -> np.ndarray:
    """World pose of the flange, (..., 4, 4)."""
    return joint_frames(arm, q)[..., -1, :, :]


def flange_position(arm: Arm, q: np.ndarray) -> np.ndarray:
    """World position of the flange, (..., 3)."""
    return flange_pose(arm, q)[..., :3, 3]
