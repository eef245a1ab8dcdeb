"""A recording written message by message that survives its writer being killed, and its recovery.

While an episode is recorded, its messages are streamed into an MCAP file ``<name>.mcap`` inside a hidden
*partial* folder ``.<name>.<random>.partial`` beside the bag's path. The stream is cut into chunks and handed
to the operating system at least every ``flush_period`` seconds of writing, so a process killed at any moment
(``kill -9``) loses at most the messages of that last stretch. Closing the stream copies it into a complete
rosbag2 bag (MCAP, format version 9, with ``metadata.yaml``) at ``<name>`` in one rename.

A partial folder left behind by a killed writer is turned into that same complete bag by
:func:`recover_partial` (as ``ros2 bag reindex`` does for rosbag2): every message of the chunks that reached
the file is kept, a chunk cut short is dropped. While a writer runs, it holds a lock on its stream file, so
recovery and clean-up never touch an episode that is still being recorded.
"""

from __future__ import annotations

import fcntl
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import yaml

if TYPE_CHECKING:
    from rosbags.interfaces import Qos

from mtrl_robot.motions.recording import (
    JOINT_STATE_TYPE,
    JOINT_STATES_TOPIC,
    TARGET_TOPIC,
    TARGET_TYPE,
    WORLD_FRAME,
    _stamp,
    _typestore,
    new_bag,
)

PARTIAL_SUFFIX = ".partial"
FLUSH_PERIOD = 0.25  # s of writing between two hand-overs of the stream to the operating system
ROS2_PROFILE = "ros2"
SCHEMA_ENCODING = "ros2msg"
MESSAGE_ENCODING = "cdr"
QOS_KEY = "offered_qos_profiles"  # a channel's metadata entry holding its QoS, as rosbag2's MCAP storage names it


class PartialLocked(RuntimeError):
    """The partial episode is still being written by a running process."""


def _lock(stream: BinaryIO, path: Path) -> None:
    try:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise PartialLocked(f"{path}: still being recorded by a running process") from None


class BagStream:
    """A rosbag2 MCAP bag written message by message; it appears at ``path`` only on :meth:`close`.

    Until then the messages are in a hidden partial folder beside ``path`` (see the module docstring), on disk
    at most ``flush_period`` s of writing after they were written. ``serialized_topics`` (topic: message type and
    the QoS profiles its publishers offer) are further topics whose messages are written as they arrived, CDR
    bytes (:meth:`write_serialized`); their QoS is kept in the bag.
    """

    def __init__(self, path: str | Path, *, joint_states_topic: str = JOINT_STATES_TOPIC,
                 target_topic: str = TARGET_TOPIC, serialized_topics: Mapping[str, tuple[str, Sequence[Qos]]] = {},
                 flush_period: float = FLUSH_PERIOD):
        from mcap.writer import Writer

        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path}: already exists; a recording is never overwritten")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.",
                                             suffix=PARTIAL_SUFFIX))
        self._file = (self.partial / f"{self.path.name}.mcap").open("xb")
        _lock(self._file, self.partial)
        self._store = _typestore()
        self._writer = Writer(self._file)
        self._writer.start(profile=ROS2_PROFILE, library="mtrl_robot")
        self._topics = {JOINT_STATE_TYPE: joint_states_topic, TARGET_TYPE: target_topic}
        topics = {joint_states_topic: (JOINT_STATE_TYPE, ()), target_topic: (TARGET_TYPE, ()), **serialized_topics}
        self._schemas: dict[str, int] = {}
        self._channels = {topic: self._writer.register_channel(topic, MESSAGE_ENCODING, self._schema(msgtype),
                                                               {QOS_KEY: _dump_qos(qos)} if qos else {})
                          for topic, (msgtype, qos) in topics.items()}
        self._flush_period = flush_period
        self._writer.flush()
        self._flushed_at = time.monotonic()

    def _schema(self, msgtype: str) -> int:
        if msgtype not in self._schemas:
            msgdef, _ = self._store.generate_msgdef(msgtype, ros_version=2)
            self._schemas[msgtype] = self._writer.register_schema(msgtype, SCHEMA_ENCODING, msgdef.encode())
        return self._schemas[msgtype]

    def write_joint_state(self, stamp_ns: int, names, positions, velocities) -> None:
        """Append a JointState stamped ``stamp_ns`` (header and log time)."""
        types = self._store.types
        msg = types[JOINT_STATE_TYPE](header=types["std_msgs/msg/Header"](stamp=_stamp(self._store, stamp_ns),
                                                                            frame_id=""),
                                      name=list(names), position=np.asarray(positions, dtype=float),
                                      velocity=np.asarray(velocities, dtype=float), effort=np.empty(0))
        self._write(self._topics[JOINT_STATE_TYPE], stamp_ns, bytes(self._store.serialize_cdr(msg, JOINT_STATE_TYPE)))

    def write_target(self, stamp_ns: int, target, frame_id: str = WORLD_FRAME) -> None:
        """Append a PointStamped target (x, y, z) stamped ``stamp_ns``: it starts an episode."""
        types = self._store.types
        x, y, z = (float(v) for v in target)
        msg = types[TARGET_TYPE](header=types["std_msgs/msg/Header"](stamp=_stamp(self._store, stamp_ns),
                                                                       frame_id=frame_id),
                                 point=types["geometry_msgs/msg/Point"](x=x, y=y, z=z))
        self._write(self._topics[TARGET_TYPE], stamp_ns, bytes(self._store.serialize_cdr(msg, TARGET_TYPE)))

    def write_serialized(self, topic: str, stamp_ns: int, data: bytes) -> None:
        """Append a message of one of the ``serialized_topics``, CDR bytes as published, stamped ``stamp_ns``."""
        self._write(topic, stamp_ns, data)

    def _write(self, topic: str, stamp_ns: int, data: bytes) -> None:
        self._writer.add_message(self._channels[topic], log_time=stamp_ns, publish_time=stamp_ns, data=data)
        if time.monotonic() - self._flushed_at >= self._flush_period:
            self.flush()

    def flush(self) -> None:
        """Hand everything written so far to the operating system (it then survives this process being killed)."""
        self._writer.flush()
        self._flushed_at = time.monotonic()

    def close(self) -> Path:
        """Finish the stream, copy it into the bag at ``path`` in one rename and remove the partial folder.

        On an error (``OSError``) the partial folder stays, complete, for :func:`recover_partial`.
        """
        try:
            self._writer.finish()
        finally:
            self._file.close()
        recover_partial(self.partial)
        return self.path


def _dump_qos(qos: Sequence[Qos]) -> str:
    """QoS profiles as the YAML text rosbag2 keeps in a channel's metadata."""
    from rosbags.rosbag2.metadata import dump_qos_v9

    return yaml.safe_dump(dump_qos_v9(list(qos)), sort_keys=False)


@dataclass(frozen=True)
class Partial:
    """What a partial folder holds: the bag it belongs to and the messages that can be recovered."""

    folder: Path
    bag: Path
    messages: int


def partial_folders(directory: str | Path) -> list[Path]:
    """The partial folders of episodes in ``directory`` (hidden, named ``.<bag>.<random>.partial``), sorted."""
    return sorted(p for p in Path(directory).glob(f".*{PARTIAL_SUFFIX}") if p.is_dir())


def _stream_file(folder: Path) -> Path:
    streams = list(folder.glob("*.mcap"))
    if len(streams) != 1:
        raise ValueError(f"{folder}: expected one .mcap stream in a partial episode folder, found {len(streams)}")
    return streams[0]


def _records(stream: BinaryIO) -> Iterator[object]:
    """The records of an MCAP stream up to its end or the first record cut short or damaged."""
    from mcap.exceptions import McapError
    from mcap.stream_reader import StreamReader

    records = StreamReader(stream, validate_crcs=True).records
    while True:
        try:
            yield next(records)
        except StopIteration:
            return
        except (McapError, ValueError, struct.error, EOFError):  # the end of what reached the disk
            return


def inspect_partial(folder: str | Path) -> Partial:
    """The bag ``folder`` belongs to and how many messages it can give back; :class:`PartialLocked` if a running
    process writes it."""
    from mcap.records import Message

    folder = Path(folder)
    stream_path = _stream_file(folder)
    with stream_path.open("rb") as stream:
        _lock(stream, folder)
        count = sum(isinstance(r, Message) for r in _records(stream))
    return Partial(folder, folder.parent / stream_path.stem, count)


def recover_partial(folder: str | Path) -> Partial:
    """Write the messages of a partial episode folder as a complete bag beside it, then remove the folder.

    The bag appears complete or not at all (written into a temporary folder and renamed); an existing bag is
    never overwritten (``FileExistsError``), a folder without any complete message is left alone
    (``ValueError``), one a running process writes is refused (:class:`PartialLocked`).
    """
    from mcap.records import Channel, Message, Schema
    from rosbags.rosbag2.metadata import parse_qos

    folder = Path(folder)
    stream_path = _stream_file(folder)
    bag = folder.parent / stream_path.stem
    if bag.exists():
        raise FileExistsError(f"{bag}: already exists; a recording is never overwritten")
    store = _typestore()
    with stream_path.open("rb") as stream:
        _lock(stream, folder)
        schemas: dict[int, str] = {}
        count = 0
        with new_bag(bag) as writer:
            connections = {}
            for record in _records(stream):
                if isinstance(record, Schema):
                    schemas[record.id] = record.name
                elif isinstance(record, Channel) and record.id not in connections:  # repeated in the summary
                    qos = parse_qos(record.metadata.get(QOS_KEY, ""))
                    connections[record.id] = writer.add_connection(record.topic, schemas[record.schema_id],
                                                                   typestore=store, offered_qos_profiles=qos)
                elif isinstance(record, Message):
                    writer.write(connections[record.channel_id], record.log_time, record.data)
                    count += 1
            if count == 0:
                raise ValueError(f"{folder}: no complete message was written; nothing to recover")
    shutil.rmtree(folder)
    return Partial(folder, bag, count)
