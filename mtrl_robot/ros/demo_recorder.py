"""Records demonstrations as rosbag2 MCAP bags, one bag per episode (see :mod:`mtrl_robot.motions.recording`).

- Subscribes ``joint_states_topic`` (``sensor_msgs/JointState``) and ``target_topic``
  (``geometry_msgs/PointStamped``, frame ``world``).
- ``~/start_episode`` (``std_srvs/Trigger``): opens ``<output_dir>/demo_<UTC time>_<n>`` and writes the latest
  target, stamped now, so it starts the episode; refused without a target or while an episode runs.
- ``~/stop_episode`` (``std_srvs/Trigger``): writes the joint states still queued, then closes the bag; the reply's
  ``message`` is its path.
- So that a bag replays in a viewer, it also records ``robot_description_topic`` and ``tf_static_topic`` (transient
  local: the latest description and every fixed frame received, written when an episode starts or when they
  arrive during one) and ``tf_topic`` (within episodes), each in the bag with its publishers' QoS. The first
  description and fixed frames received are logged.

Joint states and ``tf`` are written only inside an episode. An episode is streamed into a hidden partial folder, on disk
at most :data:`~mtrl_robot.motions.bag_stream.FLUSH_PERIOD` after it was received, and becomes a complete bag
in one rename when stopped; SIGINT/SIGTERM completes an open episode the same way. After ``kill -9`` or a
power cut, ``mtrl-robot recordings recover <output_dir>`` makes a bag of what reached the disk; the recorder
names such leftovers when it starts and never deletes them itself.

``output_dir`` must be writable when the node starts (otherwise it exits with code 1 and one line). A file
system error later (folder made read-only, disk full) answers the service with ``success=false`` and the OS
error; the node keeps serving.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

from geometry_msgs.msg import PointStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.serialization import serialize_message
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from mtrl_robot.core.errors import ConfigError
from mtrl_robot.motions.bag_stream import BagStream, partial_folders
from mtrl_robot.motions.recording import (
    DESCRIPTION_TOPIC,
    DESCRIPTION_TYPE,
    TF_STATIC_TOPIC,
    TF_TOPIC,
    TF_TYPE,
)
from mtrl_robot.ros.conversions import bag_qos
from mtrl_robot.ros.parameters import TopicName, declare_parameters
from mtrl_robot.ros.robot_description import LATCHED_QOS, TF_QOS
from mtrl_robot.ros.run import run_node

PARAMETERS = {  # name: (default, description[, TopicName])
    "output_dir": ("recordings", "Folder the episode bags are written to"),
    "joint_states_topic": ("/joint_states", "JointState topic to record", TopicName()),
    "target_topic": ("/demo_target", "PointStamped topic of the demonstration target (frame world)", TopicName()),
    "robot_description_topic": (DESCRIPTION_TOPIC, "String topic of the robot's URDF (transient local)", TopicName()),
    "tf_topic": (TF_TOPIC, "TFMessage topic of the moving frames", TopicName()),
    "tf_static_topic": (TF_STATIC_TOPIC, "TFMessage topic of the fixed frames (transient local)", TopicName()),
}


def stamp_ns(stamp) -> int:
    """A ``builtin_interfaces/Time`` in integer nanoseconds (exact)."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def writable_folder(path: Path) -> Path:
    """``path``, created if missing, once a file could be created in it; ``ValueError`` naming ``output_dir``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ValueError(f"output_dir: {path} is not a writable folder: {exc.strerror or exc}") from None
    return path


class DemoRecorder(Node):
    """Writes each episode (its target, then the joint states until stopped) as one MCAP bag."""

    def __init__(self) -> None:
        super().__init__("demo_recorder")
        p = declare_parameters(self, PARAMETERS)
        self.output_dir = writable_folder(Path(p["output_dir"]))
        self.topics = (p["joint_states_topic"], p["target_topic"])
        self.description_topic, self.tf_topic, self.tf_static_topic = (p["robot_description_topic"], p["tf_topic"],
                                                                       p["tf_static_topic"])
        named: dict[str, str] = {}
        for parameter in ("joint_states_topic", "target_topic", "robot_description_topic", "tf_topic",
                          "tf_static_topic"):
            if p[parameter] in named:
                raise ConfigError(None, parameter, f"{p[parameter]} is also {named[p[parameter]]}; each parameter "
                                  "must name a topic of its own")
            named[p[parameter]] = parameter
        self.serialized_topics = {self.description_topic: (DESCRIPTION_TYPE, [bag_qos(LATCHED_QOS)]),
                                  self.tf_static_topic: (TF_TYPE, [bag_qos(LATCHED_QOS)]),
                                  self.tf_topic: (TF_TYPE, [bag_qos(TF_QOS)])}
        self._lock = threading.Lock()
        self._bag: BagStream | None = None
        self._write_error: OSError | None = None
        self._target: PointStamped | None = None
        self._description: String | None = None
        self._static_frames: dict[str, object] = {}  # child frame: its latest TransformStamped
        self._count = 0
        self._joint_states_seen = False
        self._joint_states = self.create_subscription(JointState, self.topics[0], self._on_joint_state, 100)
        self.create_subscription(PointStamped, self.topics[1], self._on_target, 10)
        self.create_subscription(String, self.description_topic, self._on_description, LATCHED_QOS)
        self.create_subscription(TFMessage, self.tf_static_topic, self._on_static_frames, LATCHED_QOS)
        self.create_subscription(TFMessage, self.tf_topic, self._on_frames, TF_QOS)
        self.create_service(Trigger, "~/start_episode", self._start)
        self.create_service(Trigger, "~/stop_episode", self._stop)
        self.get_logger().info(f"recording {self.topics[0]} and {self.topics[1]} into {self.output_dir}")
        leftovers = partial_folders(self.output_dir)
        if leftovers:
            self.get_logger().warning(f"{len(leftovers)} unfinished episode(s) in {self.output_dir} (e.g. "
                                      f"{leftovers[0].name}); make bags of them with: mtrl-robot recordings "
                                      f"recover {self.output_dir}")

    def _on_target(self, msg: PointStamped) -> None:
        self._target = msg

    def _on_joint_state(self, msg: JointState) -> None:
        if not self._joint_states_seen:
            self._joint_states_seen = True
            self.get_logger().info(f"received joint states on {self.topics[0]}")
        with self._lock:
            self._write(self.topics[0], lambda bag: bag.write_joint_state(stamp_ns(msg.header.stamp), msg.name,
                                                                          msg.position, msg.velocity))

    def _on_description(self, msg: String) -> None:
        if self._description is None:
            self.get_logger().info(f"received the robot description on {self.description_topic}")
        with self._lock:
            self._description = msg
            self._write_description(self.get_clock().now().nanoseconds)

    def _on_static_frames(self, msg: TFMessage) -> None:
        if not self._static_frames:
            self.get_logger().info(f"received fixed frames on {self.tf_static_topic}")
        with self._lock:
            self._static_frames.update((t.child_frame_id, t) for t in msg.transforms)
            self._write_static_frames(self.get_clock().now().nanoseconds)

    def _on_frames(self, msg: TFMessage) -> None:
        stamp = stamp_ns(msg.transforms[0].header.stamp) if msg.transforms else self.get_clock().now().nanoseconds
        with self._lock:
            self._write(self.tf_topic, lambda bag: bag.write_serialized(self.tf_topic, stamp, serialize_message(msg)))

    def _write_description(self, stamp: int) -> None:
        """Write the latest description, if any, into the open episode (call holding the lock)."""
        if self._description is not None:
            data = serialize_message(self._description)
            self._write(self.description_topic, lambda bag: bag.write_serialized(self.description_topic, stamp, data))

    def _write_static_frames(self, stamp: int) -> None:
        """Write every fixed frame received, if any, into the open episode as one message (call holding the lock)."""
        if self._static_frames:
            data = serialize_message(TFMessage(transforms=list(self._static_frames.values())))
            self._write(self.tf_static_topic, lambda bag: bag.write_serialized(self.tf_static_topic, stamp, data))

    def _write(self, topic: str, write) -> None:
        """``write(bag)`` into the open episode, if any and no write has failed in it (call holding the lock)."""
        if self._bag is not None and self._write_error is None:
            try:
                write(self._bag)
            except OSError as exc:
                self._write_error = exc
                self.get_logger().error(f"{self._bag.partial}: cannot write {topic}: {exc}")

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
                point = self._target.point
                try:
                    bag = BagStream(self.output_dir / name, joint_states_topic=self.topics[0],
                                    target_topic=self.topics[1], serialized_topics=self.serialized_topics)
                    now = self.get_clock().now().nanoseconds
                    bag.write_target(now, (point.x, point.y, point.z))
                    bag.flush()
                except OSError as exc:
                    response.success, response.message = False, f"cannot start episode {name}: {exc}"
                    self.get_logger().error(response.message)
                    return response
                self._bag, self._write_error = bag, None
                self._write_description(now)
                self._write_static_frames(now)
                response.success, response.message = True, str(bag.path)
        return response

    def _stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._write_waiting_joint_states()
        try:
            path = self.finish()
        except OSError as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success = path is not None
        response.message = str(path) if path is not None else "no episode is recording"
        return response

    def _write_waiting_joint_states(self) -> None:
        """Write the joint states received but not yet taken from the subscription's queue.

        The executor takes one message per subscription, then the stop request: a recorder running behind would
        otherwise close the episode without the queued end of the motion.
        """
        subscription = self._joint_states.handle
        with subscription:
            while (taken := subscription.take_message(JointState, False)) is not None:
                self._on_joint_state(taken[0])

    def finish(self) -> Path | None:
        """Complete the open episode's bag (if any) and return its path.

        ``OSError`` if it could not be written completely; what reached the disk stays in its partial folder.
        """
        with self._lock:
            bag, self._bag = self._bag, None
            write_error, self._write_error = self._write_error, None
        if bag is None:
            return None
        try:
            path = bag.close()
        except OSError as exc:
            message = (f"episode {bag.path} not completed: {exc}; what reached the disk is in {bag.partial} "
                       f"(mtrl-robot recordings recover {bag.path.parent})")
            self.get_logger().error(message)
            raise OSError(exc.errno, message) from None
        if write_error is not None:
            message = f"episode {path} lacks the messages received after a write error: {write_error}"
            self.get_logger().error(message)
            raise OSError(write_error.errno, message)
        self.get_logger().info(f"episode written to {path}")
        return path


def main(args: list[str] | None = None) -> int:
    """Run until SIGINT or SIGTERM, then complete any open episode (exit code 0); exit code 1 on a configuration
    error."""
    return run_node("demo_recorder", DemoRecorder, SingleThreadedExecutor, args, before_shutdown=_finish)


def _finish(node: DemoRecorder, _executor: SingleThreadedExecutor) -> None:
    try:
        node.finish()
    except OSError:
        pass  # logged by finish, with where the episode's data is


if __name__ == "__main__":
    sys.exit(main())
