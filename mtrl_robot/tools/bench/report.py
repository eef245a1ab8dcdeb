"""Run a benchmark suite, print its figures and save them as JSON under the results folder."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from mtrl_robot.core.atomic import write_atomic


def _print_figures(title: str, figures: dict) -> None:
    print(f"-- {title}")
    for key, value in figures.items():
        shown = f"{value:,.4g}" if isinstance(value, float) else value
        print(f"   {key:38} {shown}")


def _sim_suite(seconds: float) -> dict[str, dict]:
    """MuJoCo and PyBullet step rates, randomization cost, population build time, puck-hitting episodes."""
    from mtrl_robot.tools.bench.hitting_bench import bench_hitting
    from mtrl_robot.tools.bench.population_bench import bench_population_build
    from mtrl_robot.tools.bench.pybullet_bench import bench_pybullet
    from mtrl_robot.tools.bench.sim_bench import bench_mujoco

    return {"mujoco": bench_mujoco(seconds=seconds), "pybullet": bench_pybullet(seconds=seconds),
            "population_400": bench_population_build(robots_per_family=100),
            "puck_hitting": bench_hitting(seconds=seconds)}


def _meta_suite(seconds: float) -> dict[str, dict]:
    """Time per meta-step of our functional MAML against ``higher`` on the same model and data; the reaching
    meta-loss against building every task's adapted weights."""
    from mtrl_robot.tools.bench.meta_bench import bench_meta, bench_reaching_meta_step

    return {"maml_vs_higher": bench_meta(seconds=seconds),
            "reaching_meta_loss": bench_reaching_meta_step(seconds=seconds)}


ROS_RATES = (250.0, 1000.0)  # Hz of /joint_states benchmarked: the default and ros2_control's usual rate


def _ros_suite(seconds: float) -> dict[str, dict]:
    """Real arm_node at each of ``ROS_RATES``: /joint_states rate, gaps, CPU, action round trips; real policy_node:
    target → goal latency with the nodes' threads at SCHED_FIFO ``EXECUTOR_PRIORITY``, the same with the CPUs kept
    out of idle states, and at normal scheduling (the stages, timed without ROS, in the first run only)."""
    import os

    from mtrl_robot.ros.realtime import EXECUTOR_PRIORITY
    from mtrl_robot.tools.bench.policy_bench import bench_policy
    from mtrl_robot.tools.bench.ros_bench import bench_ros

    figures = {f"arm_node_{rate:g}hz": bench_ros(seconds=seconds, rate=rate) for rate in ROS_RATES}
    for name, options in (("policy_node", {"executor_priority": EXECUTOR_PRIORITY}),
                          ("policy_node_cpus_awake", {"executor_priority": EXECUTOR_PRIORITY, "keep_cpus_awake": True,
                                                      "time_stages": False}),
                          ("policy_node_normal_scheduling", {"executor_priority": 0, "time_stages": False})):
        load = os.getloadavg()[0]
        figures[name] = {**bench_policy(**options), "load_average_1min": load}
    return figures


def _scale_suite(seconds: float) -> dict[str, dict]:
    """Demos and evaluated robots per second, local processes against Ray at 1 and 2 workers; Ray's task overhead."""
    from mtrl_robot.tools.bench.scale_bench import bench_scale

    return {"scale": bench_scale()}


SUITES = {"sim": _sim_suite, "meta": _meta_suite, "ros": _ros_suite, "scale": _scale_suite}


def run_bench(suite: str, output_dir: Path, seconds: float = 2.0) -> Path:
    """Run one suite, print its figures and write ``<output_dir>/bench_<suite>.json``."""
    figures = SUITES[suite](seconds)
    for title, values in figures.items():
        _print_figures(title, values)
    results = {"machine": {"python": platform.python_version(), "processor": platform.machine(),
                           "date": time.strftime("%Y-%m-%d %H:%M:%S")}, **figures}
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"bench_{suite}.json"
    write_atomic(path, json.dumps(results, indent=2))
    print(f"saved {path}")
    return path
