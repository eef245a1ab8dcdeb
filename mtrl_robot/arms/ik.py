"""Position inverse kinematics for the flange, with one consistent solution per target.

Redundancy is resolved the same way every time, so that target → joint vector is a smooth function:

1. From the home posture, minimise ``|p(q) − target|² + w₁² |q − q_home|²`` (w₁ = 0.1 m/rad). This
   picks the solution family: the compromise between reaching and staying near home.
2. From that result q₁, minimise ``|p(q) − target|² + w₂² |q − q₁|²`` (w₂ = 1e-3 m/rad): the
   nearest joint vector that reaches the target to well below 0.1 mm.

Both stages are a projected Levenberg–Marquardt method inside the joint limits (shrunk by a small
margin, so solutions lie strictly within them), batched over targets: every target follows its own
iterations, so a target's solution does not depend on the others in its batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.fk import CompiledChain, flange_position

HOME_WEIGHT = 0.1  # w₁, m/rad
POLISH_WEIGHT = 1e-3  # w₂, m/rad
LIMIT_MARGIN = 1e-4  # rad kept clear of every joint limit
TARGET_SPREAD = 0.5  # rad: demo targets come from joint vectors this far from home at most
_HOME_STEP_TOL, _POLISH_STEP_TOL = 1e-6, 1e-9  # rad: a step this small ends the stage
_MAX_ITERATIONS = 200  # per stage
_INITIAL_DAMPING, _MAX_DAMPING = 1e-6, 1e10
_DAMPING_DOWN, _DAMPING_UP = 0.1, 10.0


@dataclass(frozen=True)
class IKResult:
    """One IK solution: joint vector, remaining flange position error (m), success, LM iterations of both stages."""

    q: np.ndarray
    error: float
    success: bool
    iterations: int


def _minimise(kin: CompiledChain, targets: np.ndarray, q0: np.ndarray, anchor: np.ndarray, weight: float,
              step_tol: float, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projected LM on ``|p(q) − t|² + weight² |q − anchor|²`` per row; returns q and iterations.

    Joints at a limit whose gradient pushes outwards are held fixed for the step (projected Newton).
    A row stops when its step moves no joint by more than ``step_tol`` rad.
    """
    n, dof = q0.shape
    q = q0.copy()
    p, jac = kin.position_and_jacobian(q)
    cost = _cost(p, targets, q, anchor, weight)
    damping = np.full(n, _INITIAL_DAMPING)
    iterations = np.zeros(n, dtype=int)
    active = np.ones(n, dtype=bool)
    eye = np.eye(dof)
    for _ in range(_MAX_ITERATIONS):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        qi, j = q[idx], jac[idx]
        jt = np.swapaxes(j, -1, -2)
        grad = (jt @ (p[idx] - targets[idx])[..., None])[..., 0] + weight**2 * (qi - anchor[idx])
        free = ~(((qi <= lower) & (grad > 0)) | ((qi >= upper) & (grad < 0)))
        mask = free[:, :, None] & free[:, None, :]
        hessian = np.where(mask, jt @ j, 0.0) + (weight**2 + damping[idx, None, None]) * eye
        step = -np.linalg.solve(hessian, np.where(free, grad, 0.0)[..., None])[..., 0]
        trial = np.clip(qi + step, lower, upper)
        p_trial, jac_trial = kin.position_and_jacobian(trial)
        cost_trial = _cost(p_trial, targets[idx], trial, anchor[idx], weight)
        better = cost_trial < cost[idx]
        moved = np.abs(trial - qi).max(axis=-1)
        iterations[idx] += 1
        acc = idx[better]
        q[acc], p[acc], jac[acc], cost[acc] = trial[better], p_trial[better], jac_trial[better], cost_trial[better]
        damping[idx] = np.where(better, damping[idx] * _DAMPING_DOWN, damping[idx] * _DAMPING_UP)
        active[idx[(moved < step_tol) | (damping[idx] > _MAX_DAMPING)]] = False
    return q, iterations


def _cost(p: np.ndarray, targets: np.ndarray, q: np.ndarray, anchor: np.ndarray, weight: float) -> np.ndarray:
    return np.sum((p - targets) ** 2, axis=-1) + weight**2 * np.sum((q - anchor) ** 2, axis=-1)


def _check_targets(arm: Arm, targets: np.ndarray) -> np.ndarray:
    targets = np.asarray(targets, dtype=float)
    if targets.ndim != 2 or targets.shape[-1] != 3:
        raise ValueError(f"IK targets for {arm.robot_id} must be flange positions (x, y, z) in m, "
                         f"shape (n, 3); got shape {targets.shape}")
    if not np.all(np.isfinite(targets)):
        raise ValueError(f"IK target for {arm.robot_id} has NaN or inf: {targets[~np.isfinite(targets).all(-1)]}")
    return targets


def solve_ik_batch(arm: Arm, targets: np.ndarray, q_seed: np.ndarray | None = None,
                   tol: float = 1e-4) -> list[IKResult]:
    """Solve for each flange target in ``targets`` (n, 3); same per-target result as :func:`solve_ik`.

    ``q_seed`` (dof,) or (n, dof) replaces the home posture as the starting point; the solution is
    still drawn towards home. ``success`` means the flange is within ``tol`` m of the target.
    """
    targets = _check_targets(arm, targets)
    lower, upper = arm.lower + LIMIT_MARGIN, arm.upper - LIMIT_MARGIN
    home = np.broadcast_to(np.clip(arm.home_q, lower, upper), (len(targets), arm.dof))
    start = home if q_seed is None else np.broadcast_to(arm.check_q(q_seed, "IK seed"), home.shape)
    kin = CompiledChain(arm)
    q1, it1 = _minimise(kin, targets, np.clip(start, lower, upper), home, HOME_WEIGHT, _HOME_STEP_TOL, lower, upper)
    q2, it2 = _minimise(kin, targets, q1, q1, POLISH_WEIGHT, _POLISH_STEP_TOL, lower, upper)
    errors = np.linalg.norm(kin.position_and_jacobian(q2)[0] - targets, axis=-1)
    return [IKResult(q=q.copy(), error=float(e), success=bool(e < tol), iterations=int(i))
            for q, e, i in zip(q2, errors, it1 + it2, strict=True)]


def nearest_reaching_postures(arm: Arm, targets: np.ndarray, near: np.ndarray, tol: float = 1e-6,
                              max_steps: int = 20) -> np.ndarray:
    """(n, dof): each posture ``near`` (n, dof) moved onto its target (n, 3) by the shortest joint steps: Gauss–Newton
    steps of least norm (``Jᵀ(JJᵀ)⁻¹ e``), kept inside the limits, until the flange is within ``tol`` m. It keeps a
    posture's redundancy resolution, and takes a few steps when the posture is already close."""
    targets = _check_targets(arm, targets)
    lower, upper = arm.lower + LIMIT_MARGIN, arm.upper - LIMIT_MARGIN
    q = np.clip(np.array(np.broadcast_to(arm.check_q(near, "posture"), (len(targets), arm.dof))), lower, upper)
    kin = CompiledChain(arm)
    for _ in range(max_steps):
        p, jac = kin.position_and_jacobian(q)
        error = targets - p
        if np.abs(error).max() < tol:
            break
        jt = np.swapaxes(jac, -1, -2)
        step = (jt @ np.linalg.solve(jac @ jt + _INITIAL_DAMPING * np.eye(3), error[..., None]))[..., 0]
        q = np.clip(q + step, lower, upper)
    return q


def solve_ik(arm: Arm, target: np.ndarray, q_seed: np.ndarray | None = None, tol: float = 1e-4) -> IKResult:
    """Joint vector whose flange reaches ``target`` (3,), in m, in the world frame."""
    target = np.asarray(target, dtype=float)
    if target.shape != (3,):
        raise ValueError(f"IK target for {arm.robot_id} must be one flange position (x, y, z) in m, "
                         f"got shape {target.shape}")
    return solve_ik_batch(arm, target[None], q_seed, tol)[0]


def sample_reachable_targets(arm: Arm, n: int, rng: np.random.Generator,
                             spread: float = TARGET_SPREAD) -> np.ndarray:
    """(n, 3) flange positions of joint vectors drawn uniformly within ±``spread`` rad of home, inside the limits."""
    home = arm.home_q
    q = rng.uniform(np.maximum(arm.lower, home - spread), np.minimum(arm.upper, home + spread), size=(n, arm.dof))
    return flange_position(arm, q)
