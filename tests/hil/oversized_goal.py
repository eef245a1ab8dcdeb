"""Another client of the arm: builds a FollowJointTrajectory goal of N points outside the position limits,
prints ``ready`` once the action server is found, sends the goal when a line arrives on stdin and prints
``accepted`` or ``rejected``, then ends its node and exits (at once when stdin is closed instead). Run as
``python oversized_goal.py ACTION JOINT,JOINT,... N``.
"""

from __future__ import annotations

import sys

import rclpy
from control_msgs.action import FollowJointTrajectory
from rclpy.action import ActionClient
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from mtrl_robot.ros.conversions import to_duration

SERVER_TIMEOUT = 30.0  # s to find the action server
REPLY_TIMEOUT = 60.0  # s for the answer to a goal this large, on a loaded machine


def main() -> int:
    action, joints, count = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
    rclpy.init()
    node = rclpy.create_node("oversized_goal_client")
    client = ActionClient(node, FollowJointTrajectory, action)
    points = [JointTrajectoryPoint(positions=[100.0] * len(joints), time_from_start=to_duration(1e-3 * (k + 1)))
              for k in range(count)]
    goal = FollowJointTrajectory.Goal(trajectory=JointTrajectory(joint_names=joints, points=points))
    if not client.wait_for_server(timeout_sec=SERVER_TIMEOUT):
        print(f"no action server {action}", flush=True)
        return 1
    print("ready", flush=True)
    if not sys.stdin.readline():  # stdin closed: the test is over
        return 0
    future = client.send_goal_async(goal)
    rclpy.spin_until_future_complete(node, future, timeout_sec=REPLY_TIMEOUT)
    handle = future.result()
    print("no answer" if handle is None else "accepted" if handle.accepted else "rejected", flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
