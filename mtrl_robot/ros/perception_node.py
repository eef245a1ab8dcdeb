"""The perception node: a coloured blob in camera images, placed on the table plane.

Interfaces (relative names, so a namespace or remapping applies):

- subscribes ``camera/image_raw`` (``sensor_msgs/Image``: rgb8, bgr8, rgba8 or bgra8) and
  ``camera/camera_info`` (``sensor_msgs/CameraInfo``; the latest one is used for every image);
- publishes ``output_topic`` (``geometry_msgs/PointStamped``), the blob's centre on the plane
  z = ``plane_height`` in ``frame_id``, stamped with the image's stamp.

Colour presets, the table height and the camera's extrinsics come from ``config_file``
(:func:`~mtrl_robot.perception.colour_blob.load_perception_config`); parameters override them. Images that cannot
be used (unknown encoding, short data, size unlike the CameraInfo's, no CameraInfo yet) and frames without the
blob publish nothing and are logged, at most once per ``LOG_THROTTLE`` per kind of message.
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace

from geometry_msgs.msg import PointStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from mtrl_robot.core.errors import ConfigError
from mtrl_robot.perception.colour_blob import CameraModel, CameraPose, back_project_to_plane, load_perception_config
from mtrl_robot.ros.conversions import image_from_msg
from mtrl_robot.ros.parameters import TopicName, declare_parameters
from mtrl_robot.ros.run import run_node

LOG_THROTTLE = 2.0  # s between repeated log messages about skipped frames

PARAMETERS = {  # name: (default, or the type of a parameter that is unset by default, description)
    "config_file": ("", "Perception YAML with colour presets and camera extrinsics (empty: the package's default)"),
    "target": ("puck", "Colour preset of config_file to look for (e.g. puck, goal)"),
    "hsv_low": (Parameter.Type.INTEGER_ARRAY, "Lower HSV bound [H 0-179, S, V 0-255] (unset: the preset's)"),
    "hsv_high": (Parameter.Type.INTEGER_ARRAY, "Upper HSV bound; H below hsv_low's wraps around red (unset: preset)"),
    "plane_height": (Parameter.Type.DOUBLE, "z in m of the plane the blob's centre lies in (unset: table height "
                                            "plus the preset's height)"),
    "camera_xyz": (Parameter.Type.DOUBLE_ARRAY, "Camera optical frame position [x, y, z] in m in frame_id "
                                                "(unset: config_file's)"),
    "camera_rpy": (Parameter.Type.DOUBLE_ARRAY, "Camera optical frame (z forward, x right, y down) orientation "
                                                "[roll, pitch, yaw] in rad in frame_id (unset: config_file's)"),
    "output_topic": ("perception/point", "Topic of the geometry_msgs/PointStamped output", TopicName()),
    "frame_id": ("", "Frame of the extrinsics, the plane and the output (empty: config_file's)"),
}


def _vector(value: list[float] | None, fallback: tuple[float, float, float], name: str) -> tuple[float, ...]:
    if value is None:
        return fallback
    if len(value) != 3 or not all(math.isfinite(v) for v in value):
        raise ConfigError(None, name, f"expected 3 finite numbers, got {list(value)}")
    return tuple(value)


class PerceptionNode(Node):
    """Colour-blob detection on images, back-projected onto the table plane."""

    def __init__(self) -> None:
        super().__init__("perception_node")
        p = declare_parameters(self, PARAMETERS)
        config = load_perception_config(p["config_file"] or None)
        self.target = p["target"]
        self.detector = config.detector(self.target, p["hsv_low"], p["hsv_high"])
        self.plane_z = config.plane_z(self.target) if p["plane_height"] is None else p["plane_height"]
        if not math.isfinite(self.plane_z):
            raise ConfigError(None, "plane_height", f"must be finite, got {self.plane_z}")
        self.config = replace(config, frame_id=p["frame_id"] or config.frame_id, camera=CameraPose(
            _vector(p["camera_xyz"], config.camera.position, "camera_xyz"),
            _vector(p["camera_rpy"], config.camera.rpy, "camera_rpy")))
        self.camera: CameraModel | None = None
        self._points = self.create_publisher(PointStamped, p["output_topic"], 10)
        self.create_subscription(CameraInfo, "camera/camera_info", self._on_camera_info, qos_profile_sensor_data)
        self.create_subscription(Image, "camera/image_raw", self._on_image, qos_profile_sensor_data)
        self.get_logger().info(f"looking for '{self.target}' (HSV {self.detector.hsv_low}..{self.detector.hsv_high}) "
                               f"on z = {self.plane_z:g} m in '{self.config.frame_id}', publishing on "
                               f"{self._points.topic_name}")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self.camera = self.config.camera_model(msg.width, msg.height, msg.k)
        except ValueError as exc:
            self.camera = None
            self.get_logger().error(f"unusable CameraInfo: {exc}", throttle_duration_sec=LOG_THROTTLE)

    def _on_image(self, msg: Image) -> None:
        camera = self.camera
        if camera is None:
            self.get_logger().warning("no usable CameraInfo yet; skipping images", throttle_duration_sec=LOG_THROTTLE)
            return
        try:
            if (msg.width, msg.height) != (camera.width, camera.height):
                raise ValueError(f"image is {msg.width}×{msg.height} but CameraInfo says {camera.width}×"
                                 f"{camera.height}")
            blob, reason = self.detector.detect(image_from_msg(msg), msg.encoding)
            point = None if blob is None else back_project_to_plane(blob.centroid, camera, self.plane_z)
        except ValueError as exc:
            self.get_logger().error(f"skipping image: {exc}", throttle_duration_sec=LOG_THROTTLE)
            return
        if point is None:
            self.get_logger().info(f"no {self.target} detected: {reason}", throttle_duration_sec=LOG_THROTTLE)
            return
        out = PointStamped()
        out.header.stamp = msg.header.stamp
        out.header.frame_id = self.config.frame_id
        out.point.x, out.point.y, out.point.z = (float(v) for v in point)
        self._points.publish(out)


def main(args: list[str] | None = None) -> int:
    """Run until SIGINT or SIGTERM (exit code 0); exit code 1 on a configuration error."""
    return run_node("perception_node", PerceptionNode, SingleThreadedExecutor, args)


if __name__ == "__main__":
    sys.exit(main())
