"""Run a benchmark suite, print its figures and save them as JSON under the results folder."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path


def _print_figures(title: str, figures: dict) -> None:
    print(f"-- {title}")
    for key, value in figures.items():
        shown = f"{value:,.4g}" if isinstance(value, float) else value
        print(f"   {key:38} {shown}")


def run_sim_bench(output_dir: Path, seconds: float = 2.0) -> Path:
    """MuJoCo and PyBullet step rates, randomization cost, population build time → ``bench_sim.json``."""
    from mtrl_robot.bench.population_bench import bench_population_build
    from mtrl_robot.bench.pybullet_bench import bench_pybullet
    from mtrl_robot.bench.sim_bench import bench_mujoco

    results = {
        "machine": {"python": platform.python_version(), "processor": platform.machine(),
                    "date": time.strftime("%Y-%m-%d %H:%M:%S")},
        "mujoco": bench_mujoco(seconds=seconds),
        "pybullet": bench_pybullet(seconds=seconds),
        "population_400": bench_population_build(robots_per_family=100),
    }
    for title in ("mujoco", "pybullet", "population_400"):
        _print_figures(title, results[title])
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "bench_sim.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"saved {path}")
    return path
