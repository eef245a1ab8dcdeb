"""The one robot loader: a family (built-in name or family file), a robot id of a population file, or a URDF with
its flange link."""

from __future__ import annotations

from pathlib import Path

from mtrl_robot.arms import population as populations
from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.family_file import urdf_family
from mtrl_robot.core.errors import ConfigError

URDF = "urdf"  # the robot name that asks for ``urdf_file``


def load_arm(robot: str, population_file: str | Path | None = None, urdf_file: str | Path | None = None,
             flange_link: str | None = None) -> Arm:
    """The arm ``robot`` names: ``'urdf'`` for ``urdf_file`` cut at ``flange_link``; with ``population_file`` its
    robot of that id; else the family ``robot`` names (a built-in name or a family file's path). A URDF without a
    family file gets a chosen home, like a family file without one."""
    if robot != URDF:
        if urdf_file:
            raise ConfigError(urdf_file, "robot", f"a URDF file is given but the robot is '{robot}'; name it "
                              f"'{URDF}' to load the URDF")
        if population_file:
            return populations.load(population_file).get(robot)
        return load_family(robot)
    if not urdf_file:
        raise ConfigError(None, "urdf_file", f"robot '{URDF}' needs a URDF file and its flange link")
    if not flange_link:
        raise ConfigError(urdf_file, "flange_link", "a URDF arm needs the name of its flange link")
    return urdf_family(urdf_file, flange_link)
