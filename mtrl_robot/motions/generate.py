"""Demonstrations for a whole robot population, on several cores, reproducibly.

Each robot's demos depend only on (its parameters, ``demos_per_robot``, ``seed``): its targets come from
a generator seeded with (seed, robot id) (:func:`~mtrl_robot.motions.reach.robot_rng`), and IK solves
every target independently. Robots are handed to workers in chunks (local processes or Ray tasks,
:mod:`mtrl_robot.distributed.compute`) and the results are put back in population order, so the dataset is the
same, bit for bit, for any number of workers, backend and nodes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.population import Population
from mtrl_robot.backends.trajectory import LIMIT_FRACTIONS
from mtrl_robot.distributed.compute import LOCAL, ComputeConfig, ordered_map
from mtrl_robot.motions import reach as planner
from mtrl_robot.motions.dataset import DatasetError, DemoDataset

_CHUNKS_PER_WORKER = 8  # more chunks: a smoother progress bar and better balance; fewer: less overhead


def _plan_chunk(task: tuple[Sequence[Arm], int, int, int]) -> list[planner.PlannedDemos]:
    """One chunk of robots (module level, so that it pickles)."""
    arms, demos_per_robot, seed, n_waypoints = task
    return [planner.plan_robot_demos(arm, demos_per_robot, seed, n_waypoints) for arm in arms]


def _population_config(population: Population) -> dict:
    config = population.config
    return {"seed": config.seed, "families": list(config.families), "robots_per_family": config.robots_per_family,
            "perturbation": {name: vars(dist) for name, dist in config.perturbation.items()}}


def generate_demos(population: Population | Sequence[Arm], demos_per_robot: int, seed: int,
                   compute: ComputeConfig = LOCAL, progress: bool = True,
                   n_waypoints: int = planner.N_WAYPOINTS) -> DemoDataset:
    """``demos_per_robot`` reaching demos for every robot of ``population``, as one dataset.

    ``compute`` says where the chunks of robots are planned (:func:`~mtrl_robot.distributed.compute.ordered_map`;
    one local worker plans in this process). Targets whose IK fails are redrawn (see
    :func:`~mtrl_robot.motions.reach.plan_robot_demos`); ``info["ik_failures"]`` counts them per robot.
    """
    robots = tuple(population)
    if not robots:
        raise DatasetError(None, "the population is empty: no robots to make demos for")
    counts = {r.family: r.dof for r in robots}
    if len(set(counts.values())) > 1:
        raise DatasetError(None, "a dataset holds robots of one number of joints, but these families differ: "
                           + ", ".join(f"{family} {dof}" for family, dof in counts.items()))
    if isinstance(demos_per_robot, bool) or not isinstance(demos_per_robot, int) or demos_per_robot < 1:
        raise ValueError(f"demos_per_robot must be a positive integer, got {demos_per_robot!r}")
    size = max(1, min(16, math.ceil(len(robots) / (compute.workers * _CHUNKS_PER_WORKER))))
    chunks = [robots[i:i + size] for i in range(0, len(robots), size)]
    planned = [demos for chunk in ordered_map(compute, _plan_chunk, [(c, demos_per_robot, seed, n_waypoints)
                                                                      for c in chunks],
                                              desc="demos", unit="robot", progress=progress,
                                              sizes=[len(c) for c in chunks])
               for demos in chunk]

    kept = [(arm, demos) for arm, demos in zip(robots, planned, strict=True) if len(demos)]
    if not kept:
        raise DatasetError(None, "IK failed for every target of every robot: no demonstrations")
    info = {
        "source": "planner",
        "seed": seed,
        "demos_per_robot": demos_per_robot,
        "n_waypoints": n_waypoints,
        "planner": {"velocity_fraction": LIMIT_FRACTIONS.velocity,
                    "acceleration_fraction": LIMIT_FRACTIONS.acceleration,
                    "min_duration": planner.MIN_DURATION, "ik_tolerance": planner.IK_TOLERANCE},
        "ik_failures": {d.robot_id: d.n_failed for d in planned},
        "robots_without_demos": [d.robot_id for d in planned if not len(d)],
    }
    if isinstance(population, Population):
        info["population"] = _population_config(population)
    return DemoDataset(
        robots=tuple(arm for arm, _ in kept),
        robot_index=np.concatenate([np.full(len(d), r) for r, (_, d) in enumerate(kept)]),
        targets=np.concatenate([d.targets for _, d in kept]),
        times=np.concatenate([d.times for _, d in kept]),
        positions=np.concatenate([d.positions for _, d in kept]),
        velocities=np.concatenate([d.velocities for _, d in kept]),
        info=info,
    )
