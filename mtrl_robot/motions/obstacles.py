"""Reaching demonstrations around box obstacles, planned with OMPL in joint space.

1. **Goal posture**: the same IK as the obstacle-free planner (one redundancy resolution); it must be
   collision-free.
2. **Path**: RRTConnect from home to the goal posture in the joint-limit box. A posture is valid when
   no segment of the arm's skeleton — base → each joint frame origin → flange, from the robot's own FK —
   passes through a box grown by ``link_radius`` (a conservative stand-in for link capsules).
3. **Shortcut**: greedily replace the path by straight joint-space segments between the farthest
   mutually visible vertices (each segment checked densely, every ``CHECK_STEP`` rad).
4. **Timing**: every segment is a minimum-jerk move that starts and ends at rest (the same time scaling
   as :mod:`~mtrl_robot.motions.reach`, so within the velocity and acceleration limits); the
   ``n_waypoints`` are shared among the segments in proportion to their durations and always include the
   path's vertices, so straight lines between waypoints are exactly the checked path.

OMPL samples at random, so a plan depends on OMPL's random state (not on this module's arguments alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.fk import CompiledChain
from mtrl_robot.arms.ik import solve_ik_batch
from mtrl_robot.motions.reach import IK_TOLERANCE, N_WAYPOINTS, move_duration, quintic

LINK_RADIUS = 0.05  # m, boxes are grown by this much: the arm's links are treated as capsules of this radius
CHECK_STEP = 0.01  # rad, largest joint change between two checked postures along a motion
PLANNING_TIME = 5.0  # s, OMPL's budget


class PlanningError(RuntimeError):
    """No collision-free plan: the message says which part failed."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned box obstacle in the world frame, m."""

    lower: tuple[float, float, float]
    upper: tuple[float, float, float]

    @staticmethod
    def around(center: Sequence[float], size: Sequence[float]) -> Box:
        c, h = np.asarray(center, float), np.asarray(size, float) / 2
        return Box(tuple((c - h).tolist()), tuple((c + h).tolist()))


class CollisionChecker:
    """Tests postures of one arm against boxes, batched over any leading dimensions of ``q``."""

    def __init__(self, arm: Arm, boxes: Sequence[Box], link_radius: float = LINK_RADIUS):
        self.arm = arm
        self.kin = CompiledChain(arm)
        self.lower = np.array([b.lower for b in boxes], dtype=float).reshape(-1, 3) - link_radius
        self.upper = np.array([b.upper for b in boxes], dtype=float).reshape(-1, 3) + link_radius
        if np.any(self.lower > self.upper):
            raise ValueError("a box has a lower corner above its upper corner")

    def skeleton(self, q: np.ndarray) -> np.ndarray:
        """(..., dof + 2, 3): the base origin, every joint frame origin and the flange."""
        q = np.asarray(q, dtype=float)
        points = self.kin.frames(q)[..., :3, 3]
        base = np.broadcast_to(self.kin.base[:3, 3], q.shape[:-1] + (1, 3))
        return np.concatenate([base, points], axis=-2)

    def collides(self, q: np.ndarray) -> np.ndarray:
        """(...,) True where some skeleton segment meets some (grown) box."""
        pts = self.skeleton(q)
        a = pts[..., :-1, None, :]  # (..., S, 1, 3) segment starts
        d = pts[..., 1:, None, :] - a  # segment directions
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (self.lower - a) / d, (self.upper - a) / d  # slab entry/exit parameters, (..., S, B, 3)
        flat = d == 0  # a segment parallel to a slab is inside it everywhere or nowhere
        inside = (a >= self.lower) & (a <= self.upper)
        near = np.where(flat, np.where(inside, -np.inf, np.inf), np.minimum(t1, t2))
        far = np.where(flat, np.where(inside, np.inf, -np.inf), np.maximum(t1, t2))
        enter, leave = near.max(axis=-1), far.min(axis=-1)
        hit = (enter <= leave) & (leave >= 0.0) & (enter <= 1.0)
        return hit.any(axis=(-1, -2))

    def motion_free(self, qa: np.ndarray, qb: np.ndarray, step: float = CHECK_STEP) -> bool:
        """Whether the straight joint-space motion qa → qb stays collision-free (checked every ``step`` rad)."""
        n = max(2, int(np.ceil(np.abs(qb - qa).max() / step)) + 1)
        s = np.linspace(0.0, 1.0, n)[:, None]
        return not self.collides(qa + s * (qb - qa)).any()


def shortcut(checker: CollisionChecker, path: np.ndarray) -> np.ndarray:
    """Greedy shortcutting: from each kept vertex, jump to the farthest vertex reachable in a straight line."""
    kept, i = [path[0]], 0
    while i < len(path) - 1:
        j = len(path) - 1
        while j > i + 1 and not checker.motion_free(path[i], path[j]):
            j -= 1
        kept.append(path[j])
        i = j
    return np.array(kept)


def time_scale_path(arm: Arm, vertices: np.ndarray,
                    n_waypoints: int = N_WAYPOINTS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rest-to-rest minimum-jerk moves along a joint-space polyline: times (T,), positions, velocities (T, dof)."""
    segments = len(vertices) - 1
    if segments < 1:
        raise ValueError("a path needs at least two vertices")
    if n_waypoints - 1 < segments:
        raise PlanningError(f"the path has {segments} segments, more than n_waypoints - 1 = {n_waypoints - 1}")
    deltas = np.diff(vertices, axis=0)
    durations = move_duration(arm, deltas)
    # Largest-remainder allocation of the T - 1 intervals, at least one per segment.
    share = 1 + (n_waypoints - 1 - segments) * durations / durations.sum()
    counts = np.floor(share).astype(int)
    counts[np.argsort(counts - share)[: n_waypoints - 1 - counts.sum()]] += 1
    times, positions, velocities = [0.0], [vertices[0]], [np.zeros(arm.dof)]
    start = 0.0
    for k in range(segments):
        tau = np.linspace(0.0, 1.0, counts[k] + 1)[1:]
        s, ds, _ = quintic(tau)
        times.extend(start + durations[k] * tau)
        positions.extend(vertices[k] + s[:, None] * deltas[k])
        velocities.extend(ds[:, None] * deltas[k] / durations[k])
        positions[-1] = vertices[k + 1]  # exact vertex, no round-off
        start += durations[k]
    return np.array(times), np.array(positions), np.array(velocities)


def plan_around(arm: Arm, target: np.ndarray, boxes: Sequence[Box], n_waypoints: int = N_WAYPOINTS,
                link_radius: float = LINK_RADIUS, time_limit: float = PLANNING_TIME
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A collision-free demo home → ``target`` (3,): times (T,), positions (T, dof), velocities (T, dof)."""
    from ompl import base as ob
    from ompl import geometric as og
    from ompl import util as ou

    target = np.asarray(target, dtype=float).reshape(3)
    checker = CollisionChecker(arm, boxes, link_radius)
    result = solve_ik_batch(arm, target[None], tol=IK_TOLERANCE)[0]
    if not result.success:
        raise PlanningError(f"{arm.robot_id}: IK found no posture reaching {target.tolist()} "
                            f"(closest {result.error * 1000:.1f} mm away)")
    home, goal = arm.home_q, result.q
    if checker.collides(home):
        raise PlanningError(f"{arm.robot_id}: the home posture collides with an obstacle")
    if checker.collides(goal):
        raise PlanningError(f"{arm.robot_id}: the IK posture for {target.tolist()} collides with an obstacle")

    if checker.motion_free(home, goal):
        vertices = np.stack([home, goal])
    else:
        ou.setLogLevel(ou.LOG_WARN)
        dof = arm.dof
        space = ob.RealVectorStateSpace(dof)
        bounds = ob.RealVectorBounds(dof)
        for i, (lo, hi) in enumerate(zip(arm.lower, arm.upper, strict=True)):
            bounds.setLow(i, float(lo))
            bounds.setHigh(i, float(hi))
        space.setBounds(bounds)
        setup = og.SimpleSetup(space)
        setup.setStateValidityChecker(lambda state: not checker.collides(np.array([state[i] for i in range(dof)])))
        info = setup.getSpaceInformation()
        info.setStateValidityCheckingResolution(CHECK_STEP / space.getMaximumExtent())
        setup.setPlanner(og.RRTConnect(info))
        start, end = space.allocState(), space.allocState()
        for i in range(dof):
            start[i], end[i] = float(home[i]), float(goal[i])
        setup.setStartAndGoalStates(start, end)
        status = setup.solve(time_limit)
        if not setup.haveExactSolutionPath():
            raise PlanningError(f"{arm.robot_id}: OMPL found no collision-free path to {target.tolist()} "
                                f"within {time_limit} s ({status})")
        path = setup.getSolutionPath()
        raw = np.array([[path.getState(k)[i] for i in range(dof)] for k in range(path.getStateCount())])
        raw[0], raw[-1] = home, goal
        vertices = shortcut(checker, raw)
    return time_scale_path(arm, vertices, n_waypoints)
