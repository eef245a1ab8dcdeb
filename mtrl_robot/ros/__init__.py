"""ROS 2 nodes and message conversions; the only part of mtrl_robot that imports rclpy."""
