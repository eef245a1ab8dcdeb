"""The work between a target and its accepted goal, stage by stage, in one process without ROS: back to back, and
each target after an idle spell, as targets reach the nodes.

The stages are the policy node's (planning, the safety check, building the goal message) and the arm node's goal
check (reading the goal message and checking it against the controller's limits from the arm's position). Each is
timed per target; the idle run sleeps ``idle`` s before each target, as the ROS bench lets the nodes settle between
targets, and then runs the stages in order. The ratio of the idle and back-to-back medians is what an idle spell
costs each stage: on a virtual machine, the caches and branch predictors of a core hold other work by then. The busy
run spends the same ``idle`` s spinning in this process instead of sleeping, so the core never idles: what it still
costs comes with the passing time (most likely the host's other work), not with the core's idle state.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from mtrl_robot.arms.chain import Arm
from mtrl_robot.backends.controller import TrajectoryController
from mtrl_robot.backends.factory import make_backend
from mtrl_robot.backends.trajectory import JointState
from mtrl_robot.hardware.presets import HardwarePreset
from mtrl_robot.hardware.safety import SafetyChecker
from mtrl_robot.models.model_file import ReachingModelFile
from mtrl_robot.models.numpy_model import NumpyReachingModel
from mtrl_robot.ros.conversions import goal_from_msg
from mtrl_robot.ros.hardware_backend import goal_msg, to_hardware_names
from mtrl_robot.ros.policy_node import plan

IDLE = 0.5  # s before each target in the idle run: the ROS bench's settling time
STAGES = ("plan", "safety_check", "goal_message", "goal_check")


def stage_latency(model: ReachingModelFile, arm: Arm, preset: HardwarePreset, targets: np.ndarray, goal_points: int,
                  idle: float = IDLE) -> dict[str, float]:
    """p50 (ms) of each stage in ``STAGES`` for ``targets`` from ``arm``'s home posture, back to back
    (``stage_<name>_p50_ms``), after ``idle`` s without work (``stage_<name>_after_idle_p50_ms``) and after ``idle``
    s spent spinning (``stage_<name>_after_busy_p50_ms``), and the ratio of the idle and back-to-back medians
    (``stage_<name>_idle_slowdown``)."""
    planner = NumpyReachingModel(model)
    limits = preset.safety_limits(arm)
    checker = SafetyChecker(limits)
    backend = make_backend("mujoco", arm)
    controller = TrajectoryController(backend, backend.control_dt)
    to_hardware = preset.model_to_hardware
    order = [arm.joint_names.index(name) for name in preset.model_names]
    measured = JointState(preset.joint_names, arm.home_q[order], np.zeros(arm.dof), 0.0)  # as the client reads it
    home = backend.read_state().positions

    def stages(target: np.ndarray) -> list[float]:
        marks = [time.perf_counter()]
        trajectory = plan(planner, arm, target, arm.home_q, limits, goal_points)
        marks.append(time.perf_counter())
        checked = checker.check(to_hardware_names(trajectory, to_hardware), measured)
        marks.append(time.perf_counter())
        message = goal_msg(checked)
        marks.append(time.perf_counter())
        controller.check(goal_from_msg(message, 0.0), home)
        marks.append(time.perf_counter())
        return list(np.diff(marks) * 1e3)

    targets = np.asarray(targets, dtype=float).reshape(-1, 3)
    for target in targets:  # first calls' set-up out of the way, and the code warm
        stages(target)
    warm = np.median([stages(target) for target in targets], axis=0)

    def after(wait: Callable[[float], None]) -> np.ndarray:
        """The stages' median times with ``wait(idle)`` before each target."""
        times = []
        for target in targets:
            wait(idle)
            times.append(stages(target))
        return np.median(times, axis=0)

    cold, busy = after(time.sleep), after(_spin)
    figures = {}
    for name, back_to_back, after_idle, after_busy in zip(STAGES, warm, cold, busy, strict=True):
        figures[f"stage_{name}_p50_ms"] = float(back_to_back)
        figures[f"stage_{name}_after_idle_p50_ms"] = float(after_idle)
        figures[f"stage_{name}_after_busy_p50_ms"] = float(after_busy)
        figures[f"stage_{name}_idle_slowdown"] = float(after_idle / back_to_back)
    return figures


def _spin(seconds: float) -> None:
    """Keep the calling thread running for ``seconds``: a wait in which its core never idles."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
