"""The home posture learning starts from: checked when a family gives one, chosen when it does not.

Demonstrations start at home and reach targets drawn from joint vectors within ±``TARGET_SPREAD`` rad of it
(:func:`~mtrl_robot.arms.ik.sample_reachable_targets`). A home is good for learning when the flange moves well
in every direction throughout that neighbourhood; the measure is the smallest singular value σ_min of the flange's
position Jacobian (m/rad: how far the flange moves per radian in its worst direction), averaged over the
neighbourhood. :func:`choose_home` maximises it, less ``STAY_NEAR`` times the squared distance from the URDF's own
home (:func:`default_home`, the designer's reference posture): the arm bends only as far as the conditioning pays
for, rather than folding up against its limits, and joints that do not move the flange (a base yaw, a flange roll)
stay where the URDF has them. The search stays inside the limits (``HOME_MARGIN`` of each joint's range away from
them), from seeded random candidates refined by a shrinking coordinate search. :func:`check_home` refuses a given
home at a joint limit or at a singularity (condition number σ_max/σ_min above ``MAX_CONDITION``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.fk import CompiledChain
from mtrl_robot.arms.ik import TARGET_SPREAD
from mtrl_robot.core.errors import ConfigError

HOME_MARGIN = 0.1  # fraction of each joint's range a chosen home keeps from either limit
AT_LIMIT = 0.01  # rad: a given home this close to a limit is at it
MAX_CONDITION = 100.0  # σ_max/σ_min of the flange's position Jacobian above which a given home is singular
CANDIDATES = 256  # random homes scored before the refinement
SAMPLES = 64  # joint vectors of each home's neighbourhood its score averages over
STEPS = (0.2, 0.1, 0.05, 0.02)  # rad, the coordinate search's step sizes, largest first
STAY_NEAR = 0.02  # m/rad per rad²: what bending away from the URDF's own home costs (see choose_home)


@dataclass(frozen=True)
class HomeChoice:
    """A chosen home and how it compares with the one the URDF implies (0, or the middle of the limits)."""

    q: tuple[float, ...]
    sigma_min: float  # m/rad, the mean over the neighbourhood
    default_sigma_min: float  # m/rad, the same for the URDF's own home
    condition: float  # σ_max/σ_min at the chosen home itself
    seed: int


def jacobian_singular_values(arm: Arm, q: np.ndarray) -> np.ndarray:
    """(..., dof) → the singular values of the flange's position Jacobian, (..., 3), largest first."""
    return np.linalg.svd(CompiledChain(arm).position_and_jacobian(q)[1], compute_uv=False)


def condition_number(arm: Arm, q: np.ndarray) -> float:
    """σ_max/σ_min of the flange's position Jacobian at ``q`` (inf at an exact singularity)."""
    sigma = jacobian_singular_values(arm, np.asarray(q, float))
    return float(sigma[0] / sigma[-1]) if sigma[-1] > 0 else float("inf")


def check_home(arm: Arm, home: np.ndarray, source, field: str = "home") -> None:
    """Refuse a home outside the limits, at one, or singular: one line naming the joint or the condition number."""
    for i, (q, joint) in enumerate(zip(home, arm.joints, strict=True)):
        if not joint.lower <= q <= joint.upper:
            raise ConfigError(source, f"{field}[{i}]",
                              f"{q:g} is outside the limits of {joint.name} [{joint.lower:g}, {joint.upper:g}]")
        if min(q - joint.lower, joint.upper - q) < AT_LIMIT:
            raise ConfigError(source, f"{field}[{i}]", f"{q:g} is at a limit of {joint.name} [{joint.lower:g}, "
                              f"{joint.upper:g}]; demos need room to move both ways (keep {AT_LIMIT:g} rad clear)")
    condition = condition_number(arm, home)
    if condition > MAX_CONDITION:
        raise ConfigError(source, field, f"the home is singular: the flange's position Jacobian has condition number "
                          f"{condition:.3g} (at most {MAX_CONDITION:g}); bend the arm, or leave home out to have one "
                          "chosen")


def default_home(arm: Arm) -> np.ndarray:
    """The home a URDF implies: 0 where 0 is within a joint's limits, else the middle of the limits."""
    return np.array([0.0 if j.lower <= 0.0 <= j.upper else (j.lower + j.upper) / 2 for j in arm.joints])


class _Scorer:
    """Mean σ_min over each home's neighbourhood, with the same random draws for every home (a fair comparison)."""

    def __init__(self, arm: Arm, rng: np.random.Generator):
        self.arm, self.kin = arm, CompiledChain(arm)
        self.unit = rng.uniform(size=(SAMPLES, arm.dof))
        self.anchor = default_home(arm)

    def sigma_min(self, homes: np.ndarray) -> np.ndarray:
        """(n, dof) → (n,) mean σ_min (m/rad) over each home's neighbourhood, clipped to the limits."""
        low = np.maximum(self.arm.lower, homes - TARGET_SPREAD)[:, None]
        high = np.minimum(self.arm.upper, homes + TARGET_SPREAD)[:, None]
        q = low + self.unit[None] * (high - low)
        sigma = np.linalg.svd(self.kin.position_and_jacobian(q)[1], compute_uv=False)
        return sigma[..., -1].mean(axis=1)

    def __call__(self, homes: np.ndarray) -> np.ndarray:
        return self.sigma_min(homes) - STAY_NEAR * ((homes - self.anchor) ** 2).sum(axis=1)


def choose_home(arm: Arm, seed: int = 0) -> HomeChoice:
    """The home with the best-conditioned neighbourhood inside the limits' margins; deterministic given ``seed``."""
    rng = np.random.default_rng(seed)
    scorer = _Scorer(arm, rng)
    margin = HOME_MARGIN * (arm.upper - arm.lower)
    low, high = arm.lower + margin, arm.upper - margin
    candidates = np.vstack([np.clip(scorer.anchor, low, high), rng.uniform(low, high, (CANDIDATES, arm.dof))])
    scores = scorer(candidates)
    best, score = candidates[int(np.argmax(scores))], float(scores.max())
    for step in STEPS:
        improved = True
        while improved:
            moves = np.repeat(best[None], 2 * arm.dof, axis=0)
            moves[np.arange(arm.dof), np.arange(arm.dof)] += step
            moves[arm.dof + np.arange(arm.dof), np.arange(arm.dof)] -= step
            moves = np.clip(moves, low, high)
            move_scores = scorer(moves)
            improved = bool(move_scores.max() > score + 1e-12)
            if improved:
                best, score = moves[int(np.argmax(move_scores))], float(move_scores.max())
    best = np.round(best, 4)  # as written into a family file
    return HomeChoice(q=tuple(float(v) + 0.0 for v in best), sigma_min=float(scorer.sigma_min(best[None])[0]),
                      default_sigma_min=float(scorer.sigma_min(scorer.anchor[None])[0]),
                      condition=condition_number(arm, best), seed=seed)
