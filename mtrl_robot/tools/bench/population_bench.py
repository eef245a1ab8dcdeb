"""Time to generate a population and build a simulator model for every robot in it."""

from __future__ import annotations

import time

from mtrl_robot.arms import population as populations


def bench_population_build(robots_per_family: int = 100) -> dict[str, float]:
    from mtrl_robot.backends.mujoco_model import build_model

    start = time.perf_counter()
    pop = populations.generate(populations.load_config(robots_per_family=robots_per_family))
    generated = time.perf_counter()
    for robot in pop:
        build_model(robot)
    built = time.perf_counter()
    return {
        "robots": len(pop),
        "generate_s": generated - start,
        "build_mujoco_models_s": built - generated,
        "total_s": built - start,
    }
