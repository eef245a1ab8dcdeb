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
from rcl_interfaces.msg import Log
from ros_events import Messages, logged, matched_publisher
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
RESEND = 1.0  # s to wait for the node's answer before sending a frame again (the topics are best-effort)
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

class Feed:
    """This process's side: camera publishers, the points the node sends back (by stamp) and its log lines."""

    def __init__(self, client, node: PerceptionProcess, log: Messages[Log]):
        self.client, self.node, self.log = client, node, log
        self.received: Messages[PointStamped] = Messages()
        self.subscription = client.node.create_subscription(PointStamped, f"{NAMESPACE}/puck_position",
                                                            self.received, 10)
        try:  # the node subscribes to the camera once it has started
            self.images = matched_publisher(client.node, Image, f"{NAMESPACE}/camera/image_raw", STARTUP_TIMEOUT, 5)
            self.infos = matched_publisher(client.node, CameraInfo, f"{NAMESPACE}/camera/camera_info",
                                           STARTUP_TIMEOUT, 5)
        except AssertionError as exc:
            pytest.fail(f"the perception node did not come up (exit code {node.process.poll()}): {exc}\n"
                        f"{node.output()}")

    @property
    def points(self) -> dict[float, PointStamped]:
        return {seconds(msg.header.stamp): msg for msg in self.received.messages}

    def publish(self, image: Image, stamp: float, info: bool = True) -> None:
        """``image`` stamped ``stamp``, after a CameraInfo with the same stamp unless ``info`` is False (the node uses
        the latest it has; both topics are best-effort, so callers resend until the node answers)."""
        image.header.stamp = to_time(stamp)
        if info:
            width, height = SCENE.camera_size
            self.infos.publish(camera_info_msg(width, height, SCENE.camera_fovy, to_time(stamp), FRAME))
        self.images.publish(image)

    def point(self, image: Image, stamp: float) -> PointStamped:
        """The node's point for ``image`` sent with ``stamp``; sent again every ``RESEND`` s until it comes."""
        deadline = time.monotonic() + POINT_TIMEOUT
        while True:
            assert self.node.process.poll() is None, f"the node exited:\n{self.node.output()}"
            self.publish(image, stamp)
            try:
                return self.received.wait_for(lambda msg: seconds(msg.header.stamp) == stamp, RESEND,
                                              what=f"point for the frame stamped {stamp}")
            except AssertionError:
                assert time.monotonic() < deadline, f"no point for the frame stamped {stamp}:\n{self.node.output()}"

    def resend_until_logged(self, image: Image, stamp: float, text: str, info: bool = True) -> None:
        """Send ``image`` every ``RESEND`` s until the node logs ``text`` (it logs each kind of problem at most once
        per ``LOG_THROTTLE``)."""
        deadline = time.monotonic() + LOG_THROTTLE + LOG_TIMEOUT
        while True:
            start = len(self.log)
            self.publish(image, stamp, info)
            try:
                logged(self.log, text, RESEND, start)
                return
            except AssertionError:
                assert time.monotonic() < deadline, f"'{text}' not logged:\n{self.node.output()}"

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
def feed(node, ros_client, ros_log):
    feed = Feed(ros_client, node, ros_log)
    yield feed
    feed.close()


def test_images_before_camera_info_are_skipped(feed, frames):
    feed.resend_until_logged(image_to_msg(frames[0], to_time(0.0), FRAME), 1.0, "no usable CameraInfo yet",
                             info=False)
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
    feed.resend_until_logged(raw_image(frames[0][..., :1], "mono8"), 300.0, "unsupported encoding 'mono8'")
    short = image_to_msg(frames[0], to_time(0.0), FRAME)
    short.data = short.data[:1000]
    feed.resend_until_logged(short, 301.0, "needs 230400 bytes of data, got 1000")
    feed.resend_until_logged(image_to_msg(frames[0][::2, ::2], to_time(0.0), FRAME), 302.0,
                             "image is 160×120 but CameraInfo says 320×240")
    feed.resend_until_logged(image_to_msg(frames[-1], to_time(0.0), FRAME), 303.0,  # no puck in view
                             "no puck detected: no pixels in the HSV range")
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
