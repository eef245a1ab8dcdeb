"""Reaching on any robot: run a planned joint trajectory from home and measure how far the flange ends from the target.

The same code for a simulator and a real arm; the one difference is how the arm gets home and how the flange is
measured: a simulator puts the arm there (a reset) and computes its flange, a real arm moves there
(:func:`~mtrl_robot.tasks.moves.move_to`) and its flange is the forward kinematics of the measured joints with the
robot's own model.
"""

from __future__ import annotations

import numpy as np

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.backends.interface import RobotBackend, SimBackend
from mtrl_robot.backends.trajectory import JointTrajectory
from mtrl_robot.tasks.moves import move_to


def reach(robot: RobotBackend, arm: Arm, trajectory: JointTrajectory, target: np.ndarray) -> float:
    """Execute ``trajectory`` (from ``arm``'s home posture) on ``robot``; the final flange-to-target distance, m.

    The distance is measured once the trajectory has finished and settled, whether or not it reached its end.
    """
    return float(np.linalg.norm(final_flange(robot, arm, trajectory) - np.asarray(target)))


def final_flange(robot: RobotBackend, arm: Arm, trajectory: JointTrajectory) -> np.ndarray:
    """Execute ``trajectory`` from ``arm``'s home posture on ``robot``; where the flange ends (3,), m, once the
    trajectory has finished and settled."""
    if isinstance(robot, SimBackend):
        robot.reset(arm.home_q)
    else:
        move_to(robot, arm.home_q, "home")
    robot.send_trajectory(trajectory)
    robot.wait()
    if isinstance(robot, SimBackend):
        return robot.flange_position()
    return flange_position(arm, robot.read_state().positions)
