"""Joint trajectories: refusal messages name the joint and the limit; interpolation is exact at waypoints."""

import numpy as np
import pytest

from mtrl_robot.backends.trajectory import (
    GOAL_TOLERANCE,
    LIMIT_FRACTIONS,
    SETTLE_TIME,
    GoalTolerance,
    JointLimits,
    JointTrajectory,
    TrajectoryError,
    check_trajectory,
    retime,
    shortest_duration,
    thinned,
)

NAMES = ("a", "b", "c")
LIMITS = JointLimits(NAMES, np.array([-1.0, -2.0, 0.0]), np.array([1.0, 2.0, 3.0]),
                     np.array([1.0, 1.0, 2.0]), np.array([10.0, 10.0, 5.0]))


def traj(names=NAMES, times=(0.0, 1.0, 2.0), positions=None, velocities=None):
    positions = np.array([[0.0, 0.0, 1.0], [0.5, 0.5, 1.5], [0.9, 1.0, 2.0]]) if positions is None else positions
    return JointTrajectory(tuple(names), np.array(times), np.asarray(positions, float), velocities)


def test_reordered_by_name():
    shuffled = traj(names=("c", "a", "b"), positions=[[1.0, 0.0, 0.0], [1.5, 0.5, 0.5], [2.0, 0.9, 1.0]])
    ordered = check_trajectory(shuffled, LIMITS)
    assert ordered.joint_names == NAMES
    np.testing.assert_allclose(ordered.positions, traj().positions)


@pytest.mark.parametrize("bad, message", [
    (dict(names=("a", "b", "x")), r"unknown joints \['x'\]"),
    (dict(names=("a", "b", "b")), "duplicate"),
    (dict(times=(0.0, 1.0, 1.0)), "increase strictly"),
    (dict(positions=[[0.0, 0.0, 1.0], [np.nan, 0.5, 1.5], [0.9, 1.0, 2.0]]), "NaN"),
    (dict(positions=[[0.0, 0.0, 1.0], [0.5, 0.5, 1.5], [0.9, 1.0, 3.2]]), r"c: position 3.2000 rad at point 2"),
    (dict(times=(0.0, 0.2, 2.0)), r"a: velocity 2.500 rad/s between points 0 and 1 exceeds the limit 1.000"),
    (dict(positions=np.zeros((3, 2))), "shape"),
])
def test_refusals(bad, message):
    with pytest.raises(TrajectoryError, match=message):
        check_trajectory(traj(**bad), LIMITS)


def test_missing_joint():
    t = JointTrajectory(("a", "b"), np.array([1.0]), np.zeros((1, 2)))
    with pytest.raises(TrajectoryError, match=r"missing joints \['c'\]"):
        check_trajectory(t, LIMITS)


def test_sampling_linear_and_cubic():
    t = traj()
    np.testing.assert_allclose(t.sample(1.0)[0], t.positions[1])
    np.testing.assert_allclose(t.sample(0.5)[0], (t.positions[0] + t.positions[1]) / 2)
    np.testing.assert_allclose(t.sample(5.0)[0], t.positions[-1])
    cubic = traj(velocities=np.zeros((3, 3)))
    p, v = cubic.sample(1.0)
    np.testing.assert_allclose(p, t.positions[1])
    np.testing.assert_allclose(v, 0.0, atol=1e-12)
    eps = 1e-6
    fd = (cubic.sample(0.3 + eps)[0] - cubic.sample(0.3 - eps)[0]) / (2 * eps)
    np.testing.assert_allclose(cubic.sample(0.3)[1], fd, atol=1e-6)


def test_array_sampling_matches_scalar_and_holds_at_ends():
    for t in (traj(), traj(times=(0.5, 1.0, 2.0), velocities=np.ones((3, 3)) * 0.1)):
        times = np.array([0.0, 0.2, 0.75, 1.0, 1.3, 2.0, 2.5])
        positions, velocities = t.sample(times)
        for k, tk in enumerate(times):
            p, v = t.sample(tk)
            np.testing.assert_allclose(positions[k], p)
            np.testing.assert_allclose(velocities[k], v)
        np.testing.assert_allclose(velocities[times >= 2.0], 0.0)
        np.testing.assert_allclose(positions[-1], t.positions[-1])
    p, v = traj(times=(0.5, 1.0, 2.0)).sample(0.1)
    np.testing.assert_allclose(p, traj().positions[0])
    np.testing.assert_allclose(v, 0.0)


def test_shortest_duration_puts_the_binding_joint_at_its_limit_fraction():
    delta = np.array([0.5, 0.1, 1.0])
    peak_v, peak_a = 15 / 8, 10 / np.sqrt(3)  # of a minimum-jerk move per unit displacement and duration
    duration = float(shortest_duration(peak_v * delta, LIMITS.velocity, peak_a * delta, np.full(3, 4.0)))
    fractions = np.maximum(peak_v * delta / duration / LIMITS.velocity,
                           peak_a * delta / duration**2 / 4.0)
    assert fractions.max() == pytest.approx(LIMIT_FRACTIONS.velocity)
    assert float(shortest_duration(np.zeros(3), LIMITS.velocity, minimum=0.5)) == 0.5


def test_retime_slows_down_to_the_limit_fractions_and_never_speeds_up():
    fast = traj(times=(0.0, 0.2, 0.4), velocities=np.array([[0.0] * 3, [2.0, 2.0, 1.0], [0.0] * 3]))
    acceleration = np.array([5.0, 5.0, 5.0])
    slow = retime(fast, LIMITS.velocity, acceleration)
    scale = slow.duration / fast.duration
    assert scale > 1
    np.testing.assert_allclose(slow.velocities, fast.velocities / scale)
    times = np.linspace(0.0, slow.duration, 2001)
    _, velocities = slow.sample(times)
    accelerations = np.gradient(velocities, times, axis=0)
    used = max((np.abs(velocities) / LIMITS.velocity).max(), (np.abs(accelerations) / acceleration).max())
    assert used == pytest.approx(LIMIT_FRACTIONS.velocity, rel=0.01)
    relaxed = traj(times=(0.0, 10.0, 20.0))
    np.testing.assert_array_equal(retime(relaxed, LIMITS.velocity, acceleration).times, relaxed.times)
    linear = retime(traj(times=(0.0, 0.1, 0.2)), LIMITS.velocity)  # position only: the steepest step sets it
    assert (np.abs(np.diff(linear.positions, axis=0)) / np.diff(linear.times)[:, None] / LIMITS.velocity).max() \
        == pytest.approx(LIMIT_FRACTIONS.velocity)


def quintic_move(times: np.ndarray, duration: float, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions and velocities of a minimum-jerk move by ``delta`` over ``duration`` s, at ``times``."""
    tau = times / duration
    s, ds = tau**3 * (10 - 15 * tau + 6 * tau**2), 30 * tau**2 * (1 - tau) ** 2 / duration
    return s[:, None] * delta, ds[:, None] * delta


def test_thinned_keeps_evenly_spread_points_with_their_velocities_and_the_motion():
    delta = np.array([0.8, -0.5, 1.2])
    times = np.linspace(0.0, 2.0, 32)
    dense = JointTrajectory(NAMES, times, *quintic_move(times, 2.0, delta))
    thin = thinned(dense, 8)
    rows = np.searchsorted(times, thin.times)
    assert len(rows) == 8 and rows[0] == 0 and rows[-1] == 31 and np.all(np.diff(rows) >= 4)
    np.testing.assert_array_equal(thin.times, times[rows])
    np.testing.assert_array_equal(thin.positions, dense.positions[rows])
    np.testing.assert_array_equal(thin.velocities, dense.velocities[rows])
    fine = np.linspace(0.0, 2.0, 401)  # the cubic segments through the kept points still follow the move
    np.testing.assert_allclose(thin.sample(fine)[0], quintic_move(fine, 2.0, delta)[0], atol=2e-3)
    assert thinned(dense, 32) is dense and thinned(dense, 40) is dense
    positions_only = JointTrajectory(NAMES, times, dense.positions)
    assert thinned(positions_only, 8) is positions_only  # linear segments would not follow the move
    with pytest.raises(ValueError, match="at least 2"):
        thinned(dense, 1)


def test_goal_tolerance_verdict_settling_reached_and_late():
    tolerance = GoalTolerance.default(3)
    off = np.array([0.0, 2 * GOAL_TOLERANCE, 0.0])
    assert tolerance.verdict(NAMES, 0.5, off) is None
    reached, message = tolerance.verdict(NAMES, 0.5, off / 4)
    assert reached and message == "goal reached"
    reached, message = tolerance.verdict(NAMES, SETTLE_TIME + 0.01, off)
    assert not reached and message.startswith("b: position error +0.02 rad exceeds the goal tolerance 0.01 rad")
    assert tolerance.violation(NAMES, np.array([np.nan, 0.0, 0.0])).startswith("a:")
