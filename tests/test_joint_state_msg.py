"""The arm node's joint-state message, built once and refilled every tick, and its control step at high rates."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import JointState as JointStateMsg

from mtrl_robot.backends.mujoco_model import TIMESTEP
from mtrl_robot.backends.trajectory import JointState
from mtrl_robot.ros.arm_node import fine_steps
from mtrl_robot.ros.conversions import fill_joint_state_msg, joint_state_from_msg

NAMES = ("j1", "j2", "j3")


def test_a_reused_message_carries_each_state_it_is_filled_with():
    msg = JointStateMsg()
    first = JointState(NAMES, np.array([0.1, -0.2, 0.3]), np.array([1.0, 2.0, -3.0]), 0.0)
    second = JointState(NAMES, np.array([0.4, 0.5, -0.6]), np.array([0.0, -1.0, 0.5]), 0.0)
    filled = fill_joint_state_msg(msg, first, Time(sec=3, nanosec=500))
    assert filled is msg and tuple(msg.name) == NAMES and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (3, 500)
    kept = joint_state_from_msg(msg)
    fill_joint_state_msg(msg, second, Time(sec=4, nanosec=0))
    again = joint_state_from_msg(msg)
    assert np.array_equal(kept.positions, first.positions) and np.array_equal(kept.velocities, first.velocities)
    assert np.array_equal(again.positions, second.positions) and np.array_equal(again.velocities, second.velocities)
    assert again.names == NAMES and again.stamp == 4.0


def test_mujoco_steps_at_the_tick_period_only_above_its_own_rate():
    assert fine_steps("mujoco", 1 / 250) == {} and fine_steps("mujoco", TIMESTEP) == {}
    assert fine_steps("mujoco", 1e-3) == {"control_dt": 1e-3, "timestep": 1e-3}
    assert fine_steps("pybullet", 1e-3) == {}
