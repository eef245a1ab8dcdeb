"""With one demo, is adapting predicted better than not adapting? The adaptation guard's third check for reaching.

One demo cannot be left out to test the adapted model on, and fitting it shows only overshoot
(:mod:`mtrl_robot.meta.guard`). It does tell more about the robot: its last posture puts the flange on its target,
and the kinematics it calibrates (:mod:`~mtrl_robot.learning.reaching.calibrated_kinematics`) are a model of the
robot that the meta-trained and the adapted model can both be measured on. One posture leaves most of the chain's
parameters to the family's spread, and the estimate agrees with the demo as closely as the adapted model does, so
one estimated chain flatters adapting. :func:`single_demo_judge` measures on ``CHECK_CHAINS`` chains drawn from the
calibration's posterior instead (:meth:`~mtrl_robot.arms.kinematic_calibration.Calibration.posterior_arms`, seeded
with the robot's id): a model's predicted error on each is the mean distance by which its paths to ``CHECK_TARGETS``
targets of the family's nominal workspace end from them through that chain. The guard keeps the adapted model only
when at least the share ``CHECK_CONFIDENCE`` of the chains predicts it ``CHECK_MARGIN_CM`` better than the
initialisation. A demo that no robot of the family could have made (the calibration is not plausible: another arm's
motion, a wrong target) is not adapted to at all. The share was chosen on validation robots of the full preset
(``mtrl-robot reaching single-demo``, :mod:`~mtrl_robot.learning.reaching.single_demo_confidence`): of the shares
that give up none of the mean gain of adapting there, the one leaving the fewest of them worse than the
initialisation, the most cautious on a tie.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mtrl_robot.arms.fk import CompiledChain
from mtrl_robot.arms.ik import sample_reachable_targets
from mtrl_robot.learning.reaching.calibrated_kinematics import calibrate_from_demos, family_population
from mtrl_robot.learning.reaching.checkpoint import ReachingCheckpoint
from mtrl_robot.motions.dataset import DemoDataset
from mtrl_robot.motions.reach import robot_rng

CHECK_TARGETS = 32  # workspace targets the adapted and the initial model are compared on
CHECK_SEED = 1007  # of those targets (with the robot's id)
CHECK_CHAINS = 64  # chains drawn from the demo's calibration to predict on
CHECK_MARGIN_CM = 0.05  # how much better adapting on one demo must be predicted on a chain
CHECK_CONFIDENCE = 0.9  # the share of the chains that must predict it


def single_demo_judge(state: ReachingCheckpoint, demos: DemoDataset
                      ) -> tuple[Callable[[dict], np.ndarray] | None, str | None]:
    """The guard's judge for the first of ``demos`` — parameters (``state.learner``'s) → their predicted error in cm
    on each of ``CHECK_CHAINS`` chains drawn from the demo's calibration, the mean distance by which the model's paths
    end from ``CHECK_TARGETS`` targets through it — and None; or None and why the demo is refused, when that
    calibration is not plausible (no robot of the family explains the demo: another arm's motion, a wrong target)."""
    arm = demos.robots[0]
    nominal, population = family_population(state.preset, arm.family, fallback=state.info["family"])
    calibration = calibrate_from_demos(nominal, population, demos, 1, state.preset.adapt.demo_precision)
    if not calibration.plausible:
        return None, (f"no {nominal.family} robot could have made the demo: its chain would need a parameter "
                      f"{calibration.deviation:.1f} standard deviations from the population's mean, and misses the "
                      f"demo's target by {calibration.miss * 1e3:.2f} mm")
    rng = robot_rng(CHECK_SEED, arm.robot_id)
    targets = sample_reachable_targets(nominal, CHECK_TARGETS, rng)
    chains = [CompiledChain(a) for a in calibration.posterior_arms(CHECK_CHAINS, rng)]

    def predicted_miss(params: dict) -> np.ndarray:
        ends = np.clip(arm.home_q + state.offsets(targets, params)[:, -1], arm.lower, arm.upper)
        return np.array([np.linalg.norm(c.flange_positions(ends) - targets, axis=1).mean() for c in chains]) * 100.0

    return predicted_miss, None
