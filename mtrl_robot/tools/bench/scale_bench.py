"""Scaling benchmark: demos and evaluated robots per second on local processes and on Ray, at 1 and 2 workers.

Ray runs on a Ray instance this benchmark starts on this machine (two CPUs); every figure is the fastest of a few
maps after a warm-up map on the same workers, so that process start-up and imports are not counted. One local worker
is this process itself (no inter-process traffic), the baseline of every ratio. Ray's overhead
per task is the time per task of a map of an empty function, one task in flight at a time.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from mtrl_robot.arms.population import generate, load_config
from mtrl_robot.core.torch_threads import in_torch_threads
from mtrl_robot.distributed.compute import ComputeConfig, Workers, workers
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.evaluate import robot_errors
from mtrl_robot.learning.reaching.presets import load_preset
from mtrl_robot.learning.reaching.train import train_from_preset
from mtrl_robot.motions.dataset import load as load_demos
from mtrl_robot.motions.reach import N_WAYPOINTS, plan_robot_demos

ROBOTS_PER_FAMILY = 6  # of each built-in family: the robots whose demos are planned, one work item each
DEMOS_PER_ROBOT = 40
HELD_OUT = 12  # robots evaluated, one work item each
TARGETS = 10  # fresh targets per evaluated robot
TIMED_MAPS = 2  # each figure is the fastest of these maps, so that other load on the machine inflates it less
EMPTY_TASKS = 100
SETTINGS = [(backend, n) for backend in ("local", "ray") for n in (1, 2)]
EVALUATION_RUN = [  # a tiny reaching run: only its held-out robots matter here
    "data.families=[panda]", f"data.robots_per_family={HELD_OUT + 2}", f"data.held_out_per_family={HELD_OUT}",
    "data.demos_per_robot=6", "pretrain.nominal_demos=40", "pretrain.vae_steps=20", "pretrain.policy_steps=40",
    "pretrain.batch_size=32", "meta.k_support=2", "meta.k_query=3", "meta.meta_batch_size=2", "meta.meta_steps=4",
    "meta.checkpoint_every=4", "adapt.k=2", "compute.workers=1"]


def _nothing(item: int) -> int:
    return item


def _plan(arm) -> object:
    return plan_robot_demos(arm, DEMOS_PER_ROBOT, 0, N_WAYPOINTS)


def _timed(running: Workers, function: Callable, items: list, count: int) -> float:
    """``count`` per second of the fastest of :data:`TIMED_MAPS` maps, after a warm-up map of the same items."""
    running.map(function, items, desc="warm-up", progress=False)
    seconds = []
    for _ in range(TIMED_MAPS):
        start = time.perf_counter()
        running.map(function, items, desc="timed", progress=False)
        seconds.append(time.perf_counter() - start)
    return count / min(seconds)


def bench_scale() -> dict[str, float | int | str]:
    """Rates per setting, Ray's ratios to local and 2 workers' to 1, and Ray's overhead per empty task."""
    robots = tuple(generate(load_config(robots_per_family=ROBOTS_PER_FAMILY)))
    with tempfile.TemporaryDirectory() as folder:
        run = train_from_preset(load_preset("small", EVALUATION_RUN), Path(folder) / "run", progress=False)
        dataset = load_demos(run / "demos.npz")
        state = checkpoints.load(run / "checkpoints" / "panda.pt")
    held = list(state.info["held_out"])

    figures: dict[str, float | int | str] = {"robots_planned": len(robots), "demos_per_robot": DEMOS_PER_ROBOT,
                                             "robots_evaluated": len(held), "targets_per_robot": TARGETS}
    measure = in_torch_threads(partial(robot_errors, states={"maml": state}, multitask=None, base=state,
                                       methods=["no_adaptation", "maml", "ik_oracle"], ks=(2,), n_targets=TARGETS,
                                       seed=0, scratch_steps=0, scratch_lr=0.0, finetune_lrs={}),
                               ComputeConfig().threads)  # as reaching evaluate measures a robot
    evaluated = [dataset.for_robot(robot_id) for robot_id in held]
    saved = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))  # read when ray is imported;
    import ray  # without a token given, Ray saves one for its new cluster in the home folder

    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        for backend, n in SETTINGS:
            with workers(ComputeConfig(workers=n, backend=backend)) as running:
                figures[f"demos_per_s_{backend}_{n}"] = _timed(running, _plan, list(robots),
                                                               len(robots) * DEMOS_PER_ROBOT)
                figures[f"robots_per_s_{backend}_{n}"] = _timed(running, measure, evaluated, len(evaluated))
        with workers(ComputeConfig(workers=1, backend="ray")) as running:
            figures["ray_overhead_ms_per_empty_task"] = 1000 / _timed(running, _nothing, list(range(EMPTY_TASKS)),
                                                                      EMPTY_TASKS)
    finally:
        ray.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value
    for what in ("demos_per_s", "robots_per_s"):
        for n in (1, 2):
            figures[f"{what}_ray_over_local_{n}"] = figures[f"{what}_ray_{n}"] / figures[f"{what}_local_{n}"]
        for backend in ("local", "ray"):
            figures[f"{what}_{backend}_2_over_1"] = figures[f"{what}_{backend}_2"] / figures[f"{what}_{backend}_1"]
    return figures
