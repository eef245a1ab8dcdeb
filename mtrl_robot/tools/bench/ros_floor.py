"""rclpy's own share of the policy node's latency: the same hops with nothing done in them.

- ``relay``: subscribes ``/joint_states`` (keeping the latest, as the policy node does) and ``FLOOR/target``; each
  target sends one goal built at start-up (the robot's joint names, ``goal_points`` points at home with their
  velocities, the policy node's goal size) to ``FLOOR/follow_joint_trajectory``: no planning, no check.
- ``server``: a FollowJointTrajectory action server there that accepts every goal (rclpy stamps it as it
  accepts, as the arm node's server does) and aborts it at once: no goal check, nothing run.

Both spin rclpy's EventsExecutor with their threads at SCHED_FIFO ``executor_priority``, as the policy and arm
nodes do, and import neither torch nor the policy node, so that they start quickly. Run as ``python -m
mtrl_robot.tools.bench.ros_floor relay|server --ros-args -p robot:=panda -p goal_points:=8``.
"""

from __future__ import annotations

import sys

import numpy as np
from control_msgs.action import FollowJointTrajectory
from geometry_msgs.msg import PointStamped
from rclpy.action import ActionClient, ActionServer, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.experimental import EventsExecutor
from rclpy.node import Node
from sensor_msgs.msg import JointState

from mtrl_robot.arms.families import load_family
from mtrl_robot.backends.trajectory import JointTrajectory
from mtrl_robot.ros.hardware_backend import goal_msg
from mtrl_robot.ros.realtime import EXECUTOR_PRIORITY, serve_at_priority
from mtrl_robot.ros.run import ros_arguments, run_node

FLOOR = "/floor"  # namespace of the relay's target topic and the server's action
ROLES = ("relay", "server")


def floor_command(role: str, goal_points: int, robot: str = "panda",
                  executor_priority: int = EXECUTOR_PRIORITY) -> list[str]:
    """The command line that runs the ``role`` node for ``robot``'s joints, the relay sending goals of
    ``goal_points`` points, its threads at ``executor_priority``."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return [sys.executable, "-m", __name__, role,
            *ros_arguments({"robot": robot, "goal_points": goal_points, "executor_priority": executor_priority})]


class FloorRelay(Node):
    """Answers each target with the same goal."""

    def __init__(self) -> None:
        super().__init__("floor_relay")
        serve_at_priority(self, self.declare_parameter("executor_priority", EXECUTOR_PRIORITY).value)
        arm = load_family(self.declare_parameter("robot", "panda").value)
        points = self.declare_parameter("goal_points", 0).value
        if points < 2:
            raise ValueError(f"goal_points must be at least 2, got {points}")
        times = np.linspace(0.1, 0.8, points)
        self._goal = goal_msg(JointTrajectory(arm.joint_names, times, np.tile(arm.home_q, (points, 1)),
                                              np.zeros((points, arm.dof))))
        self._client = ActionClient(self, FollowJointTrajectory, f"{FLOOR}/follow_joint_trajectory")
        self.latest: JointState | None = None
        self.create_subscription(JointState, "/joint_states", self._on_joint_state, 10)
        self.create_subscription(PointStamped, f"{FLOOR}/target", self._on_target, 10)

    def _on_joint_state(self, msg: JointState) -> None:
        self.latest = msg

    def _on_target(self, msg: PointStamped) -> None:
        self._client.send_goal_async(self._goal)


class FloorServer(Node):
    """Accepts every goal and aborts it."""

    def __init__(self) -> None:
        super().__init__("floor_server")
        serve_at_priority(self, self.declare_parameter("executor_priority", EXECUTOR_PRIORITY).value)
        ActionServer(self, FollowJointTrajectory, f"{FLOOR}/follow_joint_trajectory", self._execute,
                     goal_callback=lambda goal: GoalResponse.ACCEPT)

    @staticmethod
    def _execute(goal_handle: ServerGoalHandle) -> FollowJointTrajectory.Result:
        goal_handle.abort()
        return FollowJointTrajectory.Result()


def main(args: list[str] | None = None) -> int:
    args = sys.argv if args is None else args
    role = args[1] if len(args) > 1 else ""
    if role not in ROLES:
        print(f"usage: python -m {__name__} {{{'|'.join(ROLES)}}} [--ros-args ...]", file=sys.stderr)
        return 2
    node = FloorRelay if role == "relay" else FloorServer
    return run_node(f"floor_{role}", node, lambda: EventsExecutor(), args)


if __name__ == "__main__":
    sys.exit(main())
