"""The puck node's tracker, without ROS: when a puck seen by the camera counts as at rest, or as hidden."""

from __future__ import annotations

import threading
import time

import numpy as np
from geometry_msgs.msg import PointStamped

from mtrl_robot.ros.puck_node import REST_WINDOW, PuckTracker

PERIOD = 0.02  # s between camera sightings


def sighting(stamp: float, x: float, y: float) -> PointStamped:
    msg = PointStamped()
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp), int(round((stamp % 1) * 1e9))
    msg.point.x, msg.point.y = x, y
    return msg


def test_a_puck_seen_sliding_then_still_is_at_rest_where_it_stopped():
    tracker = PuckTracker()

    def camera() -> None:  # 10 sightings sliding along x, then still at (0.6, 0.1) for longer than the window
        for k in range(10 + int(2 * REST_WINDOW / PERIOD)):
            tracker.add(sighting(100.0 + k * PERIOD, 0.5 + 0.01 * min(k, 10), 0.1))
            time.sleep(PERIOD)

    feeder = threading.Thread(target=camera)
    feeder.start()
    rest = tracker.rest(since=100.0, timeout=30.0, hidden=10 * PERIOD)  # sightings keep coming: never hidden
    feeder.join()
    assert rest is not None and np.allclose(rest, [0.6, 0.1])


def test_a_puck_no_longer_seen_counts_as_hidden_long_before_the_rest_timeout():
    tracker = PuckTracker()
    tracker.add(sighting(99.0, 0.5, 0.1))  # seen before the hit only
    started = time.monotonic()
    assert tracker.rest(since=100.0, timeout=60.0, hidden=0.1) is None
    assert time.monotonic() - started < 30.0  # ended by `hidden`, not by the 60 s timeout
    assert tracker.latest().tolist() == [0.5, 0.1]
