"""The policy-node bench against real arm_node and policy_node processes (it starts its own, in its own domain)."""

from __future__ import annotations

import math
import os
import subprocess

import pytest

from mtrl_robot.backends.trajectory import GOAL_TOLERANCE
from mtrl_robot.ros.realtime import CPU_LATENCY_DEVICE, EXECUTOR_PRIORITY
from mtrl_robot.tools.bench import ros_floor
from mtrl_robot.tools.bench.policy_bench import bench_policy
from mtrl_robot.tools.bench.stage_bench import STAGES


def test_bench_policy_figures():
    figures = bench_policy(targets=2, keep_cpus_awake=True)
    assert figures.pop("executor_priority") == EXECUTOR_PRIORITY, figures
    assert isinstance(figures.pop("executor_sched_fifo"), bool), figures  # whether the system granted it
    assert figures.pop("cpus_awake") == os.access(CPU_LATENCY_DEVICE, os.W_OK), figures  # held if allowed
    assert figures["targets"] == 2 and figures["goal_points"] < figures["all_points"], figures
    assert figures["trajectories_run_to_end"] == figures["trajectories_succeeded"] == 1, figures
    assert figures["all_points_trajectories_succeeded"] == 1, figures
    assert all(math.isfinite(v) and v > 0 for v in figures.values()), figures
    for prefix in ("", "all_points_"):
        p50, p99, peak = (figures[f"{prefix}target_to_goal_accepted_{k}_ms"] for k in ("p50", "p99", "max"))
        assert p50 <= p99 <= peak, figures
        # every goal's acceptance stamp comes before its status reaches the bench
        accepted, seen = f"{prefix}target_to_goal_accepted", f"{prefix}target_to_status_seen"
        assert all(figures[f"{accepted}_{k}_ms"] <= figures[f"{seen}_{k}_ms"] for k in ("p50", "p99", "max")), figures
        assert figures[f"{prefix}planning_only_p50_ms"] <= figures[f"{prefix}planning_only_p99_ms"], figures
        assert figures[f"{prefix}final_joint_error_max_rad"] <= GOAL_TOLERANCE, figures
    for stage in STAGES:  # each stage of the work timed without ROS: back to back, after an idle and a busy spell
        warm, idle = figures[f"stage_{stage}_p50_ms"], figures[f"stage_{stage}_after_idle_p50_ms"]
        assert math.isclose(figures[f"stage_{stage}_idle_slowdown"], idle / warm, rel_tol=1e-9), figures
        assert figures[f"stage_{stage}_after_busy_p50_ms"] > 0, figures
    # the thinned goal's executed flange path stays near the full goal's
    assert figures["executed_path_deviation_p50_mm"] <= figures["executed_path_deviation_max_mm"] < 10.0, figures
    # the floor: the same hops with nothing planned or checked, measured alongside
    p50, p99, peak = (figures[f"ros_floor_target_to_goal_accepted_{k}_ms"] for k in ("p50", "p99", "max"))
    assert 0 < p50 <= p99 <= peak <= figures["ros_floor_target_to_status_seen_max_ms"], figures
    for q in ("p50", "p99"):
        ratio = figures[f"target_to_goal_accepted_{q}_ms"] / figures[f"ros_floor_target_to_goal_accepted_{q}_ms"]
        assert math.isclose(figures[f"target_to_goal_accepted_{q}_over_ros_floor"], ratio, rel_tol=1e-9), figures


def test_the_floor_nodes_refuse_an_unknown_role(capsys):
    assert ros_floor.main(["ros_floor", "planner"]) == 2
    assert "usage: python -m mtrl_robot.tools.bench.ros_floor {relay|server}" in capsys.readouterr().err
    with pytest.raises(ValueError, match="role must be one of"):
        ros_floor.floor_command("planner", 8)


def test_the_floor_relay_refuses_a_goal_of_fewer_than_two_points(ros_env):
    done = subprocess.run(ros_floor.floor_command("relay", 1), env=ros_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.strip() == "floor_relay: goal_points must be at least 2, got 1"
