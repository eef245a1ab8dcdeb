"""A simulated arm's description on ROS, as robot_state_publisher gives it for a real arm.

- ``robot_description`` (``std_msgs/String``): the URDF of the exact robot simulated
  (:func:`~mtrl_robot.arms.urdf.arm_to_urdf`), published once, reliable and transient local with depth 1, so a
  subscriber that starts later (RViz2, Foxglove, a recorder) still receives it.
- ``tf_static`` (``tf2_msgs/TFMessage``): the fixed transforms (root → base link, last link → flange), once,
  transient local.
- ``tf`` (``tf2_msgs/TFMessage``): each joint's child link in its parent link, from
  :class:`~mtrl_robot.arms.link_frames.LinkFrames`, stamped with the stamp the caller gives (the joint state's).

Frame names are the URDF's link names. The ``tf`` message is serialized once with marker values; each publication
overwrites the stamps and rotations in a copy of those bytes (:class:`SerializedTransforms`) and publishes them as
they are, so no message object is built per publication.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from std_msgs.msg import Header, String
from tf2_msgs.msg import TFMessage

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.link_frames import LinkFrames
from mtrl_robot.arms.urdf import arm_to_urdf

LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)  # robot_description and tf_static
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)  # as tf2_ros's TransformBroadcaster
_SEC_MARK, _NANOSEC_MARK, _ROTATION_MARK = 0x5EC00000, 0x0A000000, 987654.25  # plus the transform's index (·8)


def transform_msg(parent: str, child: str, translation, quaternion, stamp: Time | None = None) -> TransformStamped:
    """``child`` in ``parent`` as a TransformStamped (translation in m, quaternion x, y, z, w)."""
    x, y, z = (float(v) for v in translation)
    qx, qy, qz, qw = (float(v) for v in quaternion)
    return TransformStamped(header=Header(frame_id=parent, stamp=stamp or Time()), child_frame_id=child,
                            transform=Transform(translation=Vector3(x=x, y=y, z=z),
                                                rotation=Quaternion(x=qx, y=qy, z=qz, w=qw)))


class SerializedTransforms:
    """A serialized ``tf2_msgs/TFMessage`` of fixed frames and translations whose stamps and rotations are filled
    in per publication.

    The byte offsets of the stamps and rotations are found by serializing the message with distinct marker values
    in those fields and locating each marker, which must occur exactly once.
    """

    def __init__(self, parents: tuple[str, ...], children: tuple[str, ...], translations: np.ndarray):
        n = len(parents)
        marks = _ROTATION_MARK + 8.0 * np.arange(n)[:, None] + np.arange(4)  # (n, 4), all distinct
        msg = TFMessage(transforms=[
            transform_msg(parent, child, translation, marks[i],
                          Time(sec=_SEC_MARK + i, nanosec=_NANOSEC_MARK + i))
            for i, (parent, child, translation) in enumerate(zip(parents, children, translations, strict=True))])
        template = serialize_message(msg)

        def offset(mark: bytes) -> int:
            if template.count(mark) != 1:
                raise RuntimeError(f"cannot locate a field of the serialized TFMessage ({template.count(mark)} "
                                   "places hold its marker value)")
            return template.index(mark)

        def offsets(values: np.ndarray) -> np.ndarray:
            return np.array([offset(v.tobytes()) for v in values.reshape(-1)]).reshape(values.shape)

        self._rotations = offsets(marks)[..., None] + np.arange(8)  # (n, 4, 8) byte indices
        self._secs = offsets(np.arange(n, dtype=np.int32) + np.int32(_SEC_MARK))[:, None] + np.arange(4)
        self._nanosecs = offsets(np.arange(n, dtype=np.uint32) + np.uint32(_NANOSEC_MARK))[:, None] + np.arange(4)
        self._buffer = np.frombuffer(bytearray(template), dtype=np.uint8)

    def fill(self, stamp: Time, quaternions: np.ndarray) -> bytes:
        """The message with every transform stamped ``stamp`` and rotated by ``quaternions`` (n, 4), serialized."""
        self._buffer[self._secs] = np.frombuffer(np.int32(stamp.sec).tobytes(), np.uint8)
        self._buffer[self._nanosecs] = np.frombuffer(np.uint32(stamp.nanosec).tobytes(), np.uint8)
        self._buffer[self._rotations] = np.ascontiguousarray(quaternions, dtype=np.float64).view(np.uint8).reshape(
            self._rotations.shape)
        return self._buffer.tobytes()


class RobotDescriptionPublisher:
    """Publishes ``arm``'s URDF and fixed frames on creation, and its moving frames on :meth:`publish_frames`."""

    def __init__(self, node: Node, arm: Arm):
        self.frames = LinkFrames(arm)
        self._description = node.create_publisher(String, "robot_description", LATCHED_QOS)
        self._description.publish(String(data=arm_to_urdf(arm)))
        self._static = node.create_publisher(TFMessage, "tf_static", LATCHED_QOS)
        stamp = node.get_clock().now().to_msg()
        self._static.publish(TFMessage(transforms=[transform_msg(f.parent, f.child, f.translation, f.quaternion, stamp)
                                                   for f in self.frames.fixed]))
        self._tf = node.create_publisher(TFMessage, "tf", TF_QOS)
        self._moving = SerializedTransforms(self.frames.joint_parents, self.frames.joint_children,
                                            self.frames.joint_translations)

    def publish_frames(self, positions: np.ndarray, stamp: Time) -> None:
        """Publish the moving links' frames at joint ``positions`` (the arm's joint order), stamped ``stamp``."""
        self._tf.publish(self._moving.fill(stamp, self.frames.joint_quaternions(positions)))
