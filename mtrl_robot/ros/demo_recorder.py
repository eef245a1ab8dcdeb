"""Records demonstrations as rosbag2 MCAP bags, one bag per episode (see :mod:`mtrl_robot.motions.recording`).

- Subscribes ``joint_states_topic`` (``sensor_msgs/JointState``) and ``target_topic``
  (``geometry_msgs/PointStamped``, frame ``world``).
- ``~/start_episode`` (``std_srvs/Trigger``): opens ``<output_dir>/demo_<UTC time>_<n>`` and writes the latest
  target, stamped now, so it starts the episode; refused without a target or while an episode runs.
- ``~/stop_episode`` (``std_srvs/Trigger``): closes the bag; the reply's ``message`` is its path.

Joint states are written only inside an episode. A bag is written in a hidden temporary folder and renamed
when complete; SIGINT/SIGTERM completes an open episode the same way, so no half-written bag is left behind.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import rclpy
from geometry_msgs.msg import PointStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from mtrl_robot.motions.recording import BagStream
from mtrl_robot.ros.parameters import declare_parameters

PARAMETERS = {  # name: (default, description)
    "output_dir": ("recordings", "Folder the episode bags are written to"),
    "joint_states_topic": ("/joint_states", "JointState topic to record"),
    "target_topic": ("/demo_target", "PointStamped topic of the demonstration target (frame world)"),
}


class DemoRecorder(Node):
    """Writes each episode (its target, then the joint states until stopped) as one MCAP bag."""

    def __init__(self) -> None:
        super().__init__("demo_recorder")
        p = declare_parameters(self, PARAMETERS)
        self.output_dir = Path(p["output_dir"])
        self.topics = (p["joint_states_topic"], p["target_topic"])
        self._lock = threading.Lock()
        self._bag: BagStream | None = None
        self._target: PointStamped | None = None
        self._count = 0
        self.create_subscription(JointState, p["joint_states_topic"], self._on_joint_state, 100)
        self.create_subscription(PointStamped, p["target_topic"], self._on_target, 10)
        self.create_service(Trigger, "~/start_episode", self._start)
        self.create_service(Trigger, "~/stop_episode", self._stop)
        self.get_logger().info(f"recording {p['joint_states_topic']} and {p['target_topic']} into {self.output_dir}")

    def _on_target(self, msg: PointStamped) -> None:
        self._target = msg

    def _on_joint_state(self, msg: JointState) -> None:
        with self._lock:
            if self._bag is not None:
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                self._bag.write_joint_state(stamp, msg.name, msg.position, msg.velocity)

    def _start(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            if self._bag is not None:
                response.success, response.message = False, f"episode {self._bag.path} is already recording"
            elif self._target is None:
                response.success, response.message = False, f"no target received on {self.topics[1]} yet"
            elif self._target.header.frame_id not in ("", "world"):
                response.success, response.message = False, (f"target in frame '{self._target.header.frame_id}'; "
                                                             "expected 'world'")
            else:
                self._count += 1
                name = f"demo_{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}_{self._count:04d}"
                self._bag = BagStream(self.output_dir / name, joint_states_topic=self.topics[0],
                                      target_topic=self.topics[1])
                point = self._target.point
                self._bag.write_target(self.get_clock().now().nanoseconds, (point.x, point.y, point.z))
                response.success, response.message = True, str(self._bag.path)
        return response

    def _stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        path = self.finish()
        response.success = path is not None
        response.message = str(path) if path is not None else "no episode is recording"
        return response

    def finish(self) -> Path | None:
        """Complete the open episode's bag (if any) and return its path."""
        with self._lock:
            bag, self._bag = self._bag, None
        if bag is None:
            return None
        path = bag.close()
        self.get_logger().info(f"episode written to {path}")
        return path


def main(args: list[str] | None = None) -> int:
    """Run until SIGINT or SIGTERM, then complete any open episode (exit code 0)."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    executor = SingleThreadedExecutor()
    node = DemoRecorder()
    try:
        executor.add_node(node)
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.1)
        node.finish()
    finally:
        executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
