"""Kinematic calibration from demonstrations: an arm's chain estimated from where its demos ended.

A demo's last posture q puts the flange on its target t. With K demos that gives 3K equations
``p(q_k; θ) = t_k`` for the kinematic perturbations θ of the family's nominal chain — the ones a population
draws (:func:`~mtrl_robot.arms.population.perturbed_kinematics`): a length factor and a 3-D offset per joint origin
and the flange, a zero offset per joint. With few demos there are far fewer equations than parameters, so the
estimate is the maximum a posteriori one under the population's own perturbation distributions, each taken as a
normal with its mean and standard deviation (:meth:`~mtrl_robot.randomization.Distribution.moments`):

    minimise  Σ_k |p(q_k; θ) − t_k|² / σ²  +  Σ_i ((θ_i − μ_i) / s_i)²

σ (``noise``) is how far a demo's last posture may leave the flange from its target. Parameters the population
does not perturb (s_i = 0) stay at their mean. Solved with SciPy's trust-region least squares.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.optimize import least_squares

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.fk import CompiledChain
from mtrl_robot.arms.population import PopulationConfig, perturbed_kinematics

NOISE = 1e-4  # m: how far a demo's last posture may leave the flange from its target (chosen on validation robots)


def prior(nominal: Arm, config: PopulationConfig) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of θ = (length factors (dof + 1), offsets (dof + 1, 3) flattened, zero offsets
    (dof)) under the population's perturbation distributions."""
    n = nominal.dof
    moments = {name: config.perturbation[name].moments() for name in ("link_length", "link_offset",
                                                                      "joint_zero_offset")}
    sizes = {"link_length": n + 1, "link_offset": 3 * (n + 1), "joint_zero_offset": n}
    mean = np.concatenate([np.full(sizes[name], moments[name][0]) for name in sizes])
    std = np.concatenate([np.full(sizes[name], moments[name][1]) for name in sizes])
    return mean, std


def arm_from_parameters(nominal: Arm, theta: np.ndarray) -> Arm:
    """The nominal arm with the kinematic perturbations θ (see :func:`prior` for their order)."""
    n = nominal.dof
    return perturbed_kinematics(nominal, theta[:n + 1], theta[n + 1:4 * (n + 1)].reshape(n + 1, 3),
                                theta[4 * (n + 1):])


def calibrate(nominal: Arm, config: PopulationConfig, postures: np.ndarray, targets: np.ndarray,
              noise: float = NOISE) -> Arm:
    """The arm whose flange best reaches ``targets`` (K, 3) from ``postures`` (K, dof), MAP under the population's
    perturbations of ``nominal``; with K = 0 the prior's mean."""
    postures = np.asarray(postures, dtype=float).reshape(-1, nominal.dof)
    targets = np.asarray(targets, dtype=float).reshape(-1, 3)
    if len(postures) != len(targets):
        raise ValueError(f"calibration needs one target per posture, got {len(postures)} postures and "
                         f"{len(targets)} targets")
    if not (np.isfinite(postures).all() and np.isfinite(targets).all()):
        raise ValueError("calibration postures and targets must be finite")
    mean, std = prior(nominal, config)
    free = std > 0
    if not len(postures) or not free.any():
        return _named(arm_from_parameters(nominal, mean), nominal, mean)

    def parameters(x: np.ndarray) -> np.ndarray:
        theta = mean.copy()
        theta[free] = mean[free] + std[free] * x  # fitted in prior standard deviations: a well-scaled problem
        return theta

    def residuals(x: np.ndarray) -> np.ndarray:
        reached = CompiledChain(arm_from_parameters(nominal, parameters(x))).flange_positions(postures)
        return np.concatenate([((reached - targets) / noise).ravel(), x])

    theta = parameters(least_squares(residuals, np.zeros(int(free.sum())), method="trf", x_scale=1.0).x)
    return _named(arm_from_parameters(nominal, theta), nominal, theta)


def _named(arm: Arm, nominal: Arm, theta: np.ndarray) -> Arm:
    """The calibrated arm, named as such, with θ in its parameters (named as a population robot's are)."""
    n = nominal.dof
    names = [*(j.name for j in nominal.joints), "flange"]
    offsets = theta[n + 1:4 * (n + 1)].reshape(n + 1, 3)
    parameters = {f"{name}.link_length": float(theta[i]) for i, name in enumerate(names)}
    parameters.update({f"{name}.offset_{a}": float(offsets[i, k]) for i, name in enumerate(names)
                       for k, a in enumerate("xyz")})
    parameters.update({f"{j.name}.zero_offset": float(theta[4 * (n + 1) + i]) for i, j in enumerate(nominal.joints)})
    return replace(arm, robot_id=f"{nominal.family}-calibrated", parameters=parameters)
