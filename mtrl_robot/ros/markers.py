"""What the policy node shows in RViz2 or Foxglove, as one ``visualization_msgs/MarkerArray`` in the arm's base link
frame: the target (a red sphere), the planned flange path (a blue line strip through the flange positions the
caller gives) and the flange point reached once the trajectory has ended (a green sphere; deleted while a new
trajectory runs). Positions are given in the world frame and drawn in the base link frame."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Vector3
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from mtrl_robot.arms.chain import Arm

NAMESPACE = "reach"
TARGET_ID, PATH_ID, REACHED_ID = 0, 1, 2
SPHERE_DIAMETER = 0.03  # m
LINE_WIDTH = 0.005  # m
TARGET_COLOUR = ColorRGBA(r=0.9, g=0.1, b=0.1, a=0.9)
PATH_COLOUR = ColorRGBA(r=0.1, g=0.3, b=0.9, a=0.9)
REACHED_COLOUR = ColorRGBA(r=0.1, g=0.8, b=0.2, a=0.9)


def _points(arm: Arm, world: np.ndarray) -> list[Point]:
    """(n, 3) world positions as Points in ``arm``'s base link frame."""
    base = arm.base_transform()
    local = (np.atleast_2d(world) - base[:3, 3]) @ base[:3, :3]  # R^T (p - t), row by row
    return [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in local]


def _marker(arm: Arm, stamp: Time, marker_id: int, kind: int, colour: ColorRGBA, scale: float,
            world: np.ndarray) -> Marker:
    marker = Marker(ns=NAMESPACE, id=marker_id, type=kind, action=Marker.ADD, color=colour,
                    scale=Vector3(x=scale, y=scale, z=scale))
    marker.header.frame_id, marker.header.stamp = arm.base_link, stamp
    marker.pose.orientation.w = 1.0
    points = _points(arm, world)
    if kind == Marker.SPHERE:
        marker.pose.position = points[0]
    else:
        marker.points = points
    return marker


def reach_markers(arm: Arm, stamp: Time, target: np.ndarray, path: np.ndarray,
                  reached: np.ndarray | None = None) -> MarkerArray:
    """The markers of one reach: ``target`` (3,), the planned flange ``path`` (n, 3) and, once known, the ``reached``
    flange position (3,), all in m in the world frame."""
    markers = [_marker(arm, stamp, TARGET_ID, Marker.SPHERE, TARGET_COLOUR, SPHERE_DIAMETER, target),
               _marker(arm, stamp, PATH_ID, Marker.LINE_STRIP, PATH_COLOUR, LINE_WIDTH, path)]
    if reached is None:
        gone = Marker(ns=NAMESPACE, id=REACHED_ID, action=Marker.DELETE)
        gone.header.frame_id, gone.header.stamp = arm.base_link, stamp
        markers.append(gone)
    else:
        markers.append(_marker(arm, stamp, REACHED_ID, Marker.SPHERE, REACHED_COLOUR, SPHERE_DIAMETER, reached))
    return MarkerArray(markers=markers)
