"""Fuzzing the safety layer: no accepted trajectory makes the controller or the arm exceed a limit.

Thousands of random trajectories (random waypoints, times and velocities, with and without velocity fields,
seeded) go through the ``sim_panda`` preset's checker. Every accepted one is compared with a dense reference,
the positions the controller commands every control period at several clock phases
(:func:`executed_motion.commanded_peaks`); a seeded sample of the accepted ones is executed by the MuJoCo arm
and its peaks, measured from joint states, are compared with the preset's limits.

The executed motion adds the position actuators' tracking to the commanded one: the arm lags the command and
overshoots a little where the commanded acceleration jumps, and an acceleration read from joint-state velocity
differences picks that up. ``EXECUTED_MARGIN`` allows for it (it is the largest ratio over what was commanded
that a critically damped position servo shows on such jumps; the measured ratios are printed).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from executed_motion import commanded_peaks, run_in_mujoco

from mtrl_robot.arms.families import load_family
from mtrl_robot.backends.mujoco_backend import MujocoBackend
from mtrl_robot.backends.trajectory import JointLimits, JointState, JointTrajectory, start_from
from mtrl_robot.hardware.presets import load_preset
from mtrl_robot.hardware.safety import SafetyChecker, SafetyError

SEED = 20261206
N_TRAJECTORIES = 3000
N_EXECUTED = 30
PHASES = 4  # clock phases of the reference per control period
EXECUTED_MARGIN = {"velocity": 1.05, "acceleration": 1.25}

ARM = load_family("panda")
PRESET = load_preset("sim_panda")
LIMITS = replace(PRESET.safety_limits(ARM), workspace=None)  # the workspace box is not what is fuzzed here
CHECKER = SafetyChecker(LIMITS)
BOX = JointLimits(ARM.joint_names, LIMITS.inner_lower, LIMITS.inner_upper, np.full(7, np.inf), np.full(7, np.inf))


def random_trajectory(rng: np.random.Generator) -> tuple[JointTrajectory, np.ndarray]:
    """A random trajectory and the measured start it is sent from (hardware names = model names here).

    Half are random waypoints with random velocities (or none), from a crawl to well over the limits; half are
    rest-to-rest minimum-jerk moves sampled at random waypoints, timed from half to 1.3 times the velocity
    limit, the kind of motion that gets accepted close to the limits.
    """
    lower, upper = LIMITS.inner_lower + 0.2, LIMITS.inner_upper - 0.2
    start = rng.uniform(lower, upper)
    with_velocities = rng.random() < 0.5
    late_start = rng.random() < 0.3
    if rng.random() < 0.5:
        n_points = int(rng.integers(1, 7))
        durations = np.exp(rng.uniform(np.log(0.05), np.log(3.0), n_points))
        times = np.cumsum(durations) - (0.0 if late_start else durations[0])
        scale = np.exp(rng.uniform(np.log(1e-3), np.log(2.0)))
        steps = rng.uniform(-1, 1, (n_points, 7)) * LIMITS.velocity * scale * durations[:, None]
        if not late_start:
            steps[0] = 0.0  # a first point at time 0 is the measured start (a jump there is max_start_deviation's)
        positions = np.clip(start + np.cumsum(steps, axis=0), lower, upper)
        velocities = rng.uniform(-1, 1, (n_points, 7)) * LIMITS.velocity * scale
        if rng.random() < 0.8:
            velocities[-1] = 0.0
    else:
        goal = np.clip(start + rng.uniform(-1.0, 1.0, 7), lower, upper)
        speed = rng.uniform(0.5, 1.3) * LIMITS.velocity
        duration = max(float(np.max(15 / 8 * np.abs(goal - start) / speed)), 0.05)
        tau = np.sort(rng.uniform(0, 1, int(rng.integers(2, 40))))
        tau[-1] = 1.0
        if not late_start:
            tau[0] = 0.0
        s = tau**3 * (10 - 15 * tau + 6 * tau**2)
        ds = 30 * tau**2 * (1 - tau) ** 2 / duration
        times, positions = tau * duration, start + s[:, None] * (goal - start)
        velocities = ds[:, None] * (goal - start)
        keep = np.concatenate([[True], np.diff(times) > 1e-3])  # strictly increasing times
        times, positions, velocities = times[keep], positions[keep], velocities[keep]
    return JointTrajectory(ARM.joint_names, times, positions, velocities if with_velocities else None), start


def anchored(trajectory: JointTrajectory, start: np.ndarray) -> JointTrajectory:
    """The trajectory as the controller runs it: from the measured start (ros2_control's semantics)."""
    return start_from(trajectory, BOX, start)


def fuzz() -> tuple[list[tuple[JointTrajectory, np.ndarray]], dict[str, int]]:
    rng = np.random.default_rng(SEED)
    accepted, counts = [], {"positions only": 0, "with velocities": 0, "accepted": 0}
    for _ in range(N_TRAJECTORIES):
        trajectory, start = random_trajectory(rng)
        counts["with velocities" if trajectory.velocities is not None else "positions only"] += 1
        try:
            CHECKER.check(trajectory, JointState(ARM.joint_names, start, np.zeros(7), 0.0))
        except SafetyError:
            continue
        accepted.append((trajectory, start))
    counts["accepted"] = len(accepted)
    counts["accepted positions only"] = sum(t.velocities is None for t, _ in accepted)
    return accepted, counts


@pytest.fixture(scope="module")
def accepted() -> list[tuple[JointTrajectory, np.ndarray]]:
    trajectories, counts = fuzz()
    print(f"\nfuzz: {counts}")
    assert counts["accepted"] > 200 and counts["accepted positions only"] > 20, counts
    assert counts["accepted"] < N_TRAJECTORIES / 2, counts  # the limits are hit, not avoided
    return trajectories


def test_no_accepted_trajectory_makes_the_controller_exceed_a_limit(accepted):
    period = LIMITS.control_period
    worst = {"velocity": 0.0, "acceleration": 0.0, "jerk": 0.0}
    for trajectory, start in accepted:
        run = anchored(trajectory, start)
        for phase in np.arange(PHASES) * period / PHASES:
            peaks = commanded_peaks(run, period, phase)
            for quantity, limit in (("velocity", LIMITS.velocity), ("acceleration", LIMITS.acceleration),
                                    ("jerk", LIMITS.jerk)):
                ratio = float(np.max(peaks[quantity] / limit))
                worst[quantity] = max(worst[quantity], ratio)
                assert ratio <= 1 + 1e-6, (quantity, ratio, trajectory)
    print(f"\ncommanded peak / limit over {len(accepted)} accepted trajectories: "
          + ", ".join(f"{k} {v:.3f}" for k, v in worst.items()))


def test_a_sample_of_accepted_trajectories_executes_within_the_limits(accepted):
    backend = MujocoBackend(ARM)
    state_period = 1.0 / PRESET.joint_states_rate
    rng = np.random.default_rng(SEED + 1)
    worst = {"velocity": 0.0, "acceleration": 0.0}
    for i in rng.choice(len(accepted), size=N_EXECUTED, replace=False):
        trajectory, start = accepted[i]
        backend.reset(start)
        backend.step(round(0.2 / backend.control_dt))  # settle under gravity before measuring the start
        measured = backend.read_state().positions
        peaks = run_in_mujoco(backend, anchored(trajectory, measured), state_period)
        for quantity, limit in (("velocity", LIMITS.velocity), ("acceleration", LIMITS.acceleration)):
            ratio = float(np.max(peaks[quantity] / limit))
            worst[quantity] = max(worst[quantity], ratio)
            assert ratio <= EXECUTED_MARGIN[quantity], (quantity, ratio, trajectory)
    print(f"\nexecuted peak / limit over {N_EXECUTED} executed trajectories: "
          + ", ".join(f"{k} {v:.3f}" for k, v in worst.items()))
