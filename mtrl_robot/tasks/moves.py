"""Moves of the arm around a task's own motions, through the robot interface: run a motion, move gently to a posture."""

from __future__ import annotations

import numpy as np

from mtrl_robot.backends.interface import RobotBackend
from mtrl_robot.backends.trajectory import JointTrajectory, LimitFractions, TrajectoryError, shortest_duration

APPROACH_FRACTIONS = LimitFractions(velocity=0.3, acceleration=0.3)  # gentle: near a puck, a bench, a person
MIN_APPROACH_TIME = 1.0  # s


def approach_time(start: np.ndarray, goal: np.ndarray, velocity_limits: np.ndarray) -> float:
    """Duration of a rest-to-rest cubic from ``start`` to ``goal`` that peaks at ``APPROACH_FRACTIONS`` of the
    velocity limits (a cubic with zero end velocities peaks at 1.5·Δq/T)."""
    demand = 1.5 * np.abs(np.asarray(goal) - np.asarray(start))
    return float(shortest_duration(demand, np.asarray(velocity_limits), fractions=APPROACH_FRACTIONS,
                                   minimum=MIN_APPROACH_TIME))


def run(robot: RobotBackend, trajectory: JointTrajectory, stage: str) -> None:
    """Execute ``trajectory``; ``TrajectoryError`` naming ``stage`` if it is refused or does not reach its end."""
    try:
        result = robot.execute(trajectory)
    except TrajectoryError as exc:  # a SafetyError is one too
        raise TrajectoryError(f"{stage}: {exc}") from exc
    if not result.success:
        raise TrajectoryError(f"{stage}: {result.message}")


def move_to(robot: RobotBackend, goal: np.ndarray, stage: str) -> None:
    """A rest-to-rest move from the measured posture to ``goal``."""
    start = robot.read_state().positions
    duration = approach_time(start, goal, robot.limits.velocity)
    run(robot, JointTrajectory(robot.joint_names, np.array([0.0, duration]), np.vstack([start, goal]),
                               np.zeros((2, len(goal)))), stage)
