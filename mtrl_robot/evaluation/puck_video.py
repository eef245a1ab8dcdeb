"""A video of puck hitting before and after adaptation, from the simulator's camera: ``puck_video.mp4``.

One fixed condition (:data:`~mtrl_robot.tasks.puck.CONDITIONS`) of a puck-hitting run's simulated table. The
meta-policy adapts to it as the evaluation does (:func:`~mtrl_robot.learning.puck.adapt.adapt_policy`: K exploratory
hits and one inner step per adaptation step); then it hits the same few fresh goals, with the same per-hit puck
offsets, with its parameters at step 0 (as trained) and after the last step. The two are shown side by side: the
arm, the puck sliding to rest and the goal (a green sphere), each panel captioned with the step and the puck's final
distance to the goal.

Each hit is executed in the scene's MuJoCo model at the video's frame rate (the arm's motion, then the puck's slide
with the arm held still, simulated as the evaluation's hits are, one frame's time at a time), so the distances in
the captions are those of the video's own hits; frames are drawn from the scene's full state. Panel size, frame
rate, markers and the H.264 encoder are those of :mod:`mtrl_robot.evaluation.video`.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import mujoco  # offscreen: importing mtrl_robot has chosen the renderer
import numpy as np
import torch

from mtrl_robot.backends.render import aim_camera
from mtrl_robot.core.torch_threads import torch_threads
from mtrl_robot.evaluation import video
from mtrl_robot.learning.puck.adapt import adapt_policy
from mtrl_robot.learning.puck.train import META_FILE, VAE_FILE, load_policy, simulated_world
from mtrl_robot.meta.policy_gradient_maml import detached, mean_action, meta_parameters
from mtrl_robot.models.hitting_vae import HittingVAE
from mtrl_robot.motions.path_timing import MotionRefused
from mtrl_robot.tasks.puck import MAX_SLIDE_TIME, REST_SPEED, PuckHittingEnv, PuckWorld, Task, condition_task

VIDEO_STREAM = 5  # seed stream of the video (training: the run's seed, tuning 1 and 2, evaluation 3, adapt 4)
VIDEO_FILE = "puck_video.mp4"
HITS = 3  # fresh goals hit in each panel
STEPS = 3  # adaptation steps between the two panels


class PuckVideo(NamedTuple):
    """A written video: its file, its number of frames and, per panel (its label), the outcome of every hit."""

    path: Path
    frames: int
    outcomes: dict[str, list[str]]


def record_hit(world: PuckWorld, task: Task, goal: np.ndarray, latent: np.ndarray,
               rng: np.random.Generator) -> tuple[list[np.ndarray], str]:
    """One hit on the simulated table: the scene's ``qpos`` at every video frame (motion, slide, a still ``HOLD``)
    and the outcome (the puck's final distance to ``goal``, or why there was no hit)."""
    backend, scene = world.robot, world.scene
    physics = dict(task.parameters)
    if task.jitter:
        physics.update({name: d.sample(rng) for name, d in world.offsets.items()})
    scene.randomize(physics)
    try:
        motion = world.vae.decode_motion(latent)
    except MotionRefused as exc:
        scene.put_back(backend.read_state().positions)
        return [backend.data.qpos.copy()] * round(video.HOLD * video.FPS), f"refused ({exc})"
    scene.put_back(motion.positions[0])
    per_frame = max(1, round(1.0 / (video.FPS * backend.control_dt)))
    frames = [backend.data.qpos.copy()]
    backend.send_trajectory(motion)
    while backend.is_executing():
        backend.step(per_frame)
        frames.append(backend.data.qpos.copy())
    table, slid = backend.table, 0.0
    while slid < MAX_SLIDE_TIME and table.sliding(*table.state(), REST_SPEED):
        slid += table.settle(min(1.0 / video.FPS, MAX_SLIDE_TIME - slid), REST_SPEED)
        frames.append(backend.data.qpos.copy())
    frames += [frames[-1]] * round(video.HOLD * video.FPS)
    return frames, f"{100 * float(np.linalg.norm(scene.where() - goal)):.1f} cm from the goal"


def puck_video(run_dir: str | Path, out: str | Path, condition: str = "iso_low", steps: int = STEPS,
               hits: int = HITS) -> PuckVideo:
    """Write the video of the run's meta-policy on ``condition``: ``hits`` hits at step 0 beside the same hits
    after ``steps`` adaptation steps."""
    run = Path(run_dir)
    trained = load_policy(run / META_FILE)
    config, task = trained.config, condition_task(condition)
    env = PuckHittingEnv(config.arm, motion_vae=HittingVAE.load(run / VAE_FILE))
    try:
        with torch_threads(1):
            world = simulated_world(env, config)
            _, adapted = adapt_policy(trained.policy, trained.lrs, world, task, config, steps,
                                      [config.seed, VIDEO_STREAM, 0])
            goals = world.goals(hits, np.random.default_rng([config.seed, VIDEO_STREAM, 1]))
            panels = []
            for label, params in ((f"{condition}: step 0", detached(meta_parameters(trained.policy))),
                                  (f"{condition}: step {steps}", adapted)):
                rng = np.random.default_rng([config.seed, VIDEO_STREAM, 2])  # the same puck offsets in both panels
                with torch.no_grad():
                    latents = world.latents(mean_action(trained.policy, params, world.observe(goals)))
                panels.append((label, [record_hit(world, task, goal, latent, rng)
                                       for goal, latent in zip(goals, latents, strict=True)]))
            path = _render(env, goals, panels, out)
            frames = sum(max(len(f) for f, _ in clips) for clips in zip(*(c for _, c in panels), strict=True))
            return PuckVideo(path, frames, {label: [outcome for _, outcome in clips] for label, clips in panels})
    finally:
        env.close()


def _render(env: PuckHittingEnv, goals: np.ndarray, panels: list[tuple[str, list]], out: str | Path) -> Path:
    """Draw the recorded hits of each panel side by side, hit after hit, from one camera on the table and arm."""
    model = env.backend.model
    data = mujoco.MjData(model)
    width, height = video.PANEL_SIZE
    goal_points = np.column_stack([goals, np.full(len(goals), env.backend.table.scene.table_top)])
    points = [*goal_points]
    for _, clips in panels:
        for frames, _ in clips:
            for qpos in frames[::5]:
                data.qpos[:] = qpos
                mujoco.mj_kinematics(model, data)
                points.extend(data.xpos[1:])
    camera = mujoco.MjvCamera()
    aim_camera(model, camera, np.array(points), width / height)
    with mujoco.Renderer(model, height, width) as renderer:

        def frames():
            for number, clips in enumerate(zip(*(clips for _, clips in panels), strict=True)):
                for frame in range(max(len(f) for f, _ in clips)):
                    images = []
                    for (label, _), (recorded, outcome) in zip(panels, clips, strict=True):
                        data.qpos[:] = recorded[min(frame, len(recorded) - 1)]
                        mujoco.mj_kinematics(model, data)
                        renderer.update_scene(data, camera)
                        video.add_sphere(renderer.scene, goal_points[number])
                        image = np.ascontiguousarray(renderer.render())
                        video.caption(image, [label, f"hit {number + 1}: {outcome}"])
                        images.append(image)
                    yield np.hstack(images)

        return video.encode(frames(), (width * len(panels), height), out)
