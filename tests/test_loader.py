"""The one robot loader and the one backend factory: every way of naming a robot and an engine, and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

from mtrl_robot.arms import population as populations
from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.loader import URDF, load_arm
from mtrl_robot.arms.urdf import arm_to_urdf
from mtrl_robot.backends.factory import make_backend
from mtrl_robot.core.errors import ConfigError


def test_a_robot_by_family_population_id_and_urdf(tmp_path):
    assert load_arm("gen3").joint_names == load_family("gen3").joint_names
    population = populations.generate(populations.load_config(robots_per_family=2, families=["yumi"]))
    path = populations.save(population, tmp_path / "population.json")
    robot = population.family("yumi")[1]
    np.testing.assert_array_equal(load_arm(robot.robot_id, path).home_q, robot.home_q)
    panda = load_family("panda")
    urdf = tmp_path / "panda.urdf"
    urdf.write_text(arm_to_urdf(panda))
    assert load_arm(URDF, urdf_file=urdf, flange_link=panda.flange_link).joint_names == panda.joint_names


@pytest.mark.parametrize("arguments, message", [
    ((URDF,), "urdf_file: robot 'urdf' needs a URDF file"),
    ((URDF, None, "arm.urdf"), "arm.urdf: flange_link: a URDF arm needs the name of its flange link"),
    (("panda", None, "arm.urdf", "tool0"), "arm.urdf: robot: a URDF file is given but the robot is 'panda'"),
])
def test_an_incomplete_urdf_request_is_refused_naming_the_field(arguments, message):
    with pytest.raises(ConfigError, match=message):
        load_arm(*arguments)


def test_the_factory_builds_each_engine_and_refuses_others():
    arm = load_family("panda")
    for name, control_dt in (("mujoco", 0.004), ("pybullet", 1 / 120)):
        backend = make_backend(name, arm, control_dt=control_dt)
        try:
            assert backend.joint_names == arm.joint_names and backend.control_dt == pytest.approx(control_dt)
        finally:
            backend.close()
    with pytest.raises(ConfigError, match="backend: unknown backend 'gazebo'"):
        make_backend("gazebo", arm)
