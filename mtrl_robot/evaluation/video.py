"""Videos of what a policy did, from the simulator's camera: one panel per policy, side by side, as an H.264 MP4.

(Reaching here; puck hitting in :mod:`mtrl_robot.evaluation.puck_video`, with the same frame rate, panel size,
markers, captions and encoder.)

A panel is a label and the joint motions (positions per frame) one policy made the arm execute in MuJoCo. Every
panel shows the arm in the population pictures' scene (:mod:`mtrl_robot.backends.render`) from one camera that
keeps the whole motion in view; a panel that finishes early holds its last frame. The target or goal is
drawn as a green sphere and each panel's caption gives the label and the outcome of the current clip. Frames are
encoded by the ffmpeg binary inside the ``imageio-ffmpeg`` wheel (H.264, ``yuv420p``: plays in browsers); the file
is written atomically.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import tempfile  # noqa: E402
from collections.abc import Iterable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from mtrl_robot.arms.chain import Arm  # noqa: E402
from mtrl_robot.backends.mujoco_backend import MujocoBackend  # noqa: E402
from mtrl_robot.backends.render import aim_camera, population_spec  # noqa: E402
from mtrl_robot.backends.trajectory import JointTrajectory  # noqa: E402
from mtrl_robot.core.atomic import write_atomic  # noqa: E402

FPS = 25
PANEL_SIZE = (512, 384)  # pixels, width × height of one panel (multiples of 16, as H.264 wants)
HOLD = 0.6  # s the arm is shown at rest after each clip
TARGET_RADIUS = 0.02  # m
TARGET_RGBA = np.array([0.1, 0.9, 0.2, 1.0], dtype=np.float32)
PREFIX = "r0c0/"  # the names of the one arm in population_spec([[arm]])


@dataclass
class Clip:
    """One executed motion: the arm's joint positions at every frame, the target, and a caption of the outcome."""

    positions: np.ndarray  # (frames, dof) rad
    target: np.ndarray  # (3,) m, world frame
    outcome: str


@dataclass
class Panel:
    label: str
    clips: list[Clip] = field(default_factory=list)


def record_reaches(backend: MujocoBackend, arm: Arm, trajectories: list[JointTrajectory],
                   targets: np.ndarray) -> list[Clip]:
    """Execute each trajectory from the home posture and keep the joint positions at every frame, then ``HOLD`` s at
    rest; the outcome is the final flange-to-target distance."""
    per_frame = max(1, round(1.0 / (FPS * backend.control_dt)))
    clips = []
    for trajectory, target in zip(trajectories, targets, strict=True):
        backend.reset(arm.home_q)
        backend.send_trajectory(trajectory)
        frames = [backend.read_state().positions]
        while backend.is_executing():
            backend.step(per_frame)
            frames.append(backend.read_state().positions)
        for _ in range(round(HOLD * FPS)):
            backend.step(per_frame)
            frames.append(backend.read_state().positions)
        error = float(np.linalg.norm(backend.flange_position() - target))
        clips.append(Clip(np.array(frames), np.asarray(target, dtype=float), f"{100 * error:.2f} cm"))
    return clips


def add_sphere(scene: mujoco.MjvScene, centre: np.ndarray) -> None:
    """Draw the target or goal marker (a green sphere) at ``centre`` into a scene about to be rendered."""
    if scene.ngeom < scene.maxgeom:
        mujoco.mjv_initGeom(scene.geoms[scene.ngeom], mujoco.mjtGeom.mjGEOM_SPHERE,
                            np.array([TARGET_RADIUS, 0.0, 0.0]), centre, np.eye(3).ravel(), TARGET_RGBA)
        scene.ngeom += 1


def caption(image: np.ndarray, lines: list[str]) -> None:
    """Write ``lines`` at the top left of a rendered panel, dark on a light outline (readable on any scene)."""
    for i, text in enumerate(lines):
        for colour, thickness in (((235, 235, 235), 5), ((20, 20, 20), 2)):
            cv2.putText(image, text, (10, 26 + 24 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, thickness,
                        cv2.LINE_AA)


def write_video(arm: Arm, panels: list[Panel], path: str | Path) -> Path:
    """Render ``panels`` (the same number of clips each, executed by ``arm``) side by side into an MP4."""
    if not panels or len({len(p.clips) for p in panels}) != 1 or not panels[0].clips:
        raise ValueError(f"{path}: a video needs panels with the same, non-zero number of clips")
    width, height = PANEL_SIZE
    model = population_spec([[arm]]).compile()
    data = mujoco.MjData(model)
    columns = [model.joint(PREFIX + name).qposadr[0] for name in arm.joint_names]
    bodies = [i for i in range(model.nbody) if model.body(i).name.startswith(PREFIX)]
    points = [c.target for p in panels for c in p.clips]
    for clip in (c for p in panels for c in p.clips):
        for q in clip.positions[::5]:
            data.qpos[columns] = q
            mujoco.mj_kinematics(model, data)
            points.extend(data.xpos[bodies])
    camera = mujoco.MjvCamera()
    aim_camera(model, camera, np.array(points), width / height)
    with mujoco.Renderer(model, height, width) as renderer:

        def frames():
            for number, clips in enumerate(zip(*(p.clips for p in panels), strict=True), 1):
                for frame in range(max(len(c.positions) for c in clips)):
                    images = []
                    for panel, clip in zip(panels, clips, strict=True):
                        data.qpos[columns] = clip.positions[min(frame, len(clip.positions) - 1)]
                        mujoco.mj_kinematics(model, data)
                        renderer.update_scene(data, camera)
                        add_sphere(renderer.scene, clip.target)
                        image = np.ascontiguousarray(renderer.render())
                        caption(image, [panel.label, f"target {number}: {clip.outcome}"])
                        images.append(image)
                    yield np.hstack(images)

        return encode(frames(), (width * len(panels), height), path)


def encode(frames: Iterable[np.ndarray], size: tuple[int, int], path: str | Path) -> Path:
    """Encode RGB frames (height × width × 3, ``size`` = (width, height)) at ``FPS`` into an H.264 MP4 at ``path``,
    atomically."""
    import imageio_ffmpeg

    with tempfile.TemporaryDirectory() as folder:
        encoded = Path(folder) / "video.mp4"
        writer = imageio_ffmpeg.write_frames(str(encoded), size, fps=FPS, codec="libx264", quality=7,
                                             ffmpeg_log_level="error")
        writer.send(None)
        try:
            for frame in frames:
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()
        return write_atomic(path, encoded.read_bytes())
