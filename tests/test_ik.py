"""Position IK: reaches reachable targets, stays inside the limits, and is one smooth function of the target."""


import numpy as np
import pytest
from arm_variants import perturbed

from mtrl_robot.arms import ik
from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import flange_position

FAMILIES = ("panda", "gen3", "yumi", "baxter", "ur5e")


@pytest.fixture(params=[(f, p) for f in FAMILIES for p in (False, True)],
                ids=[f"{f}-{'perturbed' if p else 'nominal'}" for f in FAMILIES for p in (False, True)])
def arm(request) -> Arm:
    family, is_perturbed = request.param
    nominal = load_family(family)
    return perturbed(nominal) if is_perturbed else nominal


def strictly_inside(arm: Arm, q: np.ndarray) -> bool:
    return bool(np.all((q > arm.lower) & (q < arm.upper)))


def test_reaches_random_targets_within_limits(arm):
    targets = ik.sample_reachable_targets(arm, 40, np.random.default_rng(0))
    results = ik.solve_ik_batch(arm, targets)
    q = np.stack([r.q for r in results])
    reached = np.linalg.norm(flange_position(arm, q) - targets, axis=-1)
    assert all(r.success for r in results) and reached.max() < 1e-3
    np.testing.assert_allclose([r.error for r in results], reached, atol=1e-12)
    assert strictly_inside(arm, q)


def test_single_solve_equals_batch_and_repeats_exactly(arm):
    targets = ik.sample_reachable_targets(arm, 3, np.random.default_rng(1))
    batch = ik.solve_ik_batch(arm, targets)
    for target, in_batch in zip(targets, batch, strict=True):
        first, second = ik.solve_ik(arm, target), ik.solve_ik(arm, target.copy())
        assert np.array_equal(first.q, second.q) and first.iterations == second.iterations
        np.testing.assert_allclose(first.q, in_batch.q, rtol=0, atol=1e-12)


def test_nearby_targets_give_nearby_solutions(arm):
    rng = np.random.default_rng(2)
    targets = ik.sample_reachable_targets(arm, 20, rng)
    nudge = rng.normal(size=targets.shape)
    nudge *= 1e-3 / np.linalg.norm(nudge, axis=-1, keepdims=True)  # 1 mm
    a, b = ik.solve_ik_batch(arm, targets), ik.solve_ik_batch(arm, targets + nudge)
    assert max(np.abs(x.q - y.q).max() for x, y in zip(a, b, strict=True)) < 0.05


def test_solutions_vary_continuously_along_a_line():
    arm = load_family("panda")
    ends = ik.sample_reachable_targets(arm, 2, np.random.default_rng(3))
    line = ends[0] + np.linspace(0.0, 1.0, 100)[:, None] * (ends[1] - ends[0])
    q = np.stack([r.q for r in ik.solve_ik_batch(arm, line)])
    spacing_mm = 1e3 * np.linalg.norm(line[1] - line[0])
    assert np.abs(np.diff(q, axis=0)).max() / spacing_mm < 0.05


def test_limits_hold_for_targets_reached_only_at_a_limit():
    arm = load_family("gen3")
    q_at_limits = np.clip(arm.home_q + np.random.default_rng(4).uniform(-2, 2, (20, arm.dof)), arm.lower, arm.upper)
    results = ik.solve_ik_batch(arm, flange_position(arm, q_at_limits))
    assert all(strictly_inside(arm, r.q) for r in results)
    assert np.mean([r.error < 1e-3 for r in results]) > 0.9


def test_seeded_solve_reaches_target():
    arm = load_family("yumi")
    target = ik.sample_reachable_targets(arm, 1, np.random.default_rng(5))[0]
    result = ik.solve_ik(arm, target, q_seed=arm.home_q + 0.2)
    assert result.success and strictly_inside(arm, result.q)


def test_unreachable_target_is_reported():
    result = ik.solve_ik(load_family("panda"), np.array([3.0, 0.0, 0.5]))
    assert not result.success and result.error > 1.0


@pytest.mark.parametrize("target", [[np.nan, 0.0, 0.5], [0.3, np.inf, 0.5]])
def test_non_finite_target_raises(target):
    with pytest.raises(ValueError, match="NaN or inf"):
        ik.solve_ik(load_family("panda"), np.array(target))


@pytest.mark.parametrize("target", [np.zeros(2), np.zeros((2, 3)), np.zeros(4)])
def test_wrong_target_shape_raises(target):
    with pytest.raises(ValueError, match="shape"):
        ik.solve_ik(load_family("panda"), target)
    with pytest.raises(ValueError, match="shape"):
        ik.solve_ik_batch(load_family("panda"), target.ravel())


def test_sampled_targets_are_deterministic():
    arm = load_family("baxter")
    a = ik.sample_reachable_targets(arm, 10, np.random.default_rng(7))
    b = ik.sample_reachable_targets(arm, 10, np.random.default_rng(7))
    assert a.shape == (10, 3) and np.array_equal(a, b)
    assert not np.array_equal(a, ik.sample_reachable_targets(arm, 10, np.random.default_rng(8)))
