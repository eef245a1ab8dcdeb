import numpy as np
import pytest

from mtrl_robot.learning.reaching.predict import unit_grid, waypoint_velocities


@pytest.mark.parametrize("points", [2, 3, 8, 32])
@pytest.mark.parametrize("even", [True, False])
def test_waypoint_velocities_are_numpys_gradient_value_for_value_with_rest_at_both_ends(points, even):
    rng = np.random.default_rng(points)
    times = 1.7 * unit_grid(points) if even else np.cumsum(rng.uniform(0.01, 0.2, points))
    positions = rng.normal(size=(points, 7))
    expected = np.gradient(positions, times, axis=0)
    expected[[0, -1]] = 0.0
    np.testing.assert_array_equal(waypoint_velocities(times, positions), expected)


def test_the_unit_grid_is_linspace_and_cannot_be_changed_by_a_caller():
    np.testing.assert_array_equal(unit_grid(11), np.linspace(0.0, 1.0, 11))
    with pytest.raises(ValueError, match="read-only"):
        unit_grid(11)[0] = 1.0
