"""Pictures of robot populations: a few robots of each family at their home posture, one row per family; the
scene and camera aiming are shared with the evaluation videos (:mod:`mtrl_robot.evaluation.video`).

Rendering is offscreen; ``MUJOCO_GL`` defaults to ``egl`` here, which only takes effect if this module is
imported before anything else imports ``mujoco``.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import math  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from mtrl_robot.arms.chain import Arm  # noqa: E402
from mtrl_robot.backends.mujoco_model import add_arm, add_lights, new_spec  # noqa: E402
from mtrl_robot.core.atomic import write_atomic  # noqa: E402

SPACING = 4.0  # m between neighbouring robots: far enough apart that each cell shows one robot
COLORS = ((0.9, 0.55, 0.2, 1.0), (0.25, 0.5, 0.9, 1.0), (0.35, 0.7, 0.3, 1.0), (0.8, 0.3, 0.35, 1.0),
          (0.6, 0.4, 0.8, 1.0))


def population_spec(rows: list[list[Arm]]) -> mujoco.MjSpec:
    """Every robot on one line along y on a checkered floor, coloured by row."""
    spec = new_spec("population")
    spec.visual.headlight.ambient = (0.35, 0.35, 0.35)
    spec.visual.headlight.diffuse = (0.45, 0.45, 0.45)
    spec.add_texture(name="floor", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
                     rgb1=(0.82, 0.84, 0.86), rgb2=(0.68, 0.7, 0.73), width=256, height=256)
    spec.add_texture(name="sky", type=mujoco.mjtTexture.mjTEXTURE_SKYBOX, builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
                     rgb1=(0.9, 0.93, 0.97), rgb2=(0.55, 0.62, 0.72), width=256, height=256)
    floor = spec.add_material(name="floor", texrepeat=(2, 2), texuniform=True)
    floor.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "floor"
    length = sum(len(arms) for arms in rows) * SPACING
    spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_PLANE, size=(SPACING, length / 2 + SPACING, 0.05),
                            pos=(0, length / 2 - SPACING / 2, 0), material="floor", contype=0, conaffinity=0)
    add_lights(spec)
    k = 0
    for r, arms in enumerate(rows):
        for c, arm in enumerate(arms):
            mount = np.eye(4)
            mount[1, 3] = k * SPACING
            add_arm(spec, arm, mount, prefix=f"r{r}c{c}/", rgba=COLORS[r % len(COLORS)])
            k += 1
    return spec


def _frame(model: mujoco.MjModel, data: mujoco.MjData, prefix: str, camera: mujoco.MjvCamera, aspect: float) -> None:
    """Aim ``camera`` at the robot whose names start with ``prefix`` so that all of it is in view."""
    bodies = [i for i in range(model.nbody) if model.body(i).name.startswith(prefix)]
    aim_camera(model, camera, np.vstack([data.xpos[bodies], data.site_xpos[model.site(prefix + "flange").id]]), aspect)


def aim_camera(model: mujoco.MjModel, camera: mujoco.MjvCamera, points: np.ndarray, aspect: float) -> None:
    """Aim ``camera`` from the front left so that every point (n, 3) is in view."""
    low, high = points.min(axis=0), points.max(axis=0)
    camera.lookat[:] = (low + high) / 2
    radius = max(0.5 * float(np.linalg.norm(high - low)), 0.4) + 0.15
    half_fov = math.radians(model.vis.global_.fovy) / 2
    camera.distance = radius / math.tan(min(half_fov, math.atan(math.tan(half_fov) * aspect)))
    camera.azimuth, camera.elevation = 215.0, -20.0


def render_population_png(arms_by_family: dict[str, list[Arm]], path: str | Path, width: int = 1600,
                          height: int = 1200, per_family: int = 4) -> Path:
    """Draw up to ``per_family`` robots of each family at home (rows = families) and write a PNG to ``path``."""
    rows = [(family, list(arms)[:per_family]) for family, arms in arms_by_family.items() if arms]
    if not rows:
        raise ValueError("no robots to draw")
    model = population_spec([arms for _, arms in rows]).compile()
    model.vis.map.znear = 0.02 / model.stat.extent  # 2 cm; relative to the (large) extent of the whole line
    data = mujoco.MjData(model)
    for r, (_, arms) in enumerate(rows):
        for c, arm in enumerate(arms):
            for name, q in zip(arm.joint_names, arm.home_q, strict=True):
                data.qpos[model.joint(f"r{r}c{c}/{name}").qposadr[0]] = q
    mujoco.mj_forward(model, data)
    columns = max(len(arms) for _, arms in rows)
    cell_w, cell_h = width // columns, height // len(rows)
    image = np.full((cell_h * len(rows), cell_w * columns, 3), 255, np.uint8)
    camera = mujoco.MjvCamera()
    with mujoco.Renderer(model, cell_h, cell_w) as renderer:
        for r, (_, arms) in enumerate(rows):
            for c, arm in enumerate(arms):
                _frame(model, data, f"r{r}c{c}/", camera, cell_w / cell_h)
                renderer.update_scene(data, camera)
                cell = np.ascontiguousarray(renderer.render()[..., ::-1])  # RGB → BGR for OpenCV
                cv2.putText(cell, arm.robot_id, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (30, 30, 30), 2, cv2.LINE_AA)
                image[r * cell_h:(r + 1) * cell_h, c * cell_w:(c + 1) * cell_w] = cell
    image[::cell_h, :] = 255  # thin white lines between cells
    image[:, ::cell_w] = 255
    encoded, png = cv2.imencode(".png", image)
    if not encoded:
        raise ValueError(f"{path}: OpenCV could not encode the picture as PNG")
    return write_atomic(path, png.tobytes())
