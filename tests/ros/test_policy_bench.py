"""The policy-node bench against real arm_node and policy_node processes (it starts its own, in its own domain)."""

from __future__ import annotations

import math

from mtrl_robot.tools.bench.policy_bench import bench_policy


def test_bench_policy_figures():
    figures = bench_policy(targets=5)
    p50, p99, peak = (figures[f"target_to_goal_accepted_{k}_ms"] for k in ("p50", "p99", "max"))
    assert figures["targets"] == 5, figures
    assert figures["trajectories_run_to_end"] == figures["trajectories_succeeded"] == 1, figures
    assert all(math.isfinite(v) and v > 0 for v in figures.values()), figures
    assert p50 <= p99 <= peak, figures
    # every goal's acceptance stamp comes before its status reaches the bench
    assert all(figures[f"target_to_goal_accepted_{k}_ms"] <= figures[f"target_to_status_seen_{k}_ms"]
               for k in ("p50", "p99", "max")), figures
    assert figures["planning_only_p50_ms"] <= figures["planning_only_p99_ms"], figures
