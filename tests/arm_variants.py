"""Robots unlike the nominal ones, shared by the kinematics, IK, URDF and backend tests."""

from dataclasses import replace

import numpy as np

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.population import PopulationConfig, perturb
from mtrl_robot.randomization import Distribution

# Stronger than config/population.yaml, and joint orientations are tilted too.
STRONG = PopulationConfig(seed=123, perturbation={
    "link_length": Distribution("uniform", 0.9, 1.1),
    "link_offset": Distribution("uniform", -0.01, 0.01),
    "joint_zero_offset": Distribution("uniform", -0.1, 0.1),
    "link_mass": Distribution("uniform", 0.8, 1.2),
    "joint_damping": Distribution("uniform", 0.5, 2.0),
    "joint_friction": Distribution("uniform", 0.5, 2.0),
})


def perturbed(arm: Arm, seed: int = 0) -> Arm:
    """A population member of ``arm``: every origin moved and tilted, every zero offset nonzero, base moved."""
    robot = perturb(arm, STRONG, seed)
    rng = np.random.default_rng(seed)
    joints = tuple(replace(j, rpy=tuple(np.add(j.rpy, rng.normal(0.0, 0.02, 3)))) for j in robot.joints)
    return replace(robot, joints=joints, robot_id=f"{arm.family}-perturbed", base_xyz=(0.1, -0.2, 0.3),
                   base_rpy=(0.1, 0.2, -0.3))
