"""Reaching demonstrations: IK for the target, then a smooth, limit-respecting move from home.

For each target (a flange position in the world frame):

1. **Goal posture.** :func:`~mtrl_robot.arms.ik.solve_ik_batch` with the robot's own (perturbed)
   kinematics, started from home. Its redundancy resolution is the same for every call, so target →
   goal posture is a function. Targets whose IK fails are dropped and counted.
2. **Path.** The straight line in joint space from home to the goal posture. Both ends lie inside the
   joint limits and the limits are a box, so the whole line does too.
3. **Timing.** A minimum-jerk (quintic) time scaling ``s(τ) = 10τ³ − 15τ⁴ + 6τ⁵``, τ = t / D: starts
   and ends at rest with zero acceleration. The duration D is the shortest that keeps every joint within
   ``LIMIT_FRACTIONS`` of its velocity and acceleration limits (peak |s'| = 15/8, peak |s''| = 10/√3;
   :func:`~mtrl_robot.backends.trajectory.shortest_duration`), and at least ``MIN_DURATION``.
4. **Sampling.** ``n_waypoints`` points evenly spaced in time, with exact positions and velocities.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.ik import sample_reachable_targets, solve_ik_batch
from mtrl_robot.backends.trajectory import shortest_duration

N_WAYPOINTS = 32  # points per demonstration
MIN_DURATION = 0.5  # s, also the duration of a move that (almost) stays at home
IK_TOLERANCE = 1e-4  # m; a goal posture farther than this from its target counts as an IK failure
_PEAK_VELOCITY = 15.0 / 8.0  # max |ds/dτ| of the quintic scaling
_PEAK_ACCELERATION = 10.0 / np.sqrt(3.0)  # max |d²s/dτ²|


@dataclass(frozen=True)
class PlannedDemos:
    """Trajectories for the targets IK could reach, in the arm's joint order.

    ``kept`` indexes the input targets that were planned; the others failed IK (``n_failed``).
    """

    robot_id: str
    joint_names: tuple[str, ...]
    targets: np.ndarray  # (n, 3) m, world frame
    times: np.ndarray  # (n, T) s from start
    positions: np.ndarray  # (n, T, dof) rad
    velocities: np.ndarray  # (n, T, dof) rad/s
    kept: np.ndarray  # (n,) indices into the requested targets
    n_failed: int

    def __len__(self) -> int:
        return len(self.targets)


def quintic(tau: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-jerk scaling s(τ) on [0, 1] and its first two derivatives with respect to τ."""
    tau = np.clip(tau, 0.0, 1.0)
    s = tau**3 * (10.0 - 15.0 * tau + 6.0 * tau**2)
    ds = 30.0 * tau**2 * (1.0 - tau) ** 2
    dds = 60.0 * tau * (1.0 - tau) * (1.0 - 2.0 * tau)
    return s, ds, dds


def acceleration_limits(arm: Arm) -> np.ndarray:
    return np.array([j.acceleration for j in arm.joints])


def move_duration(arm: Arm, delta: np.ndarray) -> np.ndarray:
    """Shortest quintic duration (s) for joint displacements ``delta`` (..., dof) within the limits."""
    delta = np.abs(np.asarray(delta, dtype=float))
    return shortest_duration(_PEAK_VELOCITY * delta, arm.velocity_limits, _PEAK_ACCELERATION * delta,
                             acceleration_limits(arm), minimum=MIN_DURATION)


def time_scale(arm: Arm, start: np.ndarray, goal: np.ndarray,
               n_waypoints: int = N_WAYPOINTS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quintic moves ``start`` → ``goal`` (each (n, dof)): times (n, T), positions and velocities (n, T, dof)."""
    if n_waypoints < 2:
        raise ValueError(f"a trajectory needs at least 2 waypoints, got n_waypoints={n_waypoints}")
    start, goal = np.asarray(start, dtype=float), np.asarray(goal, dtype=float)
    delta = goal - start
    duration = move_duration(arm, delta)  # (n,)
    tau = np.linspace(0.0, 1.0, n_waypoints)
    s, ds, _ = quintic(tau)
    times = duration[:, None] * tau[None, :]
    positions = start[:, None, :] + s[None, :, None] * delta[:, None, :]
    velocities = (ds[None, :, None] / duration[:, None, None]) * delta[:, None, :]
    positions[:, -1] = goal  # exact end point, no round-off
    return times, positions, velocities


def plan_reach(arm: Arm, targets: np.ndarray, n_waypoints: int = N_WAYPOINTS) -> PlannedDemos:
    """Plan home → target for each flange target in ``targets`` (n, 3); IK failures are dropped."""
    targets = np.asarray(targets, dtype=float)
    results = solve_ik_batch(arm, targets, tol=IK_TOLERANCE) if len(targets) else []
    kept = np.array([i for i, r in enumerate(results) if r.success], dtype=int)
    goals = np.array([results[i].q for i in kept]).reshape(len(kept), arm.dof)
    home = np.broadcast_to(arm.home_q, goals.shape)
    times, positions, velocities = time_scale(arm, home, goals, n_waypoints)
    return PlannedDemos(robot_id=arm.robot_id, joint_names=arm.joint_names, targets=targets[kept].reshape(-1, 3),
                        times=times, positions=positions, velocities=velocities, kept=kept,
                        n_failed=len(targets) - len(kept))


def robot_rng(seed: int, robot_id: str) -> np.random.Generator:
    """The random generator for one robot's targets: depends only on (seed, robot id)."""
    return np.random.default_rng([seed, zlib.crc32(robot_id.encode())])


def plan_robot_demos(arm: Arm, n_demos: int, seed: int, n_waypoints: int = N_WAYPOINTS,
                     max_rounds: int = 5) -> PlannedDemos:
    """``n_demos`` demonstrations for targets sampled in the robot's reachable workspace.

    Targets come from :func:`~mtrl_robot.arms.ik.sample_reachable_targets` with :func:`robot_rng`, so
    the result depends only on (arm, n_demos, seed). Targets whose IK fails are replaced by fresh
    draws, for at most ``max_rounds`` rounds; ``n_failed`` counts them all (and ``kept`` just numbers
    the demos). Fewer than ``n_demos`` come back only if every round had failures.
    """
    if n_demos < 1:
        raise ValueError(f"n_demos must be at least 1, got {n_demos}")
    rng = robot_rng(seed, arm.robot_id)
    parts: list[PlannedDemos] = []
    have = failed = 0
    for _ in range(max_rounds):
        if have >= n_demos:
            break
        part = plan_reach(arm, sample_reachable_targets(arm, n_demos - have, rng), n_waypoints)
        parts.append(part)
        have += len(part)
        failed += part.n_failed
    return PlannedDemos(
        robot_id=arm.robot_id, joint_names=arm.joint_names,
        targets=np.concatenate([p.targets for p in parts]),
        times=np.concatenate([p.times for p in parts]),
        positions=np.concatenate([p.positions for p in parts]),
        velocities=np.concatenate([p.velocities for p in parts]),
        kept=np.arange(have), n_failed=failed)
