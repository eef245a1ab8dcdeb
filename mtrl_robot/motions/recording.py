"""Demonstrations recorded on a robot: rosbag2 (MCAP) recordings ⇄ the dataset format.

The recording convention (one bag per robot):

- ``/joint_states`` (``sensor_msgs/msg/JointState``): the robot's joints, as its driver publishes them,
  in any order; velocities are used when every message of an episode has them.
- ``/demo_target`` (``geometry_msgs/msg/PointStamped``): the flange target of a demonstration, in the
  frame ``world`` (or empty, or the arm's base link, converted to the world frame). **Each target
  message starts an episode**, which holds the joint states from its stamp up to the next target
  message (or the end of the bag). Joint states before the first target are ignored.
- All times are the messages' ``header.stamp``.

A recording may also hold what a viewer needs to replay it (the demo recorder writes them; conversion ignores
them): ``/robot_description`` (``std_msgs/msg/String``, the URDF), ``/tf_static`` and ``/tf``
(``tf2_msgs/msg/TFMessage``), each with the QoS its publisher offers, so that a replay publishes the description
and the fixed frames transient local as robot_state_publisher does.

Conversion maps joints by name into the arm's joint order (a missing joint, or one the arm does not
have, is an error unless listed in ``ignore_joints``, e.g. gripper fingers), optionally trims the rest
before and after the motion, and resamples each episode at ``n_waypoints`` evenly spaced times (cubic
Hermite through recorded velocities, otherwise shape-preserving PCHIP).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtrl_robot.arms.chain import Arm
from mtrl_robot.motions.dataset import DatasetError, DemoDataset, about_file
from mtrl_robot.motions.reach import N_WAYPOINTS

JOINT_STATES_TOPIC = "/joint_states"
TARGET_TOPIC = "/demo_target"
WORLD_FRAME = "world"
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
TARGET_TYPE = "geometry_msgs/msg/PointStamped"
DESCRIPTION_TOPIC = "/robot_description"
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
DESCRIPTION_TYPE = "std_msgs/msg/String"
TF_TYPE = "tf2_msgs/msg/TFMessage"
DEFAULT_START = 1.0e9  # s, stamp of the first target message written by write_recording


@dataclass(frozen=True)
class Episode:
    """One recorded demonstration: joint samples in the recorded joint order, times from its target message."""

    target: np.ndarray  # (3,) m, world frame
    joint_names: tuple[str, ...]
    times: np.ndarray  # (M,) s after the target message
    positions: np.ndarray  # (M, n) rad
    velocities: np.ndarray | None = None  # (M, n) rad/s


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def _stamp(store, ns: int):
    return store.types["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


@contextmanager
def new_bag(path: Path) -> Iterator[object]:
    """A rosbag2 MCAP writer whose bag appears at ``path`` with one rename when the block completes; on any error
    nothing is left behind."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        with Writer(tmp / path.name, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            yield writer
        os.rename(tmp / path.name, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_recording(path: str | Path, episodes: Sequence[Episode], *, start_time: float = DEFAULT_START,
                    gap: float = 1.0, frame_id: str = WORLD_FRAME, joint_states_topic: str = JOINT_STATES_TOPIC,
                    target_topic: str = TARGET_TOPIC) -> Path:
    """Write ``episodes`` one after another (``gap`` s apart) as a rosbag2 MCAP bag (format version 9).

    The bag directory appears at ``path`` complete or not at all: it is written into a temporary
    directory beside it and renamed. An existing ``path`` is never overwritten.
    """

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: already exists; a recording is never overwritten")
    if not episodes:
        raise DatasetError(path, "no episodes to write")
    for k, ep in enumerate(episodes):
        n, m = len(ep.joint_names), len(ep.times)
        if np.shape(ep.positions) != (m, n) or (ep.velocities is not None and np.shape(ep.velocities) != (m, n)):
            raise DatasetError(path, f"episode {k}: positions/velocities must have shape ({m}, {n})")
        if m < 1 or np.any(np.asarray(ep.times) < 0) or np.any(np.diff(ep.times) <= 0):
            raise DatasetError(path, f"episode {k}: times must be non-negative and increase strictly")
    store = _typestore()
    types = store.types
    header, point = types["std_msgs/msg/Header"], types["geometry_msgs/msg/Point"]
    joint_state, point_stamped = types[JOINT_STATE_TYPE], types[TARGET_TYPE]
    with new_bag(path) as writer:
        states = writer.add_connection(joint_states_topic, JOINT_STATE_TYPE, typestore=store)
        targets = writer.add_connection(target_topic, TARGET_TYPE, typestore=store)
        t0 = round(start_time * 1e9)  # ns; stamps are integers so that times survive exactly to 1 ns
        for ep in episodes:
            x, y, z = (float(v) for v in ep.target)
            msg = point_stamped(header=header(stamp=_stamp(store, t0), frame_id=frame_id),
                                point=point(x=x, y=y, z=z))
            writer.write(targets, t0, store.serialize_cdr(msg, TARGET_TYPE))
            positions = np.ascontiguousarray(ep.positions, dtype=float)
            velocities = (np.empty((len(ep.times), 0)) if ep.velocities is None
                          else np.ascontiguousarray(ep.velocities, dtype=float))
            for i, t in enumerate(ep.times):
                ns = t0 + round(float(t) * 1e9)
                msg = joint_state(header=header(stamp=_stamp(store, ns), frame_id=""), name=list(ep.joint_names),
                                  position=positions[i], velocity=velocities[i], effort=np.empty(0))
                writer.write(states, ns, store.serialize_cdr(msg, JOINT_STATE_TYPE))
            t0 += round((float(ep.times[-1]) + gap) * 1e9)
    return path


def read_episodes(path: str | Path, *, joint_states_topic: str = JOINT_STATES_TOPIC,
                  target_topic: str = TARGET_TOPIC, base_link: str | None = None,
                  base_transform: np.ndarray | None = None) -> list[Episode]:
    """The episodes of a recording, joints in the recorded order (see the module docstring).

    Targets stamped in ``base_link`` are moved to the world frame with ``base_transform`` (4×4).
    """
    from rosbags.highlevel import AnyReader, AnyReaderError

    src = Path(path)
    if not src.exists():
        raise DatasetError(src, "recording not found")
    samples: list[tuple[int, tuple[str, ...], np.ndarray, np.ndarray]] = []  # stamps in ns
    marks: list[tuple[int, np.ndarray]] = []
    try:
        with AnyReader([src], default_typestore=_typestore()) as reader:
            wanted = {joint_states_topic: JOINT_STATE_TYPE, target_topic: TARGET_TYPE}
            connections = [c for c in reader.connections if c.topic in wanted]
            for c in connections:
                if c.msgtype != wanted[c.topic]:
                    raise DatasetError(src, f"topic {c.topic} carries {c.msgtype}, expected {wanted[c.topic]}")
            for topic in wanted:
                if not any(c.topic == topic for c in connections):
                    raise DatasetError(src, f"no {topic} topic in the recording (topics: "
                                       f"{', '.join(sorted({c.topic for c in reader.connections})) or 'none'})")
            for conn, _, raw in reader.messages(connections=connections):
                msg = reader.deserialize(raw, conn.msgtype)
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec  # int ns, exact
                if conn.topic == target_topic:
                    marks.append((stamp, _target_in_world(src, msg, base_link, base_transform)))
                else:
                    samples.append((stamp, tuple(msg.name), np.array(msg.position, dtype=float),
                                    np.array(msg.velocity, dtype=float)))
    except (AnyReaderError, OSError) as exc:
        raise DatasetError(src, f"not a readable rosbag2 recording: {exc}") from None
    if not marks:
        raise DatasetError(src, f"no messages on {target_topic}: each target message starts an episode")
    marks.sort(key=lambda m: m[0])
    samples.sort(key=lambda s: s[0])
    starts = np.array([m[0] for m in marks], dtype=np.int64)
    stamps = np.array([s[0] for s in samples], dtype=np.int64)
    owner = np.searchsorted(starts, stamps, side="right") - 1  # the episode each joint state belongs to
    episodes = []
    for k, (start, target) in enumerate(marks):
        mine = [samples[i] for i in np.flatnonzero(owner == k)]
        where = f"episode {k} (target at t={start * 1e-9:.3f} s)"
        if len(mine) < 2:
            raise DatasetError(src, f"{where} has {len(mine)} joint states on {joint_states_topic}; at least 2 needed")
        names = mine[0][1]
        if any(s[1] != names for s in mine):
            raise DatasetError(src, f"{where}: the joint names change between {joint_states_topic} messages")
        if len(set(names)) != len(names):
            raise DatasetError(src, f"{where}: duplicate joint names in {list(names)}")
        positions = np.array([s[2] for s in mine])
        if positions.shape != (len(mine), len(names)):
            raise DatasetError(src, f"{where}: a joint state has {positions.shape} positions for {len(names)} names")
        velocities = np.array([s[3] for s in mine]) if all(len(s[3]) == len(names) for s in mine) else None
        for label, arr in (("position", positions), ("velocity", velocities)):
            if arr is not None and not np.all(np.isfinite(arr)):
                i, j = np.argwhere(~np.isfinite(arr))[0]
                raise DatasetError(src, f"{where}: {names[j]} {label} is {arr[i, j]} in joint state {i}")
        episodes.append(Episode(target=target, joint_names=names, times=(np.array([s[0] for s in mine]) - start) * 1e-9,
                                positions=positions, velocities=velocities))
    return episodes


def _target_in_world(src: Path, msg, base_link: str | None, base_transform: np.ndarray | None) -> np.ndarray:
    p = np.array([msg.point.x, msg.point.y, msg.point.z], dtype=float)
    frame = msg.header.frame_id
    if not np.all(np.isfinite(p)):
        raise DatasetError(src, f"target {p.tolist()} has NaN or inf")
    if frame in ("", WORLD_FRAME):
        return p
    if base_link is not None and frame == base_link:
        return p if base_transform is None else base_transform[:3, :3] @ p + base_transform[:3, 3]
    accepted = ["'world'", "''"] + ([f"'{base_link}'"] if base_link else [])
    raise DatasetError(src, f"target in frame '{frame}'; expected one of {', '.join(accepted)}")


def _resample(ep: Episode, order: list[int], n_waypoints: int, trim_rest: float | None,
              where: str, src: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.interpolate import CubicHermiteSpline, PchipInterpolator

    t = ep.times - ep.times[0]
    q = ep.positions[:, order]
    v = None if ep.velocities is None else ep.velocities[:, order]
    if np.any(np.diff(t) <= 0):
        raise DatasetError(src, f"{where}: joint state stamps must increase strictly")
    if trim_rest is not None:
        speed = np.abs(v if v is not None else np.gradient(q, t, axis=0)).max(axis=1)
        moving = np.flatnonzero(speed > trim_rest)
        if moving.size == 0:
            raise DatasetError(src, f"{where}: the arm never moves faster than {trim_rest} rad/s")
        first, last = max(moving[0] - 1, 0), min(moving[-1] + 1, len(t) - 1)
        t, q = t[first:last + 1] - t[first], q[first:last + 1]
        v = None if v is None else v[first:last + 1]
        if len(t) < 2:
            raise DatasetError(src, f"{where}: fewer than 2 joint states remain after trimming the rest")
    curve = CubicHermiteSpline(t, q, v) if v is not None else PchipInterpolator(t, q)
    grid = np.linspace(0.0, t[-1], n_waypoints)
    positions, velocities = curve(grid), curve(grid, 1)
    positions[0], positions[-1] = q[0], q[-1]
    return grid, positions, velocities


def convert_recording(path: str | Path, arm: Arm, n_waypoints: int = N_WAYPOINTS, *,
                      joint_states_topic: str = JOINT_STATES_TOPIC, target_topic: str = TARGET_TOPIC,
                      ignore_joints: Sequence[str] = (), trim_rest: float | None = None) -> DemoDataset:
    """A recording of ``arm`` as a dataset: one demo per episode, joints in the arm's order.

    ``ignore_joints`` names recorded joints that are not the arm's (e.g. gripper fingers) to drop;
    any other unknown or missing joint is an error. ``trim_rest`` (rad/s), if given, drops the samples
    before and after the motion where no joint moves faster than that.
    """
    src = Path(path)
    if n_waypoints < 2:
        raise ValueError(f"a trajectory needs at least 2 waypoints, got n_waypoints={n_waypoints}")
    episodes = read_episodes(src, joint_states_topic=joint_states_topic, target_topic=target_topic,
                             base_link=arm.base_link, base_transform=arm.base_transform())
    times, positions, velocities = [], [], []
    for k, ep in enumerate(episodes):
        where = f"episode {k}"
        missing = [n for n in arm.joint_names if n not in ep.joint_names]
        unknown = [n for n in ep.joint_names if n not in arm.joint_names and n not in ignore_joints]
        if missing or unknown:
            raise DatasetError(src, f"{where}: recorded joints do not match {arm.robot_id}: missing {missing}, "
                               f"unknown {unknown} (list extra joints such as grippers in ignore_joints)")
        order = [ep.joint_names.index(n) for n in arm.joint_names]
        t, q, v = _resample(ep, order, n_waypoints, trim_rest, where, src)
        times.append(t)
        positions.append(q)
        velocities.append(v)
    info = {"source": "recording", "recording": str(src), "joint_states_topic": joint_states_topic,
            "target_topic": target_topic, "n_waypoints": n_waypoints, "trim_rest": trim_rest,
            "ignore_joints": list(ignore_joints)}
    with about_file(src):
        return DemoDataset(robots=(arm,), robot_index=np.zeros(len(episodes), dtype=np.int64),
                           targets=np.array([ep.target for ep in episodes]), times=np.array(times),
                           positions=np.array(positions), velocities=np.array(velocities), info=info)
