"""Forward kinematics in numpy, batched over any leading dimensions."""

from __future__ import annotations

import numpy as np

from mtrl_robot.arms.chain import Arm


def _axis_rotations(axis: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rotations about one unit axis for a batch of angles: (...,) → (..., 3, 3)."""
    x, y, z = axis
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    s = np.sin(angles)[..., None, None]
    c = np.cos(angles)[..., None, None]
    return np.eye(3) + s * k + (1.0 - c) * (k @ k)


def joint_frames(arm: Arm, q: np.ndarray) -> np.ndarray:
    """World poses of every joint frame and the flange: (..., dof + 1, 4, 4)."""
    q = arm.check_q(q)
    batch = q.shape[:-1]
    t = np.broadcast_to(arm.base_transform(), batch + (4, 4)).copy()
    frames = []
    for i, joint in enumerate(arm.joints):
        t = t @ arm.joint_origin(i)
        rot = np.zeros(batch + (4, 4))
        rot[..., :3, :3] = _axis_rotations(np.asarray(joint.axis, float), q[..., i])
        rot[..., 3, 3] = 1.0
        t = t @ rot
        frames.append(t)
    frames.append(t @ arm.flange_transform())
    return np.stack(frames, axis=-3)


def flange_pose(arm: Arm, q: np.ndarray) -> np.ndarray:
    """World pose of the flange, (..., 4, 4)."""
    return joint_frames(arm, q)[..., -1, :, :]


def flange_position(arm: Arm, q: np.ndarray) -> np.ndarray:
    """World position of the flange, (..., 3)."""
    return flange_pose(arm, q)[..., :3, 3]


def position_jacobian(arm: Arm, q: np.ndarray) -> np.ndarray:
    """Geometric Jacobian of the flange position, (3, dof), for one joint vector."""
    frames = joint_frames(arm, q)
    p = frames[-1, :3, 3]
    jac = np.empty((3, arm.dof))
    for i, joint in enumerate(arm.joints):
        axis_world = frames[i, :3, :3] @ np.asarray(joint.axis, float)
        jac[:, i] = np.cross(axis_world, p - frames[i, :3, 3])
    return jac
