"""Kinematic calibration from demonstrations: an arm's chain estimated from where its demos ended.

A demo's last posture q puts the flange on its target t. With K demos that gives 3K equations
``p(q_k; θ) = t_k`` for the kinematic perturbations θ of the family's nominal chain — the ones a population
draws (:func:`~mtrl_robot.arms.population.perturbed_kinematics`): a length factor and a 3-D offset per joint origin
and the flange, a zero offset per joint. With few demos there are far fewer equations than parameters, so the
estimate is the maximum a posteriori one under the population's own perturbation distributions, each taken as a
normal with its mean and standard deviation (:meth:`~mtrl_robot.randomization.Distribution.moments`):

    minimise  Σ_k |p(q_k; θ) − t_k|² / σ²  +  Σ_i ((θ_i − μ_i) / s_i)²

σ (``noise``) is how far a demo's last posture may leave the flange from its target. Parameters the population
does not perturb (s_i = 0) stay at their mean. Solved with SciPy's trust-region least squares. Around the estimate,
the posterior is taken as normal with covariance (JᵀJ)⁻¹, J the residuals' Jacobian there (the Laplace
approximation; the prior's rows keep it invertible): :meth:`Calibration.posterior_arms` draws robots that explain the
demos as well as the family's spread allows, so a caller can ask how much a conclusion depends on the one estimate.
A fit that needs a parameter more than ``MAX_DEVIATION`` standard deviations from its mean, or still misses a demo's
target by more than ``MAX_MISS``, describes no robot of the family (e.g. a demo of another arm): it is reported as
implausible, and callers keep the uncalibrated prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import least_squares

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.fk import CompiledChain
from mtrl_robot.arms.population import PopulationConfig, perturbed_kinematics

NOISE = 1e-4  # m: how far a demo's last posture may leave the flange from its target (chosen on validation robots)
MAX_DEVIATION = 4.0  # prior standard deviations: a fitted parameter farther from its mean is no robot of the family
MAX_MISS = 1e-3  # m: a fitted chain that leaves a demo's flange farther from its target does not explain the demos


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


@dataclass(frozen=True)
class Calibration:
    """A calibrated chain and how much to trust it: ``deviation`` is the largest parameter's distance from its
    population mean in standard deviations, ``miss`` the farthest the fitted chain leaves a demo's flange from its
    target (m). Demos no robot of the family could have made (another arm's, a wrong target) need a chain far outside
    the population or still miss: :attr:`plausible` is then False. ``nominal``, ``theta``, ``scale`` and
    ``covariance`` describe the posterior :meth:`posterior_arms` draws from."""

    arm: Arm
    deviation: float
    miss: float
    nominal: Arm = field(repr=False)
    theta: np.ndarray = field(repr=False)  # the estimate, every parameter (see :func:`prior`)
    scale: np.ndarray = field(repr=False)  # each parameter's prior standard deviation (0: not perturbed)
    covariance: np.ndarray = field(repr=False)  # of the perturbed parameters, in prior standard deviations

    @property
    def plausible(self) -> bool:
        return self.deviation <= MAX_DEVIATION and self.miss <= MAX_MISS

    def posterior_arms(self, count: int, rng: np.random.Generator) -> list[Arm]:
        """``count`` chains drawn from the Laplace approximation of the posterior around :attr:`arm`."""
        free = self.scale > 0
        steps = rng.multivariate_normal(np.zeros(int(free.sum())), self.covariance, size=count)
        arms = []
        for step in steps:
            theta = self.theta.copy()
            theta[free] += self.scale[free] * step
            arms.append(arm_from_parameters(self.nominal, theta))
        return arms


def calibrate(nominal: Arm, config: PopulationConfig, postures: np.ndarray, targets: np.ndarray,
              noise: float = NOISE) -> Calibration:
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
    x = np.zeros(int(free.sum()))

    def parameters(x: np.ndarray) -> np.ndarray:
        theta = mean.copy()
        theta[free] = mean[free] + std[free] * x  # fitted in prior standard deviations: a well-scaled problem
        return theta

    def reached(x: np.ndarray) -> np.ndarray:
        return CompiledChain(arm_from_parameters(nominal, parameters(x))).flange_positions(postures)

    covariance = np.eye(x.size)  # without demos: the prior itself
    if len(postures) and free.any():
        fit = least_squares(lambda x: np.concatenate([((reached(x) - targets) / noise).ravel(), x]), x,
                            method="trf")
        x, covariance = fit.x, np.linalg.inv(fit.jac.T @ fit.jac)
    theta = parameters(x)
    miss = float(np.linalg.norm(reached(x) - targets, axis=1).max()) if len(postures) else 0.0
    return Calibration(replace(arm_from_parameters(nominal, theta), robot_id=f"{nominal.family}-calibrated"),
                       float(np.abs(x).max()) if x.size else 0.0, miss, nominal, theta, std, covariance)

