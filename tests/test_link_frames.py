"""The link frames an arm publishes on TF: quaternions, the tree composed back to the flange, the serialized message."""

from __future__ import annotations

import numpy as np
import pytest
from arm_variants import perturbed
from scipy.spatial.transform import Rotation

from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import flange_pose
from mtrl_robot.arms.link_frames import LinkFrames, matrix_to_quaternion


def test_quaternions_match_scipy_including_half_turns():
    rotations = Rotation.concatenate([Rotation.random(2000, random_state=0),
                                      Rotation.from_rotvec(np.pi * np.eye(3)),
                                      Rotation.from_rotvec(np.pi * np.array([[1.0, 1.0, 0.0]]) / np.sqrt(2))])
    expected = rotations.as_quat()  # x, y, z, w
    expected *= np.where(expected[:, 3:] < 0, -1.0, 1.0)
    got = matrix_to_quaternion(rotations.as_matrix())
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-12)


def pose(translation, quaternion) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = Rotation.from_quat(quaternion).as_matrix(), translation
    return t


@pytest.mark.parametrize("family", ["panda", "gen3", "yumi", "baxter"])
def test_the_tree_composed_from_the_root_is_the_flange_pose(family):
    arm = perturbed(load_family(family))
    frames = LinkFrames(arm)
    q = np.random.default_rng(1).uniform(arm.lower, arm.upper, (5, arm.dof))
    quaternions = frames.joint_quaternions(q)
    base, flange = frames.fixed
    assert (base.parent, base.child, flange.child) == ("world", arm.base_link, arm.flange_link)
    for k in range(len(q)):
        composed = pose(base.translation, base.quaternion)
        for i in range(arm.dof):
            composed = composed @ pose(frames.joint_translations[i], quaternions[k, i])
        composed = composed @ pose(flange.translation, flange.quaternion)
        np.testing.assert_allclose(composed, flange_pose(arm, q[k]), atol=1e-12)


def test_the_serialized_message_equals_the_one_built_field_by_field():
    from builtin_interfaces.msg import Time
    from rclpy.serialization import deserialize_message
    from tf2_msgs.msg import TFMessage

    from mtrl_robot.ros.robot_description import SerializedTransforms, transform_msg

    arm = perturbed(load_family("gen3"))
    frames = LinkFrames(arm)
    moving = SerializedTransforms(frames.joint_parents, frames.joint_children, frames.joint_translations)
    for k in range(3):
        quaternions = frames.joint_quaternions(np.random.default_rng(k).uniform(arm.lower, arm.upper))
        stamp = Time(sec=1_765_000_000 + k, nanosec=123_456_789 * k)
        built = TFMessage(transforms=[transform_msg(*args, stamp) for args in zip(
            frames.joint_parents, frames.joint_children, frames.joint_translations, quaternions, strict=True)])
        assert deserialize_message(moving.fill(stamp, quaternions), TFMessage) == built
