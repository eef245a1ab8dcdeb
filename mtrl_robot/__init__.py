"""mtrl_robot: a sim-to-real robot learning stack with ROS 2 integration."""

__version__ = "0.1.0"
