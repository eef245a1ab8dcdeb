"""PyBullet benchmark: backend step rate while following a trajectory vs bare ``stepSimulation``."""

from __future__ import annotations

import time

import numpy as np
import pybullet as p

from mtrl_robot.arms.families import load_family
from mtrl_robot.backends.pybullet_backend import PybulletBackend
from mtrl_robot.backends.trajectory import JointTrajectory
from mtrl_robot.core.paths import data_dir
from mtrl_robot.randomization import Randomizer, load_spec
from mtrl_robot.scenes.puck_table import load_scene

_BLOCK = 500  # control steps per timed block


def _swing(backend: PybulletBackend, steps: int) -> JointTrajectory:
    """A smooth back-and-forth motion around home lasting ``steps`` control steps."""
    arm = backend.arm
    times = np.linspace(0.0, steps * backend.control_dt, 50)
    swing = np.sin(2 * np.pi * times / times[-1])[:, None] * 0.2 * np.minimum(1.0, arm.velocity_limits)
    return JointTrajectory(arm.joint_names, times, np.clip(arm.home_q + swing, arm.lower, arm.upper))


def bench_pybullet(seconds: float = 3.0, family: str = "panda") -> dict[str, float | str | int]:
    """Steps/s of the backend following a trajectory and of bare ``stepSimulation`` on the same world.

    Timed blocks of the two loops alternate; each rate is from the fastest block, so other load on the
    machine inflates neither. The last fifth of the time measures ``apply_randomization``.
    """
    backend = PybulletBackend(load_family(family), load_scene())
    try:
        traj = _swing(backend, _BLOCK)
        bare, stepped = [], []
        deadline = time.perf_counter() + 0.8 * seconds
        while time.perf_counter() < deadline or len(bare) < 3:
            backend.reset()
            t0 = time.perf_counter()
            for _ in range(_BLOCK):
                p.stepSimulation(physicsClientId=backend.client)
            bare.append(time.perf_counter() - t0)

            backend.reset()
            backend.send_trajectory(traj)
            t0 = time.perf_counter()
            backend.step(_BLOCK)
            stepped.append(time.perf_counter() - t0)

        randomizer = Randomizer(load_spec(data_dir("config") / "randomization.yaml"), backend.nominal_parameters())
        apply_times = []
        deadline = time.perf_counter() + 0.2 * seconds
        while time.perf_counter() < deadline or not apply_times:
            sample = randomizer.sample()
            t0 = time.perf_counter()
            backend.apply_randomization(sample)
            apply_times.append(time.perf_counter() - t0)
    finally:
        backend.close()
    bare_rate = _BLOCK / min(bare)
    backend_rate = _BLOCK / min(stepped)
    return {
        "family": family,
        "control_dt_s": backend.control_dt,
        "bare_step_simulation_per_s": bare_rate,
        "backend_steps_per_s": backend_rate,
        "backend_to_bare_ratio": backend_rate / bare_rate,
        "backend_realtime_factor": backend_rate * backend.control_dt,
        "randomization_apply_us": float(np.median(apply_times)) * 1e6,
        "timed_blocks": len(bare),
    }
