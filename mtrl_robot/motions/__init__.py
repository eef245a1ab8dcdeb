"""Demonstrations: planned reaching demos for robot populations, the dataset format, robot recordings.

- :mod:`~mtrl_robot.motions.reach` — IK + minimum-jerk time scaling, home → target (``plan_reach``).
- :mod:`~mtrl_robot.motions.obstacles` — OMPL planning around box obstacles (imports ``ompl``).
- :mod:`~mtrl_robot.motions.generate` — a whole population on several cores (``generate_demos``).
- :mod:`~mtrl_robot.motions.dataset` — the ``.npz`` dataset format (``DemoDataset``).
- :mod:`~mtrl_robot.motions.recording` — rosbag2/MCAP recordings ⇄ dataset (imports ``rosbags``).

This package uses only the arm models and the robot interface's trajectory type, never a simulator. Import the
submodules: the package itself imports none of them (so reading a dataset does not start the multiprocessing
demo generator).
"""
