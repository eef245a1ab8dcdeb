"""Puck-hitting benchmark: complete simulated hitting episodes (reset + one hit) per second on one core."""

from __future__ import annotations

import time

import numpy as np

from mtrl_robot.tasks.puck import PuckHittingEnv

_BLOCK = 25  # episodes per timed block
_BARE_STEPS = 200  # bare mj_step calls per reference block


def bench_hitting(seconds: float = 5.0, backend: str = "mujoco", family: str = "panda",
                  seed: int = 0) -> dict[str, float | str | int]:
    """Hits per second of :class:`PuckHittingEnv` with per-episode domain randomization and random actions.

    An episode is ``reset()`` (goal, randomization sample applied) plus one ``step()`` (arm reset, hitting
    motion, puck slide until rest). Timed blocks of ``_BLOCK`` episodes run for about ``seconds``; the
    wall-clock rate is from the fastest block, so other load on the machine inflates it least, and the CPU
    rate counts this process's CPU time over all blocks. With MuJoCo, blocks of bare ``mj_step`` calls on the
    same model (arm at home, puck at rest) alternate with them, and ``hit_cost_in_bare_steps`` expresses one
    episode in those steps, both timed by this thread's CPU clock (the cheapest block of each), which does not
    run while other processes have the core: a figure that depends little on the machine or its load.
    """
    env = PuckHittingEnv(family, backend=backend)
    try:
        env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        walls, threads, bare, bare_threads, sim_time, episodes = [], [], [], [], 0.0, 0
        cpu = 0.0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(walls) < 3:
            actions = rng.uniform(env.action_space.low, env.action_space.high, size=(_BLOCK, 2))
            start, cpu_start, thread_start = time.perf_counter(), time.process_time(), time.thread_time()
            for action in actions:
                env.reset()
                sim_time += env.step(action)[4]["sim_time"]
            walls.append(time.perf_counter() - start)
            threads.append(time.thread_time() - thread_start)
            cpu += time.process_time() - cpu_start
            episodes += _BLOCK
            if backend == "mujoco":
                wall, thread = _bare_steps(env)
                bare.append(wall)
                bare_threads.append(thread)
    finally:
        env.close()
    figures = {"backend": backend, "family": family, "hits_per_second": _BLOCK / min(walls),
               "hits_per_cpu_second": episodes / cpu, "mean_simulated_seconds_per_hit": sim_time / episodes,
               "episodes": episodes, "timed_blocks": len(walls)}
    if bare:
        figures["bare_mj_step_us"] = min(bare) * 1e6
        figures["hit_cost_in_bare_steps"] = min(threads) / _BLOCK / min(bare_threads)
    return figures


def _bare_steps(env: PuckHittingEnv) -> tuple[float, float]:
    """Seconds per bare ``mj_step`` of the task's model, arm at home and puck at rest: wall clock and this
    thread's CPU clock."""
    import mujoco

    model = env.backend.model
    data = mujoco.MjData(model)
    data.qpos[:env.arm.dof] = data.ctrl[:] = env.arm.home_q
    mujoco.mj_step(model, data, 20)
    start, thread_start = time.perf_counter(), time.thread_time()
    mujoco.mj_step(model, data, _BARE_STEPS)
    return (time.perf_counter() - start) / _BARE_STEPS, (time.thread_time() - thread_start) / _BARE_STEPS
