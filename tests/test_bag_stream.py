"""Streamed recordings: whatever part of the stream reached the disk can be recovered into a complete bag."""

from __future__ import annotations

import numpy as np
import pytest

from mtrl_robot.motions.bag_stream import BagStream, PartialLocked, inspect_partial, partial_folders, recover_partial
from mtrl_robot.motions.recording import read_episodes

NAMES = ("a", "b")
N_STATES = 40
STEP_NS = 4_000_000


def stream(path, flush_period: float = 0.0) -> BagStream:
    """A stream holding a target and ``N_STATES`` joint states, flushed after each message."""
    bag = BagStream(path, flush_period=flush_period)
    bag.write_target(10**9, (0.4, 0.1, 0.5))
    for i in range(N_STATES):
        bag.write_joint_state(10**9 + i * STEP_NS, NAMES, [i, -i], [1.0, -1.0])
    return bag


def test_close_writes_every_message_and_leaves_no_partial(tmp_path):
    path = stream(tmp_path / "ep", flush_period=10.0).close()
    episode, = read_episodes(path)
    np.testing.assert_array_equal(episode.positions[:, 0], np.arange(N_STATES))
    assert partial_folders(tmp_path) == [] and [p.name for p in tmp_path.iterdir()] == ["ep"]


def test_every_cut_of_the_stream_recovers_the_messages_before_it(tmp_path):
    live = stream(tmp_path / "live" / "ep")
    with pytest.raises(PartialLocked, match="running process"):
        recover_partial(live.partial)  # its writer still runs
    data = next(live.partial.glob("*.mcap")).read_bytes()
    live.close()
    recovered = []
    cuts = [*range(0, len(data), max(len(data) // 60, 1)), len(data)]
    for k, cut in enumerate(cuts):
        folder = tmp_path / f"cut{k}" / ".ep.abcdefgh.partial"
        folder.mkdir(parents=True)
        (folder / "ep.mcap").write_bytes(data[:cut])
        count = inspect_partial(folder).messages
        if count == 0:
            with pytest.raises(ValueError, match="nothing to recover"):
                recover_partial(folder)
            assert folder.exists()  # nothing is deleted that was not turned into a bag
        else:
            assert recover_partial(folder).messages == count and not folder.exists()
            if count > 2:  # the target and at least two joint states: an episode
                episode, = read_episodes(folder.parent / "ep")
                np.testing.assert_array_equal(episode.positions[:, 0], np.arange(count - 1))
        recovered.append(count)
    assert recovered == sorted(recovered) and recovered[-1] == N_STATES + 1
    assert len(set(recovered)) > N_STATES // 2  # cuts inside the stream keep what came before them


def test_serialized_topics_keep_their_qos_and_open_with_rosbags_and_mcap(tmp_path):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from rosbags.highlevel import AnyReader
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    from mtrl_robot.motions.recording import DESCRIPTION_TYPE, _typestore

    store = _typestore()
    never = QosTime(0, 0)
    latched = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, never, never,
                  QosLiveliness.AUTOMATIC, never, False)
    bag = BagStream(tmp_path / "described", serialized_topics={"/robot_description": (DESCRIPTION_TYPE, [latched])})
    bag.write_target(10**9, (0.4, 0.1, 0.5))
    bag.write_serialized("/robot_description", 10**9, bytes(store.serialize_cdr(
        store.types[DESCRIPTION_TYPE](data="<robot name='r'/>"), DESCRIPTION_TYPE)))
    for i in range(N_STATES):
        bag.write_joint_state(10**9 + i * STEP_NS, NAMES, [i, -i], [1.0, -1.0])
    path = bag.close()
    assert len(read_episodes(path)) == 1  # conversion reads its own topics only
    with AnyReader([path]) as reader:
        connection, = [c for c in reader.connections if c.topic == "/robot_description"]
        assert connection.ext.offered_qos_profiles == [latched]
        (_, _, raw), = reader.messages(connections=[connection])
        assert reader.deserialize(raw, connection.msgtype).data == "<robot name='r'/>"
    with next(path.glob("*.mcap")).open("rb") as file:
        decoded = list(make_reader(file, decoder_factories=[DecoderFactory()]).iter_decoded_messages(
            topics=["/robot_description"]))
    assert [m.decoded_message.data for m in decoded] == ["<robot name='r'/>"]
