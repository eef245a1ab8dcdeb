"""mtrl_robot: a sim-to-real robot learning stack with ROS 2 integration."""

import os

# Offscreen rendering without a display; must be set before mujoco is first imported.
os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"
