"""Conversions between ROS 2 messages and mtrl_robot's own types.

- ``sensor_msgs/JointState`` ↔ :class:`~mtrl_robot.backends.trajectory.JointState`; header stamps ↔ float seconds.
- ``trajectory_msgs/JointTrajectory`` ↔ :class:`~mtrl_robot.backends.trajectory.JointTrajectory`:
  ``time_from_start`` ↔ seconds; velocities empty in every point ↔ ``None``; a point whose positions,
  velocities or accelerations do not have one value per joint name (velocities and accelerations may be
  empty) raises ``ValueError`` naming the point. Accelerations are otherwise ignored.
- ``control_msgs/action/FollowJointTrajectory`` goals → :class:`~mtrl_robot.backends.controller.Goal` (one
  with more points than the controller takes is refused before conversion), controller feedback → its Feedback
  message.
- Domain randomization ↔ ``std_srvs/srv/Trigger``: the response's ``message`` holds JSON
  ``{"sampled": {name: value}, "applied": {name: value}}`` — what the randomizer drew and what the engine
  reports after applying it (``null`` where the engine has nothing to read back).
- An rclpy ``QoSProfile`` → the QoS a bag keeps for a topic (``rosbags`` ``Qos``), so a replay offers the same.
- Rendered frames → ``sensor_msgs/Image`` (``rgb8``) and a pinhole ``sensor_msgs/CameraInfo``;
  8-bit colour Images (:data:`~mtrl_robot.perception.colour_blob.ENCODINGS`) → (H, W, C) uint8 arrays.
"""

from __future__ import annotations

import array
import json
import math
from collections.abc import Iterable, Mapping

import numpy as np
from builtin_interfaces.msg import Duration, Time
from control_msgs.action import FollowJointTrajectory
from geometry_msgs.msg import PointStamped
from rclpy.duration import Duration as RclpyDuration
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image
from sensor_msgs.msg import JointState as JointStateMsg
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg
from trajectory_msgs.msg import JointTrajectoryPoint

from mtrl_robot.backends.controller import MAX_POINTS, Feedback, Goal, JointToleranceRequest, too_many_points
from mtrl_robot.backends.trajectory import JointState, JointTrajectory
from mtrl_robot.perception.colour_blob import ENCODINGS


def point_msg(xyz, frame_id: str = "world") -> PointStamped:
    """A position (m) as a ``PointStamped`` in ``frame_id`` (stamp zero: "latest" in tf terms)."""
    msg = PointStamped()
    msg.header.frame_id = frame_id
    msg.point.x, msg.point.y, msg.point.z = (float(v) for v in xyz)
    return msg


def seconds(stamp: Time | Duration) -> float:
    """A ``builtin_interfaces`` Time or Duration in seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def _split(value: float) -> tuple[int, int]:
    sec = math.floor(value)
    nanosec = round((value - sec) * 1e9)
    return (sec + 1, 0) if nanosec >= 1_000_000_000 else (sec, nanosec)


def to_duration(value: float) -> Duration:
    sec, nanosec = _split(value)
    return Duration(sec=sec, nanosec=nanosec)


def to_time(value: float) -> Time:
    sec, nanosec = _split(value)
    return Time(sec=sec, nanosec=nanosec)


def bag_qos(profile: QoSProfile):
    """``profile`` as a rosbags ``Qos`` (policies matched by name), for a bag's ``offered_qos_profiles``."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    def time(duration: RclpyDuration) -> QosTime:
        return QosTime(*divmod(duration.nanoseconds, 1_000_000_000))

    return Qos(QosHistory[profile.history.name], profile.depth, QosReliability[profile.reliability.name],
               QosDurability[profile.durability.name], time(profile.deadline), time(profile.lifespan),
               QosLiveliness[profile.liveliness.name], time(profile.liveliness_lease_duration),
               profile.avoid_ros_namespace_conventions)


def fill_joint_state_msg(msg: JointStateMsg, state: JointState, stamp: Time) -> JointStateMsg:
    """``msg`` (built once, reused for every state of one arm) holding ``state`` stamped ``stamp`` (ROS time;
    ``state.stamp`` is on the backend's clock). The names are set once; the arrays are copied as ``array.array``,
    which the message takes without checking each value."""
    if not msg.name:
        msg.name = list(state.names)
    msg.position = array.array("d", state.positions.astype(float, copy=False).tobytes())
    msg.velocity = array.array("d", state.velocities.astype(float, copy=False).tobytes())
    msg.header.stamp = stamp
    return msg


def joint_state_from_msg(msg: JointStateMsg) -> JointState:
    """A JointState message as :class:`JointState`; velocities the message leaves empty are NaN."""
    names = tuple(msg.name)
    if len(msg.position) != len(names):
        raise ValueError(f"JointState has {len(names)} names but {len(msg.position)} positions")
    if msg.velocity and len(msg.velocity) != len(names):
        raise ValueError(f"JointState has {len(names)} names but {len(msg.velocity)} velocities")
    velocities = np.array(msg.velocity, dtype=float) if msg.velocity else np.full(len(names), np.nan)
    return JointState(names, np.array(msg.position, dtype=float), velocities, seconds(msg.header.stamp))


def trajectory_from_msg(msg: JointTrajectoryMsg) -> JointTrajectory:
    """A JointTrajectory message as :class:`JointTrajectory`, joints still in the message's order."""
    names = tuple(msg.joint_names)
    n = len(names)
    with_velocities = [bool(p.velocities) for p in msg.points]
    if any(with_velocities) and not all(with_velocities):
        k = with_velocities.index(False)
        raise ValueError(f"point {k} has no velocities while other points have them; give all or none")
    for k, point in enumerate(msg.points):
        if len(point.positions) != n:
            raise ValueError(f"point {k} has {len(point.positions)} positions for {n} joint names {list(names)}")
        for field, values in (("velocities", point.velocities), ("accelerations", point.accelerations)):
            if len(values) not in (0, n):
                raise ValueError(f"point {k} has {len(values)} {field} for {n} joint names {list(names)}")
    times = np.array([seconds(p.time_from_start) for p in msg.points], dtype=float)
    positions = np.array([p.positions for p in msg.points], dtype=float).reshape(len(times), n)
    velocities = np.array([p.velocities for p in msg.points], dtype=float).reshape(len(times), n) \
        if msg.points and all(with_velocities) else None
    return JointTrajectory(names, times, positions, velocities)


def trajectory_to_msg(trajectory: JointTrajectory, stamp: Time | None = None) -> JointTrajectoryMsg:
    """``trajectory`` as a message; a zero (default) stamp means "start on arrival"."""
    msg = JointTrajectoryMsg(joint_names=list(trajectory.joint_names))
    if stamp is not None:
        msg.header.stamp = stamp
    positions = trajectory.positions.tolist()
    velocities = [[] for _ in positions] if trajectory.velocities is None else trajectory.velocities.tolist()
    msg.points = [JointTrajectoryPoint(positions=p, velocities=v, time_from_start=to_duration(t))
                  for p, v, t in zip(positions, velocities, trajectory.times.tolist(), strict=True)]
    return msg


def start_delay(stamp: Time, now: float) -> float:
    """Seconds from ``now`` until a trajectory stamped ``stamp`` starts; a zero stamp means now."""
    return 0.0 if stamp.sec == 0 and stamp.nanosec == 0 else seconds(stamp) - now


def tolerances_from_msg(tolerances: Iterable) -> tuple[JointToleranceRequest, ...]:
    """``control_msgs/JointTolerance`` entries as requests (0: keep the default, -1: do not check)."""
    return tuple(JointToleranceRequest(t.name, t.position, t.velocity, t.acceleration) for t in tolerances)


def goal_from_msg(goal: FollowJointTrajectory.Goal, now: float) -> Goal:
    """A FollowJointTrajectory goal received at ROS time ``now`` (s); raises ``ValueError`` if malformed or if it
    has more than :data:`~mtrl_robot.backends.controller.MAX_POINTS` points (counted before anything is converted)."""
    if len(goal.trajectory.points) > MAX_POINTS:
        raise ValueError(too_many_points(len(goal.trajectory.points)))
    return Goal(trajectory=trajectory_from_msg(goal.trajectory),
                start_delay=start_delay(goal.trajectory.header.stamp, now),
                path_tolerance=tolerances_from_msg(goal.path_tolerance),
                goal_tolerance=tolerances_from_msg(goal.goal_tolerance),
                goal_time_tolerance=seconds(goal.goal_time_tolerance),
                multi_dof_joints=tuple(goal.multi_dof_trajectory.joint_names)
                + tuple(t.joint_name for t in (*goal.component_path_tolerance, *goal.component_goal_tolerance)))


def _point(state: JointState, time_from_start: float) -> JointTrajectoryPoint:
    return JointTrajectoryPoint(positions=state.positions.tolist(), velocities=state.velocities.tolist(),
                                time_from_start=to_duration(max(time_from_start, 0.0)))


def feedback_to_msg(feedback: Feedback, stamp: Time) -> FollowJointTrajectory.Feedback:
    msg = FollowJointTrajectory.Feedback(joint_names=list(feedback.desired.names), index=feedback.index,
                                         desired=_point(feedback.desired, feedback.time),
                                         actual=_point(feedback.actual, feedback.time),
                                         error=_point(feedback.error, feedback.time))
    msg.header.stamp = stamp
    return msg


def _finite_or_none(values: Mapping[str, float]) -> dict[str, float | None]:
    return {name: (float(v) if math.isfinite(v) else None) for name, v in values.items()}


def randomization_to_json(sampled: Mapping[str, float], applied: Mapping[str, float]) -> str:
    """The ``~/randomize`` reply: drawn values and the engine's read-back values (``null`` for NaN)."""
    return json.dumps({"sampled": _finite_or_none(sampled), "applied": _finite_or_none(applied)}, sort_keys=True)


def randomization_from_json(text: str) -> tuple[dict[str, float], dict[str, float]]:
    """Inverse of :func:`randomization_to_json` (``null`` back to NaN)."""
    data = json.loads(text)
    return tuple({name: math.nan if v is None else float(v) for name, v in data[key].items()}
                 for key in ("sampled", "applied"))


def image_to_msg(rgb: np.ndarray, stamp: Time, frame_id: str) -> Image:
    """An (H, W, 3) uint8 RGB frame as an ``rgb8`` Image."""
    height, width, _ = rgb.shape
    msg = Image(height=height, width=width, encoding="rgb8", is_bigendian=0, step=3 * width,
                data=np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


def image_from_msg(msg: Image) -> np.ndarray:
    """The pixels of an 8-bit colour Image as an (H, W, C) uint8 array; ``ValueError`` if unusable."""
    if msg.encoding not in ENCODINGS:
        raise ValueError(f"unsupported encoding '{msg.encoding}' (use {', '.join(ENCODINGS)})")
    channels = 4 if msg.encoding.endswith("a8") else 3
    row = msg.width * channels
    if msg.width == 0 or msg.height == 0 or msg.step < row:
        raise ValueError(f"a {msg.width}×{msg.height} {msg.encoding} image cannot have step {msg.step}")
    if len(msg.data) < msg.step * msg.height:
        raise ValueError(f"a {msg.width}×{msg.height} {msg.encoding} image with step {msg.step} needs "
                         f"{msg.step * msg.height} bytes of data, got {len(msg.data)}")
    data = np.frombuffer(msg.data, dtype=np.uint8, count=msg.step * msg.height)
    return data.reshape(msg.height, msg.step)[:, :row].reshape(msg.height, msg.width, channels)


def camera_info_msg(width: int, height: int, fovy_deg: float, stamp: Time, frame_id: str) -> CameraInfo:
    """An ideal pinhole camera (square pixels, no distortion) with vertical field of view ``fovy_deg``."""
    f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    msg = CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=[0.0] * 5,
                     k=[f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0], r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                     p=[f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0])
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg

