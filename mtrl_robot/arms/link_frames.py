"""An arm's URDF link frames as the tree of parent → child transforms that robot_state_publisher sends on TF.

The links and joints are those of :func:`~mtrl_robot.arms.urdf.arm_to_urdf`: two fixed transforms (the root link
to the base link, the last joint's child link to the flange link) and one moving transform per joint, whose
translation is the joint origin's and whose rotation depends on the joint position. Rotations are unit quaternions
in ROS order (x, y, z, w).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.fk import CompiledChain
from mtrl_robot.arms.urdf import root_link


def matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices → (..., 4) unit quaternions (x, y, z, w) with w ≥ 0 (Shepperd's method: each
    quaternion from the row of the largest of its four squared components, batched)."""
    m = np.asarray(rotation, dtype=float)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    squares = np.stack([1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22, 1 + m00 + m11 + m22], -1)
    rows = np.stack([  # row k is 4 · q_k · (x, y, z, w)
        np.stack([squares[..., 0], m01 + m10, m02 + m20, m21 - m12], -1),
        np.stack([m01 + m10, squares[..., 1], m12 + m21, m02 - m20], -1),
        np.stack([m02 + m20, m12 + m21, squares[..., 2], m10 - m01], -1),
        np.stack([m21 - m12, m02 - m20, m10 - m01, squares[..., 3]], -1),
    ], -2)
    k = np.argmax(squares, axis=-1)
    best = np.take_along_axis(rows, k[..., None, None], axis=-2)[..., 0, :]
    q = best / (2.0 * np.sqrt(np.take_along_axis(squares, k[..., None], axis=-1)))
    return np.where(q[..., 3:] < 0.0, -q, q)


@dataclass(frozen=True)
class FixedTransform:
    """A transform that never changes: ``child`` in ``parent``."""

    parent: str
    child: str
    translation: np.ndarray  # (3,) m
    quaternion: np.ndarray  # (4,) x, y, z, w


def _fixed(parent: str, child: str, pose: np.ndarray) -> FixedTransform:
    return FixedTransform(parent, child, pose[:3, 3].copy(), matrix_to_quaternion(pose[:3, :3]))


class LinkFrames:
    """The fixed transforms and, for any joint positions, the moving ones of ``arm``'s link tree."""

    def __init__(self, arm: Arm):
        self.arm = arm
        self.chain = CompiledChain(arm)
        self.root = root_link(arm)
        self.fixed = (_fixed(self.root, arm.base_link, self.chain.base),
                      _fixed(arm.joints[-1].child, arm.flange_link, self.chain.flange))
        self.joint_parents = tuple(j.parent for j in arm.joints)
        self.joint_children = tuple(j.child for j in arm.joints)
        self.joint_translations = self.chain.origins[:, :3, 3].copy()  # (dof, 3) m, whatever the positions

    def joint_quaternions(self, q: np.ndarray) -> np.ndarray:
        """(..., dof) joint positions (rad) → (..., dof, 4): each joint's child link rotation in its parent link."""
        return matrix_to_quaternion(self.chain.local_rotations(np.asarray(q, dtype=float)))
