"""Simulator benchmarks: backend stepping overhead over bare ``mj_step`` and randomization resample cost."""

from __future__ import annotations

import time

import mujoco
import numpy as np

from mtrl_robot.arms.families import load_family
from mtrl_robot.backends.mujoco_backend import MujocoBackend
from mtrl_robot.backends.trajectory import JointTrajectory
from mtrl_robot.core.paths import data_dir
from mtrl_robot.randomization import Randomizer, load_spec
from mtrl_robot.scenes.puck_table import load_scene

_BLOCK = 500  # control steps per timed block


def _swing(backend: MujocoBackend, steps: int) -> JointTrajectory:
    """A smooth back-and-forth motion around home lasting ``steps`` control steps."""
    arm = backend.arm
    times = np.linspace(0.0, steps * backend.control_dt, 50)
    amplitude = 0.2 * np.minimum(1.0, arm.velocity_limits)  # rad; peak speed well under the limits
    swing = np.sin(2 * np.pi * times / times[-1])[:, None] * amplitude
    positions = np.clip(arm.home_q + swing, arm.lower, arm.upper)
    return JointTrajectory(arm.joint_names, times, positions)


def bench_mujoco(seconds: float = 3.0, family: str = "panda") -> dict[str, float]:
    """Per-step cost of the backend following a trajectory vs a bare ``mj_step`` loop; resample cost.

    Timed blocks alternate between the two loops; each figure is the fastest block, so other load on
    the machine inflates neither.
    """
    backend = MujocoBackend(load_family(family), load_scene())
    m, d = backend.model, backend.data
    traj = _swing(backend, _BLOCK)
    bare, chunked, single, send = [], [], [], []
    deadline = time.perf_counter() + 0.8 * seconds
    while time.perf_counter() < deadline or len(bare) < 3:
        backend.reset()
        t0 = time.perf_counter()
        for _ in range(_BLOCK):
            mujoco.mj_step(m, d)
        bare.append(time.perf_counter() - t0)

        backend.reset()
        t0 = time.perf_counter()
        backend.send_trajectory(traj)
        t1 = time.perf_counter()
        backend.step(_BLOCK)
        send.append(t1 - t0)
        chunked.append(time.perf_counter() - t1)

        backend.reset()
        backend.send_trajectory(traj)
        t0 = time.perf_counter()
        for _ in range(_BLOCK):
            backend.step()
        single.append(time.perf_counter() - t0)

    randomizer = Randomizer(load_spec(data_dir("config") / "randomization.yaml"), backend.nominal_parameters())
    samples = [randomizer.sample() for _ in range(200)]
    apply_times = []
    deadline = time.perf_counter() + 0.2 * seconds
    while time.perf_counter() < deadline or not apply_times:
        for sample in samples:
            t0 = time.perf_counter()
            backend.apply_randomization(sample)
            apply_times.append(time.perf_counter() - t0)

    bare_us = min(bare) / _BLOCK * 1e6
    step_us = min(chunked) / _BLOCK * 1e6
    single_us = min(single) / _BLOCK * 1e6
    return {
        "family": family,
        "bare_mj_step_us": bare_us,
        "backend_step_us": step_us,
        "backend_step_ratio": step_us / bare_us,
        "backend_overhead_percent": 100.0 * (step_us / bare_us - 1.0),
        "backend_step1_call_us": single_us,
        "backend_step1_call_ratio": single_us / bare_us,
        "trajectory_send_us": min(send) * 1e6,
        "trajectory_steps": _BLOCK,
        "randomization_apply_us": float(np.median(apply_times)) * 1e6,
        "randomization_rebuilt_model": backend.model is not m,
        "timed_blocks": len(bare),
    }
