"""Puck-hitting evaluation: final distance to the goal against adaptation step, for every method of a run.

For every fixed condition (:data:`~mtrl_robot.tasks.puck.CONDITIONS`) and ``repeats`` repeats, each method
(:data:`~mtrl_robot.learning.puck.methods.METHODS`: the meta-policy, the domain-randomized baseline, ...) starts
from what it was trained to be and follows :func:`~mtrl_robot.learning.puck.methods.adaptation_curve`: at steps
0..``eval_steps`` the mean final distance of its best hits on ``eval_goals`` fresh goals, with K exploratory hits
to learn from between steps. All methods of a repeat see the same goals and puck starts (common random numbers).
Reported: the mean over repeats and its 95 % confidence interval (Student t), as a Markdown table and a PNG plot,
plus the raw curves as JSON.

The puck table is simulated by ``backend``: MuJoCo, the engine every method was trained in, or PyBullet, whose
puck–table contact differs (its friction mapping: :mod:`mtrl_robot.backends.pybullet_backend`) — the same table
in another engine, the stand-in for a real one.

Camera mode (MuJoCo): every hit's final puck position, for the distances reported and for the outcomes the
methods adapt on, comes from the scene's overhead camera through the OpenCV perception code
(:func:`~mtrl_robot.perception.colour_blob.locate`) instead of the simulator state. Before the picture the arm is
put at its home posture, out of the camera's view (as a real arm would retract); a puck the camera cannot find
counts as :data:`~mtrl_robot.tasks.puck.MISSED_DISTANCE` and the misses are reported.

Every repeat has seeds of its own, so the repeats of a condition are measured in chunks, each on a puck table of
its own: in this process, in local processes or as Ray tasks (``compute``,
:mod:`mtrl_robot.distributed.compute`), with the same numbers every way.
"""

from __future__ import annotations

import json
import math
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import numpy as np

from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.torch_threads import torch_threads
from mtrl_robot.distributed.compute import IN_THIS_PROCESS, ComputeConfig, check_reachable, ordered_map
from mtrl_robot.evaluation.report import Curve, markdown_table, plot_panels, student_t
from mtrl_robot.learning.puck.methods import METHODS, adaptation_curve
from mtrl_robot.learning.puck.train import (
    BASELINE_FILE,
    META_FILE,
    VAE_FILE,
    PuckMetaRLConfig,
    load_policy,
    simulated_world,
)
from mtrl_robot.models.hitting_vae import HittingVAE
from mtrl_robot.perception.colour_blob import PerceptionConfig, camera_from_mujoco, load_perception_config, locate
from mtrl_robot.tasks.puck import CONDITIONS, PuckHittingEnv, condition_task

DEFAULT_METHODS = ("meta", "baseline")
GOAL_STEP = 3  # the goal: after this many steps the meta-policy beats its own step 0 and the baseline
MODES = {"mujoco": "sim", "pybullet": "pybullet"}  # the backend's name in the result files (camera: "camera")
EVAL_STREAM = 3  # seed stream of the evaluation (training uses the run's seed, tuning streams 1 and 2)
CHUNKS_PER_WORKER = 2  # pieces of work per worker: more balance better, fewer build fewer puck tables


class OverheadCamera:
    """The puck's (x, y) as the overhead camera sees it: arm moved home, render, colour blob back-projected."""

    def __init__(self, env: PuckHittingEnv, config: PerceptionConfig | None = None):
        import mujoco  # after mtrl_robot has chosen offscreen rendering

        self._mujoco, self.env = mujoco, env
        model = env.backend.model
        self.arm_qpos = np.array([model.joint(name).qposadr[0] for name in env.arm.joint_names])
        width, height = (int(v) for v in model.cam_resolution[model.camera("overhead").id])
        self.renderer = mujoco.Renderer(model, height, width)
        config = config or load_perception_config()
        self.detector, self.plane_z = config.detector("puck"), config.plane_z("puck")
        self.camera = camera_from_mujoco(model, env.backend.data)

    def __call__(self) -> np.ndarray | None:
        """The puck's (x, y) on the table now, or None if the camera does not find it."""
        model, data = self.env.backend.model, self.env.backend.data
        data.qpos[self.arm_qpos] = self.env.arm.home_q  # only for the picture: the next hit resets the arm
        self._mujoco.mj_kinematics(model, data)
        self.renderer.update_scene(data, "overhead")
        found = locate(self.renderer.render(), self.detector, self.camera, self.plane_z, encoding="rgb8")
        return None if found is None else found[:2]

    def close(self) -> None:
        self.renderer.close()


def evaluate_puck(checkpoint_dir: str | Path, out_dir: str | Path, repeats: int = 25, camera: bool = False, *,
                  conditions: tuple[str, ...] = tuple(CONDITIONS), methods: tuple[str, ...] = DEFAULT_METHODS,
                  backend: str = "mujoco", progress: bool = True,
                  compute: ComputeConfig = IN_THIS_PROCESS) -> tuple[Path, Path]:
    """Run the evaluation of a trained run; returns the Markdown table and the PNG plot (also writes JSON).

    ``methods`` are names of :data:`~mtrl_robot.learning.puck.methods.METHODS`; ``backend`` simulates the table;
    ``compute`` says where the chunks of repeats are measured."""
    if repeats < 2:
        raise ValueError(f"repeats must be at least 2 (for a confidence interval), got {repeats}")
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown or not conditions:
        raise ValueError(f"unknown or no conditions {unknown} (known: {', '.join(CONDITIONS)})")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods or len(set(methods)) != len(methods):
        raise ValueError(f"unknown, repeated or no methods {list(methods)} (known: {', '.join(METHODS)})")
    if backend not in MODES:
        raise ValueError(f"unknown backend {backend!r} (known: {', '.join(MODES)})")
    if camera and backend != "mujoco":
        raise ValueError("camera mode renders the MuJoCo scene: use it with backend mujoco")
    check_reachable(compute)
    checkpoint_dir, out = Path(checkpoint_dir), Path(out_dir)
    config = load_policy(checkpoint_dir / META_FILE).config  # the run's config
    size = math.ceil(repeats / max(1, math.ceil(compute.workers * CHUNKS_PER_WORKER / len(conditions))))
    chunks = [(c, range(r, min(r + size, repeats))) for c in range(len(conditions)) for r in range(0, repeats, size)]
    measure = partial(_measure_chunk, run=checkpoint_dir, config=config, vae=HittingVAE.load(checkpoint_dir / VAE_FILE),
                      conditions=conditions, methods=methods, backend=backend, camera=camera,
                      threads=compute.threads)
    mode = "camera" if camera else MODES[backend]
    measured = ordered_map(compute, measure, chunks, desc=f"puck evaluation ({mode})", unit="repeat",
                           progress=progress, sizes=[len(r) for _, r in chunks])
    curves = np.empty((len(methods), len(conditions), repeats, config.eval_steps + 1))
    for (c, chunk), (chunk_curves, _) in zip(chunks, measured, strict=True):
        curves[:, c, chunk.start:chunk.stop] = chunk_curves
    out.mkdir(parents=True, exist_ok=True)
    hits = curves.size // (config.eval_steps + 1) * (config.eval_steps * config.rollouts
                                                     + (config.eval_steps + 1) * config.eval_goals)
    header = {"mode": mode, "backend": backend, "repeats": repeats, "conditions": list(conditions),
              "methods": list(methods), "run": str(checkpoint_dir), "config": config.to_dict(), "hits": hits,
              "camera_misses": sum(misses for _, misses in measured)}
    if "baseline" in methods:
        baseline = load_policy(checkpoint_dir / BASELINE_FILE)
        header["baseline_inner_lr"] = next(iter(baseline.lrs().values())).flatten()[0].item()
    write_atomic(out / f"puck_eval_{mode}.json", json.dumps({**header, "curves_m": {
        kind: {name: curves[p, c].tolist() for c, name in enumerate(conditions)} for p, kind in enumerate(methods)}}))
    table = out / f"puck_eval_{mode}.md"
    write_atomic(table, markdown(curves, conditions, methods, header))
    return table, plot(curves, conditions, methods, mode, out / f"puck_eval_{mode}.png")


def _measure_chunk(chunk: tuple[int, range], *, run: Path, config: PuckMetaRLConfig, vae: HittingVAE,
                   conditions: tuple[str, ...], methods: tuple[str, ...], backend: str, camera: bool,
                   threads: int) -> tuple[np.ndarray, int]:
    """Repeats ``chunk[1]`` of condition ``conditions[chunk[0]]`` on a puck table of their own: the curves
    (method, repeat, step) and the camera's misses."""
    c, repeats = chunk
    env = PuckHittingEnv(config.arm, backend=backend, motion_vae=vae)
    measure = OverheadCamera(env) if camera else None
    world = simulated_world(env, config, measure)
    task = condition_task(conditions[c])
    curves = np.empty((len(methods), len(repeats), config.eval_steps + 1))
    try:
        with torch_threads(threads), ExitStack() as opened:  # every method built is closed, even if one fails
            built = [opened.enter_context(METHODS[name](run, world, config)) for name in methods]
            for i, r in enumerate(repeats):
                for m, method in enumerate(built):
                    curves[m, i] = adaptation_curve(method, world, task, config, config.eval_steps,
                                                    [config.seed, EVAL_STREAM, c, r])
    finally:
        if measure is not None:
            measure.close()
        env.close()
    return curves, world.misses


def goal_checks(curves: np.ndarray, conditions: tuple[str, ...],
                methods: tuple[str, ...]) -> dict[str, dict[str, bool]]:
    """Per condition: is the meta-policy's mean after ``GOAL_STEP`` steps below its step 0, below the baseline's?
    (Empty without both methods or that many steps.)"""
    if curves.shape[-1] <= GOAL_STEP or not {"meta", "baseline"} <= set(methods):
        return {}
    means = curves.mean(axis=2)
    meta, baseline = methods.index("meta"), methods.index("baseline")
    return {name: {"improves": bool(means[meta, c, GOAL_STEP] < means[meta, c, 0]),
                   "beats_baseline": bool(means[meta, c, GOAL_STEP] < means[baseline, c, GOAL_STEP])}
            for c, name in enumerate(conditions)}


def markdown(curves: np.ndarray, conditions: tuple[str, ...], methods: tuple[str, ...], header: dict) -> str:
    """The table: mean ± 95 % CI half-width of the final distance in cm, per condition, method and step."""
    steps = curves.shape[-1]
    config = header["config"]
    engine = {"mujoco": "MuJoCo", "pybullet": "PyBullet"}[header["backend"]]
    measured = ("the overhead camera (OpenCV)" if header["mode"] == "camera" else f"the {engine} simulator state")
    intro = [f"# Puck hitting: final distance to the goal (cm) against adaptation step ({header['mode']} mode)",
             f"Table simulated by {engine}. Mean ± 95 % CI half-width over {header['repeats']} repeats; each entry "
             f"is the mean over {config['eval_goals']} fresh goals of the method's best hits; between steps, "
             f"{config['rollouts']} exploratory hits to adapt on (policies: one inner policy-gradient step)."
             + (f" Baseline inner step size {header['baseline_inner_lr']:.4g}." if "baseline_inner_lr" in header
                else "")
             + f" Puck position from {measured}"
             + (f"; camera misses: {header['camera_misses']} of {header['hits']} hits." if header['mode'] == 'camera'
                else ".")]
    rows = [[name, kind, *(f"{m:.2f} ± {h:.2f}" for m, h in zip(*student_t(100 * curves[p, c]), strict=True))]
            for c, name in enumerate(conditions) for p, kind in enumerate(methods)]
    lines = [markdown_table(["condition", "method", *(f"step {s}" for s in range(steps))], rows, intro,
                            right_align_from=2).rstrip("\n")]
    if steps > GOAL_STEP and len(methods) > 1:
        means = curves.mean(axis=2)
        lines += ["", f"Lowest mean after {GOAL_STEP} steps: "
                  + "; ".join(f"{name} {methods[int(np.argmin(means[:, c, GOAL_STEP]))]}"
                              for c, name in enumerate(conditions)) + "."]
    checks = goal_checks(curves, conditions, methods)
    if checks:
        met = all(all(v.values()) for v in checks.values())
        lines += ["", f"Goal (after {GOAL_STEP} steps the meta-policy's mean is below its step 0 and below the "
                  f"baseline's, on every condition): **{'met' if met else 'not met'}**", ""]
        lines += [f"- {name}: below its step 0: {'yes' if v['improves'] else 'no'}; below the baseline: "
                  f"{'yes' if v['beats_baseline'] else 'no'}" for name, v in checks.items()]
    return "\n".join(lines) + "\n"


def plot(curves: np.ndarray, conditions: tuple[str, ...], methods: tuple[str, ...], mode: str, path: Path) -> Path:
    """One panel per condition: mean final distance (cm) and its 95 % CI against step, one curve per method."""
    steps = list(range(curves.shape[-1]))
    panels = {}
    for c, name in enumerate(conditions):
        panels[name] = []
        for p, kind in enumerate(methods):
            mean, half = student_t(100 * curves[p, c])
            panels[name].append(Curve(kind, steps, mean, mean - half, mean + half))
    return plot_panels(panels, path, xlabel="adaptation step", ylabel="final distance to goal (cm)",
                       columns=min(len(conditions), 2),
                       title=f"Puck hitting, {curves.shape[2]} repeats, mean and 95 % CI ({mode} mode)")
