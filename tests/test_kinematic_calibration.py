"""Kinematic calibration from demos' last postures, and paths whose ends are placed through a calibrated chain."""

import numpy as np
import pytest

from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import CompiledChain
from mtrl_robot.arms.ik import sample_reachable_targets, solve_ik_batch
from mtrl_robot.arms.kinematic_calibration import MAX_DEVIATION, calibrate, prior
from mtrl_robot.arms.population import load_config, perturb
from mtrl_robot.learning.reaching.calibrated_kinematics import calibrated_positions, placed_on_targets
from mtrl_robot.motions.reach import plan_robot_demos
from mtrl_robot.randomization import Distribution

CONFIG = load_config()
PANDA = load_family("panda")


def _flange(arm, q):
    return CompiledChain(arm).flange_positions(q)


def _postures(arm, n, seed):
    rng = np.random.default_rng(seed)
    return np.clip(arm.home_q + rng.uniform(-0.5, 0.5, (n, arm.dof)), arm.lower, arm.upper)


@pytest.mark.parametrize("family", ["panda", "ur5e"])
def test_a_robot_is_recovered_from_its_demos_last_postures(family):
    nominal = load_family(family)
    robot = perturb(nominal, CONFIG, 3)
    demos = _postures(robot, 8, 0)
    calibration = calibrate(nominal, CONFIG, demos, _flange(robot, demos))  # what the robot reached
    calibrated = calibration.arm
    assert calibration.plausible and calibration.miss < 1e-4 and calibration.deviation < 3
    fresh = _postures(robot, 20, 1)
    error = np.linalg.norm(_flange(calibrated, fresh) - _flange(robot, fresh), axis=1)
    nominal_error = np.linalg.norm(_flange(nominal, fresh) - _flange(robot, fresh), axis=1)
    assert error.max() < 1e-3 < nominal_error.mean()  # m: from centimetres off to below a millimetre
    assert calibrated.robot_id == f"{family}-calibrated" and calibrated.joint_names == nominal.joint_names
    assert calibrated.parameters[f"{nominal.joints[0].name}.link_length"] != 1.0


def test_the_posterior_spreads_where_the_demos_say_nothing_and_every_draw_still_explains_them():
    """One demo fixes three of the chain's dozens of parameters: chains drawn from the posterior all put the flange
    near that demo's target, but disagree about other postures by a sizeable part of what the population's robots
    do; eight demos leave far less to disagree about."""
    robot = perturb(PANDA, CONFIG, 5)
    demos = _postures(robot, 8, 4)
    fresh = _postures(robot, 20, 5)
    spread = {}
    for k in (1, 8):
        calibration = calibrate(PANDA, CONFIG, demos[:k], _flange(robot, demos[:k]))
        drawn = calibration.posterior_arms(16, np.random.default_rng(0))
        assert len(drawn) == 16 and all(a.joint_names == PANDA.joint_names for a in drawn)
        at_demo = np.array([_flange(a, demos[:1])[0] for a in drawn])
        assert np.linalg.norm(at_demo - _flange(robot, demos[:1])[0], axis=1).max() < 2e-3  # m
        elsewhere = np.array([_flange(a, fresh) for a in drawn])  # (draws, postures, 3)
        spread[k] = float(np.linalg.norm(elsewhere - elsewhere.mean(axis=0), axis=2).mean())
        again = calibration.posterior_arms(16, np.random.default_rng(0))
        np.testing.assert_array_equal(_flange(again[3], fresh), _flange(drawn[3], fresh))  # seeded
    population = np.array([_flange(perturb(PANDA, CONFIG, i), fresh) for i in range(16)])
    typical = float(np.linalg.norm(population - population.mean(axis=0), axis=2).mean())
    assert 0.2 * typical < spread[1] < typical and spread[8] < 0.1 * spread[1]


def test_without_demos_the_chain_is_the_prior_mean_and_unperturbed_parameters_stay_fixed():
    calibrated = calibrate(PANDA, CONFIG, np.zeros((0, 7)), np.zeros((0, 3))).arm
    q = _postures(PANDA, 5, 2)
    np.testing.assert_allclose(_flange(calibrated, q), _flange(PANDA, q), atol=1e-12)
    fixed = load_config(None)
    fixed = type(fixed)(perturbation={**fixed.perturbation, "link_length": Distribution("uniform", 1.0, 1.0)})
    robot = perturb(PANDA, CONFIG, 0)
    demos = _postures(robot, 3, 3)
    lengths = calibrate(PANDA, fixed, demos, _flange(robot, demos)).arm.parameters
    assert all(lengths[f"{j.name}.link_length"] == 1.0 for j in PANDA.joints)
    mean, std = prior(PANDA, CONFIG)
    assert mean.shape == std.shape == (4 * 8 + 7,) and (std > 0).all()


@pytest.mark.parametrize("dist", [Distribution("uniform", 0.9, 1.1), Distribution("log_uniform", 0.5, 2.0),
                                  Distribution("normal", -1.0, 1.0, 0.2, 0.01)])
def test_moments_are_those_of_the_draws(dist):
    rng = np.random.default_rng(0)
    draws = np.array([dist.sample(rng) for _ in range(100_000)])
    mean, std = dist.moments()
    assert mean == pytest.approx(draws.mean(), abs=0.01 * std) and std == pytest.approx(draws.std(), rel=0.01)


def test_demos_of_another_arm_are_no_robot_of_the_family_and_paths_stay_as_predicted():
    """A Gen3's demo given as the Panda's: the chain that would explain it is far outside the Panda population."""
    gen3 = perturb(load_family("gen3"), CONFIG, 5)
    demo = plan_robot_demos(gen3, 1, 0, 8)
    calibration = calibrate(PANDA, CONFIG, demo.positions[:, -1], demo.targets)
    assert not calibration.plausible and calibration.deviation > MAX_DEVIATION
    paths = np.repeat(PANDA.home_q[None, None], 8, axis=1)
    assert calibrated_positions(calibration, paths, demo.targets) is paths
    own = plan_robot_demos(perturb(PANDA, CONFIG, 5), 1, 0, 8)
    assert calibrate(PANDA, CONFIG, own.positions[:, -1], own.targets).plausible


def test_bad_calibration_input_is_one_clear_error():
    with pytest.raises(ValueError, match="one target per posture"):
        calibrate(PANDA, CONFIG, np.zeros((2, 7)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="finite"):
        calibrate(PANDA, CONFIG, np.full((1, 7), np.nan), np.zeros((1, 3)))


def test_placed_paths_start_where_they_did_and_end_on_the_target():
    robot = perturb(PANDA, CONFIG, 7)
    targets = sample_reachable_targets(robot, 4, np.random.default_rng(4))
    ends = np.array([r.q for r in solve_ik_batch(PANDA, targets)])  # the nominal chain's postures: off target
    s = np.linspace(0.0, 1.0, 16)[None, :, None] ** 2
    paths = PANDA.home_q + s * (ends - PANDA.home_q)[:, None]
    placed = placed_on_targets(robot, paths, targets)
    np.testing.assert_allclose(placed[:, 0], paths[:, 0])
    assert np.linalg.norm(_flange(robot, placed[:, -1]) - targets, axis=1).max() < 1e-4
    assert np.linalg.norm(_flange(robot, paths[:, -1]) - targets, axis=1).min() > 1e-3
    # a straight path stays straight, with its timing: each waypoint as far along as before
    direction = placed[:, -1] - placed[:, 0]
    along = np.einsum("ntd,nd->nt", placed - placed[:, :1], direction) / np.einsum("nd,nd->n", direction,
                                                                                   direction)[:, None]
    np.testing.assert_allclose(along, np.broadcast_to(s[..., 0], along.shape), atol=1e-9)
