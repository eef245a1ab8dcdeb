"""Demonstrations: planned reaching demos for robot populations, the dataset format, robot recordings.

- :mod:`~mtrl_robot.demos.planner` — IK + minimum-jerk time scaling, home → target (``plan_reach``).
- :mod:`~mtrl_robot.demos.obstacles` — OMPL planning around box obstacles (imports ``ompl``).
- :mod:`~mtrl_robot.demos.generate` — a whole population on several cores (``generate_demos``).
- :mod:`~mtrl_robot.demos.dataset` — the ``.npz`` dataset format (``DemoDataset``).
- :mod:`~mtrl_robot.demos.recording` — rosbag2/MCAP recordings ⇄ dataset (imports ``rosbags``).

This package uses only the arm models and the robot interface's trajectory type, never a simulator.
"""

from mtrl_robot.demos.dataset import DatasetError, DemoDataset, concat, load
from mtrl_robot.demos.generate import generate_demos
from mtrl_robot.demos.planner import N_WAYPOINTS, PlannedDemos, plan_reach, plan_robot_demos

__all__ = ["N_WAYPOINTS", "DatasetError", "DemoDataset", "PlannedDemos", "concat", "generate_demos", "load",
           "plan_reach", "plan_robot_demos"]
