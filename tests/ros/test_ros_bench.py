"""The arm-node bench against a real arm_node process at 1 kHz (it starts its own, in its own domain)."""

from __future__ import annotations

import math

from mtrl_robot.tools.bench.ros_bench import bench_ros


def test_bench_ros_figures_at_1khz():
    figures = bench_ros(seconds=1.0, goals=3, rate=1000.0)
    assert figures["joint_states_target_hz"] == 1000.0 and figures["goals_succeeded"] == figures["goals"] == 3
    assert all(math.isfinite(v) and v >= 0 for v in figures.values()), figures
    assert figures["arm_node_cpu_per_wall"] > 0 and figures["joint_states_rate_hz"] > 0, figures
    for name in ("joint_states_interarrival", "joint_states_stamp_interval", "goal_accept", "goal_result"):
        assert figures[f"{name}_p50_ms"] <= figures[f"{name}_p99_ms"] <= figures[f"{name}_max_ms"], figures
