"""Reaching through calibrated kinematics: the model proposes the motion, the arm's own chain places its end.

The same K demos that adapt a model also calibrate the robot's kinematics: their last postures and targets give a
MAP estimate of the family's kinematic perturbations under the run's population distributions
(:mod:`mtrl_robot.arms.kinematic_calibration`). A predicted path then keeps its shape and redundancy resolution,
but its end moves to the nearest posture that reaches the target through the calibrated chain
(:func:`~mtrl_robot.arms.ik.nearest_reaching_postures`), and every waypoint moves by the same correction in
proportion to how far along the path it is. With K = 0 the chain is the family's nominal one. Demos no robot of the
family could have made (:attr:`~mtrl_robot.arms.kinematic_calibration.Calibration.plausible`) leave the paths as
the model predicts them.
"""

from __future__ import annotations

import numpy as np

from mtrl_robot.arms import population as populations
from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.families import load_families, load_family
from mtrl_robot.arms.fk import CompiledChain
from mtrl_robot.arms.ik import nearest_reaching_postures
from mtrl_robot.arms.kinematic_calibration import Calibration, calibrate
from mtrl_robot.learning.reaching.presets import Preset
from mtrl_robot.motions.dataset import DemoDataset


def family_population(preset: Preset, family: str, fallback: str | None = None
                      ) -> tuple[Arm, populations.PopulationConfig]:
    """The family's nominal arm and the population settings the run drew its robots with; ``fallback``'s when the
    run did not train on ``family`` (e.g. a robot recorded under another family name, adapted with a checkpoint of
    ``fallback``)."""
    data = preset.data
    specs = dict(zip(load_families(data.families, None, "data.families"), data.families, strict=True))
    if family not in specs and fallback is not None:
        family = fallback
    if family not in specs:
        raise ValueError(f"family {family} is not one of the run's families {list(specs)}")
    config = populations.load_config(data.population_config, seed=data.population_seed, families=[specs[family]],
                                     robots_per_family=data.robots_per_family)
    return load_family(specs[family]), config


def calibrate_from_demos(nominal: Arm, population: populations.PopulationConfig, demos: DemoDataset, k: int,
                         precision: float) -> Calibration:
    """The robot's chain calibrated around ``nominal`` from its first ``k`` demos (their last postures and targets
    only), trusting them to ``precision`` m (a preset's ``adapt.demo_precision``)."""
    return calibrate(nominal, population, demos.positions[:k, -1], demos.targets[:k], precision)


def calibrated_positions(calibration: Calibration, positions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``positions`` placed on ``targets`` through a plausible calibration; an implausible one leaves them as they
    are."""
    return placed_on_targets(calibration.arm, positions, targets) if calibration.plausible else positions


def calibration_summary(nominal: Arm, calibration: Calibration, demos: DemoDataset, k: int) -> str:
    """One line: how closely the calibrated and the nominal chain put the flange on the first ``k`` demos' targets,
    or why the calibration is not used."""
    if not calibration.plausible:
        return (f"kinematic calibration not used: no robot of the family explains the {k} demo(s) (a parameter "
                f"{calibration.deviation:.1f} standard deviations from the population's mean, targets missed by up "
                f"to {calibration.miss * 1e3:.2f} mm); paths end where the model puts them")
    postures, targets = demos.positions[:k, -1], demos.targets[:k]
    nominal_miss = np.linalg.norm(CompiledChain(nominal).flange_positions(postures) - targets, axis=1).max()
    return (f"kinematics calibrated from {k} demo(s): their last postures put the flange within "
            f"{calibration.miss * 1e3:.2f} mm of their targets (the family's nominal chain: "
            f"{nominal_miss * 1e3:.2f} mm)")


def placed_on_targets(arm: Arm, positions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(n, T, dof) paths whose ends reach ``targets`` (n, 3) through ``arm``'s kinematics, each waypoint moved by
    the end's correction times its progress along the path (0 at the start, 1 at the end)."""
    positions = np.asarray(positions, dtype=float)
    ends = nearest_reaching_postures(arm, targets, positions[:, -1])
    travel = positions[:, -1] - positions[:, 0]  # (n, dof)
    along = np.einsum("ntd,nd->nt", positions - positions[:, :1], travel)
    length = np.einsum("nd,nd->n", travel, travel)[:, None]
    even = np.broadcast_to(np.linspace(0.0, 1.0, positions.shape[1]), along.shape)
    progress = np.where(length > 1e-12, along / np.maximum(length, 1e-12), even).clip(0.0, 1.0)
    progress[:, 0], progress[:, -1] = 0.0, 1.0
    placed = positions + progress[..., None] * (ends - positions[:, -1])[:, None]
    return np.clip(placed, arm.lower, arm.upper)
