"""The perception node as a real subprocess, fed Image + CameraInfo rendered from the puck scene by this test
process; it must answer with PointStamped messages within millimetres of the puck (see conftest.py for the ROS
environment)."""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import PointStamped
from node_process import NodeProcess
from sensor_msgs.msg import CameraInfo, Image

from mtrl_robot.arms.families import load_family
from mtrl_robot.backends.mujoco_backend import MujocoBackend
from mtrl_robot.ros.conversions import camera_info_msg, image_to_msg, seconds, to_time
from mtrl_robot.ros.perception_node import LOG_THROTTLE
from mtrl_robot.ros.run import node_command
from mtrl_robot.scenes.puck_table import load_scene

NAMESPACE = "/perception_test"
STARTUP_TIMEOUT = 60.0  # s for the node to subscribe (a loaded machine imports torch slowly)
POINT_TIMEOUT = 30.0  # s for a point to come back for a frame (on a loaded machine)
LOG_TIMEOUT = 10.0  # s for a log line to appear
TOLERANCE = 0.005  # m
SCENE = load_scene()
POSITIONS = [(0.45, 0.0), (0.8, -0.35), (0.3, 0.4), (0.92, 0.5)]
FRAME = "overhead_camera_optical_frame"


def render_frames(positions: list[tuple[float, float]]) -> list[np.ndarray]:
    """RGB frames of the overhead camera with the puck at each of ``positions``, and one without it."""
    import mujoco  # after mtrl_robot has chosen offscreen rendering (MUJOCO_GL)

    backend = MujocoBackend(load_family("panda"), scene=SCENE)
    backend.reset()
    model, data = backend.model, backend.data
    qadr = int(model.jnt_qposadr[model.joint("puck").id])
    width, height = SCENE.camera_size
    frames = []
    with mujoco.Renderer(model, height, width) as renderer:
        for xy in [*positions, (3.0, 3.0)]:  # the last one is off the table, out of view
            data.qpos[qadr:qadr + 3] = (*xy, SCENE.table_top + SCENE.puck_height / 2)
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, "overhead")
            frames.append(renderer.render().copy())
    backend.close()
    return frames


class PerceptionProcess(NodeProcess):
    """A perception_node subprocess in :data:`NAMESPACE`, its output in a file."""

    def __init__(self, env: dict[str, str], log_path: Path, parameters: dict[str, str]):
        super().__init__(node_command("perception_node", parameters, NAMESPACE), log_path,
                         {**env, "RCUTILS_LOGGING_BUFFERED_STREAM": "0"})

    def wait_for_output(self, text: str) -> None:
        deadline = time.monotonic() + LOG_TIMEOUT
        while text not in self.output():
            assert time.monotonic() < deadline, f"'{text}' not logged:\n{self.output()}"
            time.sleep(0.05)


class Feed:
    """This process's side: camera publishers, and the points the node sends back, by stamp."""

    def __init__(self, client, node: PerceptionProcess):
        self.client, self.node = client, node
        self.images = client.node.create_publisher(Image, f"{NAMESPACE}/camera/image_raw", 5)
        self.infos = client.node.create_publisher(CameraInfo, f"{NAMESPACE}/camera/camera_info", 5)
        self.points: dict[float, PointStamped] = {}
        self.subscription = client.node.create_subscription(PointStamped, f"{NAMESPACE}/puck_position",
                                                            self._on_point, 10)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while self.images.get_subscription_count() == 0 or self.infos.get_subscription_count() == 0 \
                or client.node.count_publishers(f"{NAMESPACE}/puck_position") == 0:
            if node.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the perception node did not come up (exit code {node.process.poll()}):\n"
                            f"{node.output()}")
            time.sleep(0.1)

    def _on_point(self, msg: PointStamped) -> None:
        self.points[seconds(msg.header.stamp)] = msg

    def publish(self, image: Image, stamp: float, info: bool = True) -> None:
        image.header.stamp = to_time(stamp)
        if info:
            width, height = SCENE.camera_size
            self.infos.publish(camera_info_msg(width, height, SCENE.camera_fovy, to_time(stamp), FRAME))
            time.sleep(0.05)  # the node uses the latest CameraInfo it has
        self.images.publish(image)

    def point(self, image: Image, stamp: float) -> PointStamped:
        """The node's point for ``image`` sent with ``stamp``; sent again every second until it comes."""
        deadline = time.monotonic() + POINT_TIMEOUT
        while stamp not in self.points:
            assert self.node.process.poll() is None, f"the node exited:\n{self.node.output()}"
            assert time.monotonic() < deadline, f"no point for the frame stamped {stamp}:\n{self.node.output()}"
            self.publish(image, stamp)
            wait = time.monotonic() + 1.0
            while stamp not in self.points and time.monotonic() < wait:
                time.sleep(0.02)
        return self.points[stamp]

    def close(self) -> None:
        for entity in (self.images, self.infos):
            self.client.destroy(entity)
        self.client.destroy(self.subscription)


def raw_image(pixels: np.ndarray, encoding: str) -> Image:
    height, width, channels = pixels.shape
    return Image(height=height, width=width, encoding=encoding, step=width * channels,
                 data=np.ascontiguousarray(pixels).tobytes())


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return render_frames(POSITIONS)


@pytest.fixture(scope="module")
def node(ros_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PerceptionProcess]:
    process = PerceptionProcess(ros_env, tmp_path_factory.mktemp("perception") / "perception_node.log",
                                {"target": "puck", "output_topic": "puck_position", "frame_id": "world"})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def feed(node, ros_client):
    feed = Feed(ros_client, node)
    yield feed
    feed.close()


def test_images_before_camera_info_are_skipped(feed, frames):
    feed.publish(image_to_msg(frames[0], to_time(0.0), FRAME), 1.0, info=False)
    feed.node.wait_for_output("no usable CameraInfo yet")
    assert 1.0 not in feed.points


def test_points_within_millimetres_of_the_puck(feed, frames):
    errors = []
    for k, (xy, rgb) in enumerate(zip(POSITIONS, frames, strict=False)):
        point = feed.point(image_to_msg(rgb, to_time(0.0), FRAME), 100.0 + k)
        assert point.header.frame_id == "world"
        assert point.point.z == pytest.approx(SCENE.table_top + SCENE.puck_height / 2)
        errors.append(math.hypot(point.point.x - xy[0], point.point.y - xy[1]))
    print(f"perception_node: mean {1e3 * np.mean(errors):.2f} mm, max {1e3 * np.max(errors):.2f} mm")
    assert max(errors) < TOLERANCE, errors
    bgr = feed.point(raw_image(frames[1][..., ::-1], "bgr8"), 200.0)
    same = feed.points[101.0].point
    assert (bgr.point.x, bgr.point.y) == pytest.approx((same.x, same.y), abs=1e-9)


def test_bad_images_are_logged_and_the_node_keeps_going(feed, frames):
    feed.publish(raw_image(frames[0][..., :1], "mono8"), 300.0)
    feed.node.wait_for_output("unsupported encoding 'mono8'")
    time.sleep(LOG_THROTTLE + 0.2)  # errors are logged at most once per LOG_THROTTLE
    short = image_to_msg(frames[0], to_time(0.0), FRAME)
    short.data = short.data[:1000]
    feed.publish(short, 301.0)
    feed.node.wait_for_output("needs 230400 bytes of data, got 1000")
    time.sleep(LOG_THROTTLE + 0.2)
    feed.publish(image_to_msg(frames[0][::2, ::2], to_time(0.0), FRAME), 302.0)
    feed.node.wait_for_output("image is 160×120 but CameraInfo says 320×240")
    feed.publish(image_to_msg(frames[-1], to_time(0.0), FRAME), 303.0)  # no puck in view
    feed.node.wait_for_output("no puck detected: no pixels in the HSV range")
    point = feed.point(image_to_msg(frames[2], to_time(0.0), FRAME), 304.0)
    assert math.hypot(point.point.x - POSITIONS[2][0], point.point.y - POSITIONS[2][1]) < TOLERANCE
    assert not {300.0, 301.0, 302.0, 303.0} & feed.points.keys()


def test_sigterm_exits_cleanly(feed):
    assert feed.node.stop() == 0
    assert "Traceback" not in feed.node.output(), feed.node.output()


def test_configuration_error_exits_with_a_message(ros_env):
    done = subprocess.run(node_command("perception_node", {"target": "ball"}, "/perception_bad"), env=ros_env,
                          capture_output=True, text=True, timeout=STARTUP_TIMEOUT)
    assert done.returncode == 1, done.stderr
    assert "unknown target 'ball' (configured: puck, goal)" in done.stderr
    assert "Traceback" not in done.stderr
