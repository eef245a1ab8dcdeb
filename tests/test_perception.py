"""Colour-blob perception on rendered MuJoCo images: the puck found from the overhead camera within millimetres,
camera conventions, ray–plane geometry and configuration errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mtrl_robot.arms.families import load_family
from mtrl_robot.backends.mujoco_backend import MujocoBackend
from mtrl_robot.backends.mujoco_model import add_lights, new_spec
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.paths import data_dir
from mtrl_robot.perception.colour_blob import (
    MUJOCO_TO_OPTICAL,
    CameraModel,
    ColourBlobDetector,
    back_project_to_plane,
    camera_from_mujoco,
    load_perception_config,
    locate,
    rotation_from_rpy,
)
from mtrl_robot.scenes.puck_table import load_scene

SCENE = load_scene()
CONFIG = load_perception_config()
TOLERANCE = 0.005  # m
# A grid over the table (0.1..1.0 × −0.6..0.6), clear of the arm, which hides the table's edge near the base.
POSITIONS = [(x, y) for x in (0.3, 0.5, 0.7, 0.9) for y in (-0.5, -0.25, 0.0, 0.25, 0.5)]
RED = ColourBlobDetector((170, 120, 60), (10, 255, 255))  # hue range wrapping around 0


def mujoco():
    """The mujoco module, imported after ``mtrl_robot`` has chosen offscreen rendering (``MUJOCO_GL``)."""
    import mujoco as module

    return module


class Overhead:
    """The puck-table scene and its overhead camera."""

    def __init__(self) -> None:
        self.backend = MujocoBackend(load_family("panda"), scene=SCENE)
        self.backend.reset()
        model = self.backend.model
        self.qadr = int(model.jnt_qposadr[model.joint("puck").id])
        width, height = (int(v) for v in model.cam_resolution[model.camera("overhead").id])
        self.renderer = mujoco().Renderer(model, height, width)

    def render(self, puck_xy: tuple[float, float], yaw: float = 0.0) -> np.ndarray:
        """An RGB frame with the puck resting at ``puck_xy``, turned by ``yaw``."""
        d = self.backend.data
        d.qpos[self.qadr:self.qadr + 3] = (*puck_xy, SCENE.table_top + SCENE.puck_height / 2)
        d.qpos[self.qadr + 3:self.qadr + 7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
        mujoco().mj_forward(self.backend.model, d)
        self.renderer.update_scene(d, "overhead")
        return self.renderer.render().copy()

    def close(self) -> None:
        self.renderer.close()
        self.backend.close()


@pytest.fixture(scope="module")
def overhead():
    scene = Overhead()
    yield scene
    scene.close()


def test_config_extrinsics_match_the_scene_camera(overhead):
    camera = camera_from_mujoco(overhead.backend.model, overhead.backend.data)
    configured = CONFIG.camera_model(camera.width, camera.height, camera.k.ravel())
    np.testing.assert_allclose(configured.position, SCENE.camera_position, atol=1e-9)
    np.testing.assert_allclose(configured.rotation, camera.rotation, atol=1e-9)
    assert (camera.width, camera.height) == SCENE.camera_size
    # Looking straight down: optical z is world −z, image right is world +x, image down is world −y.
    np.testing.assert_allclose(camera.rotation, np.diag([1.0, -1.0, -1.0]), atol=1e-9)
    assert camera.k[1, 1] == pytest.approx(0.5 * camera.height / math.tan(math.radians(SCENE.camera_fovy) / 2))


def test_puck_located_across_the_table(overhead):
    camera = camera_from_mujoco(overhead.backend.model, overhead.backend.data)
    detector, plane_z = CONFIG.detector("puck"), CONFIG.plane_z("puck")
    errors = []
    for k, xy in enumerate(POSITIONS):
        found = locate(overhead.render(xy, yaw=0.7 * k), detector, camera, plane_z, encoding="rgb8")
        assert found is not None, xy
        assert found[2] == pytest.approx(SCENE.table_top + SCENE.puck_height / 2)
        errors.append(float(np.hypot(*(found[:2] - xy))))
    errors = np.array(errors)
    print(f"puck localization over {len(errors)} positions: mean {1e3 * errors.mean():.2f} mm, "
          f"max {1e3 * errors.max():.2f} mm")
    assert errors.max() < TOLERANCE, dict(zip(POSITIONS, errors.round(4), strict=True))


def test_goal_located_and_encodings_agree(overhead):
    rgb = overhead.render((0.4, -0.3))
    camera = camera_from_mujoco(overhead.backend.model, overhead.backend.data)
    goal = locate(rgb, CONFIG.detector("goal"), camera, CONFIG.plane_z("goal"), encoding="rgb8")
    assert goal is not None and np.hypot(*(goal[:2] - SCENE.goal_position)) < TOLERANCE
    detector = CONFIG.detector("puck")
    blob, reason = detector.detect(rgb, "rgb8")
    assert blob is not None and reason == ""
    alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
    for image, encoding in ((rgb[..., ::-1], "bgr8"), (np.concatenate([rgb, alpha], axis=2), "rgba8"),
                            (np.concatenate([rgb[..., ::-1], alpha], axis=2), "bgra8")):
        assert detector.detect(np.ascontiguousarray(image), encoding)[0] == blob, encoding


def test_nothing_found_and_too_small(overhead):
    camera = camera_from_mujoco(overhead.backend.model, overhead.backend.data)
    empty = overhead.render((3.0, 3.0))  # off the table, out of view
    blob, reason = CONFIG.detector("puck").detect(empty, "rgb8")
    assert blob is None and "no pixels in the HSV range" in reason
    assert locate(empty, CONFIG.detector("puck"), camera, 0.01, encoding="rgb8") is None
    huge = ColourBlobDetector(CONFIG.targets["puck"].hsv_low, CONFIG.targets["puck"].hsv_high, min_area=5000)
    blob, reason = huge.detect(overhead.render((0.5, 0.0)), "rgb8")
    assert blob is None and "fewer than min_area 5000" in reason


def _look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """MuJoCo camera axes (x right, y up, looking along −z) as columns, aimed at ``target``."""
    forward = (target - position) / np.linalg.norm(target - position)
    right = np.cross(forward, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    back = -forward
    return np.column_stack([right, np.cross(back, right), back])


def test_tilted_camera_and_red_disc():
    """A camera looking obliquely at a red disc: MuJoCo's camera frame converts to the optical frame."""
    mj = mujoco()
    disc, target = np.array([0.2, -0.1]), np.array([0.1, 0.0, 0.0])
    position = np.array([0.9, 0.5, 0.8])
    spec = new_spec("tilted")
    add_lights(spec)
    spec.worldbody.add_geom(type=mj.mjtGeom.mjGEOM_PLANE, size=(3, 3, 0.1), rgba=(0.6, 0.6, 0.6, 1))
    spec.worldbody.add_geom(type=mj.mjtGeom.mjGEOM_CYLINDER, size=(0.04, 0.001, 0), pos=(*disc, 0.001),
                            rgba=(0.9, 0.1, 0.1, 1))
    quat = np.empty(4)
    mj.mju_mat2Quat(quat, _look_at(position, target).ravel())
    spec.worldbody.add_camera(name="tilted", pos=position, quat=quat, fovy=45).resolution = (360, 240)
    model = spec.compile()
    data = mj.MjData(model)
    mj.mj_forward(model, data)
    camera = camera_from_mujoco(model, data, "tilted")
    np.testing.assert_allclose(camera.rotation[:, 2], (target - position) / np.linalg.norm(target - position))
    assert camera.rotation[2, 1] < 0  # image down points down in the world
    np.testing.assert_allclose(camera.rotation, data.cam_xmat[0].reshape(3, 3) @ MUJOCO_TO_OPTICAL)
    with mj.Renderer(model, 240, 360) as renderer:
        renderer.update_scene(data, "tilted")
        rgb = renderer.render()
    blob, reason = RED.detect(rgb, "rgb8")
    assert blob is not None, reason
    np.testing.assert_allclose(blob.centroid, camera.project((*disc, 0.002)), atol=0.5)
    found = back_project_to_plane(blob.centroid, camera, 0.002)
    assert np.hypot(*(found[:2] - disc)) < TOLERANCE
    with pytest.raises(ValueError, match="no camera 'missing'"):
        camera_from_mujoco(model, data, "missing")


def test_rotation_from_rpy():
    np.testing.assert_allclose(rotation_from_rpy(math.pi, 0.0, 0.0), np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    np.testing.assert_allclose(rotation_from_rpy(0.0, 0.0, math.pi / 2) @ (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), atol=1e-12)
    np.testing.assert_allclose(rotation_from_rpy(0.0, math.pi / 2, 0.0) @ (0.0, 0.0, 1.0), (1.0, 0.0, 0.0), atol=1e-12)
    roll, pitch, yaw = 0.3, -0.4, 1.1
    np.testing.assert_allclose(rotation_from_rpy(roll, pitch, yaw), rotation_from_rpy(0.0, 0.0, yaw)
                               @ rotation_from_rpy(0.0, pitch, 0.0) @ rotation_from_rpy(roll, 0.0, 0.0), atol=1e-12)


def test_back_projection_geometry():
    rotation = rotation_from_rpy(math.pi + 0.3, 0.2, 0.5)  # tilted from straight down
    camera = CameraModel.from_fovy(640, 480, 60.0, (0.2, -0.1, 1.5), rotation)
    rng = np.random.default_rng(3)
    for point in rng.uniform((-0.3, -0.4, 0.0), (0.5, 0.4, 0.2), (20, 3)):
        pixel = camera.project(point)
        np.testing.assert_allclose(back_project_to_plane(pixel, camera, point[2]), point, atol=1e-9)
    info = CameraModel.from_camera_info(640, 480, camera.k.ravel().tolist(), camera.position, rotation)
    np.testing.assert_allclose(info.ray((10.0, 400.0)), camera.ray((10.0, 400.0)))
    level = CameraModel.from_fovy(320, 240, 60.0, (0.0, 0.0, 1.0), rotation_from_rpy(-math.pi / 2, 0.0, 0.0))
    with pytest.raises(ValueError, match="parallel to the plane"):
        back_project_to_plane((10.0, level.k[1, 2]), level, 0.0)  # a ray along the horizon
    with pytest.raises(ValueError, match="behind the camera"):
        back_project_to_plane((10.0, 20.0), level, 0.0)  # above the horizon: the ray rises
    down = CameraModel.from_fovy(320, 240, 60.0, (0.0, 0.0, 1.0), np.diag([1.0, -1.0, -1.0]))
    with pytest.raises(ValueError, match="behind the camera"):
        back_project_to_plane((100.0, 100.0), down, 2.0)  # the plane is above a downward-looking camera
    with pytest.raises(ValueError, match="two finite numbers"):
        back_project_to_plane((math.nan, 1.0), down, 0.0)


def test_bad_input_errors():
    k = np.array([[200.0, 0, 160], [0, 200.0, 120], [0, 0, 1]])
    with pytest.raises(ValueError, match="3×3 pinhole matrix"):
        CameraModel(320, 240, np.zeros((3, 3)), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="proper 3×3 rotation"):
        CameraModel(320, 240, k, np.zeros(3), np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="image size"):
        CameraModel(0, 240, k, np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="field of view"):
        CameraModel.from_fovy(320, 240, 180.0, np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="H must be in 0..179"):
        ColourBlobDetector((180, 0, 0), (10, 255, 255))
    with pytest.raises(ValueError, match="S 200 exceeds hsv_high S 100"):
        ColourBlobDetector((0, 200, 0), (10, 100, 255))
    with pytest.raises(ValueError, match="kernel_size"):
        ColourBlobDetector((0, 0, 0), (10, 255, 255), kernel_size=4)
    with pytest.raises(ValueError, match="unsupported encoding 'mono8'"):
        RED.detect(np.zeros((4, 4, 3), np.uint8), "mono8")
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        RED.detect(np.zeros((4, 4, 3), np.float32), "rgb8")
    with pytest.raises(ValueError, match=r"\(H, W, 4\) uint8"):
        RED.detect(np.zeros((4, 4, 3), np.uint8), "bgra8")
    with pytest.raises(ConfigError, match="unknown target 'ball'"):
        CONFIG.detector("ball")


def _write_config(tmp_path: Path, edit) -> Path:
    """The package's perception config after ``edit`` (a function of its text)."""
    path = tmp_path / "perception.yaml"
    path.write_text(edit((data_dir("config") / "perception.yaml").read_text()))
    return path


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("hsv_low: [105, 120, 40]", "hsv_low: [205, 120, 40]"), "targets.puck.hsv_low: H must be"),
    (lambda t: t.replace("hsv_low: [105, 120, 40]", "hsv_low: [105.5, 120, 40]"),
     r"targets.puck.hsv_low\[0\]: expected an integer"),
    (lambda t: t.replace("hsv_high: [135, 255, 255]", "hsv_high: [135, 100, 255]"), "targets.puck: hsv_low S 120"),
    (lambda t: t.replace("min_area: 20 ", "min_area: 0 "), "targets.puck.min_area: must be > 0"),
    (lambda t: t.replace("kernel_size: 3", "kernel_size: 2"), "kernel_size: must be a positive odd integer"),
    (lambda t: t.replace("  rpy:", "  rpy_deg:"), "camera.rpy_deg: unknown field"),
    (lambda t: t.replace("position: [0.55, 0.0, 1.4]", "position: [0.55, 1.4]"), "camera.position: expected a list"),
    (lambda t: t.replace("frame_id: world", "frame_id: 7"), "frame_id: expected a non-empty string"),
    (lambda t: t.replace("targets:", "colours:"), "colours: unknown field"),
])
def test_bad_config_errors(tmp_path, edit, message):
    path = _write_config(tmp_path, edit)
    assert path.read_text() != (data_dir("config") / "perception.yaml").read_text(), "the edit matched nothing"
    with pytest.raises(ConfigError, match=message) as info:
        load_perception_config(path)
    assert str(path) in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_perception_config(tmp_path / "none.yaml")
