"""Parameterized hitting motions: (hitting angle, strength) → a joint trajectory whose paddle strikes the puck,
within the arm's joint velocity, acceleration and jerk limits.

The paddle is the ball at the end of a stick along the flange z axis (``Scene.paddle_length`` and
``paddle_radius``; :func:`with_paddle` gives a scene without one ``PADDLE_LENGTH`` and ``PADDLE_RADIUS``).
In the table plane the puck rests at ``p₀`` (the scene's nominal start) and
``u = (cos θ, sin θ)`` is the hitting direction, θ measured from the world x axis. The ball centre moves
at the puck's mid-height along the line ``p₀ + s·u``:

1. it starts at rest ``CLEARANCE`` behind the contact point ``s_c = −(R_puck + r_ball)`` (farther back when
   the run-up needs more room), so the puck's position noise does not put the puck on the ball;
2. accelerates to the strength ``v`` (m/s), reaching it ``PRE_CONTACT`` before ``s_c``;
3. keeps ``v`` until it reaches ``s = 0``: it strikes the puck at ``v`` and sweeps through the puck's start
   position along ``u``;
4. decelerates to rest.

**The path** (:class:`HittingPath`): IK (:func:`~mtrl_robot.arms.ik.solve_ik_batch`, on the arm extended to the
ball centre) runs once, when the generator is built, on ``N_VIA`` Cartesian via points from ``RUN_UP`` behind the
contact point to ``RUN_OUT`` past the puck's start (``s = 0`` is one of them) for every angle of a grid
``ANGLE_STEP`` apart. A motion's via postures interpolate linearly between the two nearest grid angles, and a
not-a-knot cubic spline q(s) runs through them.

**The timing** (:mod:`~mtrl_robot.motions.path_timing`): the path speed ṡ (the paddle's speed) ramps from rest to
``v`` and back with ruckig, within bounds on the path's acceleration and jerk that keep every joint inside the
target arm's limits (:class:`~mtrl_robot.backends.limits.MotionLimits`; :func:`published_limits` by default: the
family's published velocity, acceleration and jerk at a 1 kHz controller). The motion is ``N_WAYPOINTS`` evenly
spaced waypoints with positions and velocities, and the controller's cubic interpolation between them is checked
with :func:`~mtrl_robot.backends.limits.check_motion`, the safety layer's check. (θ, v) → trajectory is a smooth
function; a (θ, v) whose motion cannot be made within the limits (a speed over a joint's velocity limit, a ramp
longer than the line) is a :class:`~mtrl_robot.motions.path_timing.MotionRefused`. ``SPEED_RANGE`` ends where the
Panda's published limits still time every angle with room to spare for decoded motions: the ramp down past the
puck, where the arm stretches and its shoulder joint's acceleration binds, outgrows ``RUN_OUT`` just below 1 m/s.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, replace

import numpy as np
from scipy.interpolate import CubicSpline, PPoly

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.ik import solve_ik_batch
from mtrl_robot.backends.limits import MotionLimits, check_motion
from mtrl_robot.backends.trajectory import JointLimits, JointTrajectory, TrajectoryError
from mtrl_robot.hardware.safety import SafetyLimits
from mtrl_robot.motions.path_timing import (
    RETRIES,
    SHARE,
    TIGHTEN,
    MotionRefused,
    Ramp,
    check_speed,
    path_bounds,
    path_rates,
)
from mtrl_robot.scenes.puck_table import Scene

N_WAYPOINTS = 32  # points per hitting motion, evenly spaced in time
N_VIA_UP, N_VIA_OUT = 4, 2  # Cartesian via points of a hitting line up to the puck's start (with it), and beyond
N_VIA = N_VIA_UP + N_VIA_OUT
ANGLE_RANGE = (-np.pi / 3, np.pi / 3)  # rad, hitting direction from the world x axis
ANGLE_STEP = np.radians(2.0)  # rad between the angles whose via points are solved by IK
SPEED_RANGE = (0.3, 0.95)  # m/s, paddle speed at contact (see the module docstring for its upper end)
CLEARANCE = 0.06  # m between ball and puck at the start (3σ of the default position noise)
PRE_CONTACT = 0.02  # m before contact from which the paddle moves at full speed
RUN_UP = 0.25  # m behind the contact point where the path begins: the longest run-up a motion may take
RUN_OUT = 0.24  # m past the puck's start where the path ends: the longest ramp down a motion may take
IK_TOLERANCE = 1e-4  # m
PADDLE_LENGTH = 0.15  # m, flange to the paddle ball's centre: keeps the wrist well above the puck
PADDLE_RADIUS = 0.03  # m


@dataclass(frozen=True)
class HittingMotions:
    """A batch of hitting motions sampled at ``n_waypoints`` evenly spaced times from 0 to their duration."""

    joint_names: tuple[str, ...]
    angles: np.ndarray  # (n,) rad
    speeds: np.ndarray  # (n,) m/s
    durations: np.ndarray  # (n,) s
    contact_times: np.ndarray  # (n,) s, when the ball nominally touches the puck
    positions: np.ndarray  # (n, T, dof) rad
    velocities: np.ndarray  # (n, T, dof) rad/s
    paddle_path: np.ndarray  # (n, T, 3) m, commanded ball centre in the world frame
    via_positions: np.ndarray  # (n, N_VIA, dof) rad, the path's postures at the via points

    def __len__(self) -> int:
        return len(self.angles)

    def trajectory(self, i: int = 0) -> JointTrajectory:
        times = np.linspace(0.0, self.durations[i], self.positions.shape[1])
        return JointTrajectory(self.joint_names, times, self.positions[i], self.velocities[i])


def with_paddle(scene: Scene) -> Scene:
    """``scene`` itself if it has a paddle, else ``scene`` with the default one."""
    if scene.paddle_radius > 0:
        return scene
    return replace(scene, paddle_length=PADDLE_LENGTH, paddle_radius=PADDLE_RADIUS)


def paddle_arm(arm: Arm, scene: Scene) -> Arm:
    """``arm`` with its flange moved to the paddle ball's centre (for IK and FK of the paddle)."""
    if scene.paddle_radius <= 0:
        raise ValueError("the scene has no paddle (paddle.radius is 0)")
    flange = arm.flange_transform()
    return arm.with_changes(flange_xyz=tuple(flange[:3, 3] + scene.paddle_length * flange[:3, 2]))


def arm_limits(arm: Arm) -> JointLimits:
    return JointLimits(arm.joint_names, arm.lower, arm.upper, arm.velocity_limits,
                       np.array([j.effort for j in arm.joints]))


def published_limits(arm: Arm) -> MotionLimits:
    """The arm family's published joint velocity, acceleration and jerk limits, at a 1 kHz controller."""
    return SafetyLimits.from_arm(arm).motion


def check_parameters(angles, speeds) -> tuple[np.ndarray, np.ndarray]:
    """Angles and speeds as 1-D float arrays of one length, or a ValueError naming the bad value."""
    angles, speeds = np.atleast_1d(np.asarray(angles, float)), np.atleast_1d(np.asarray(speeds, float))
    if angles.shape != speeds.shape or angles.ndim != 1:
        raise ValueError(f"angles and speeds must be 1-D and of one length, got {angles.shape} and {speeds.shape}")
    for name, values, (lo, hi) in (("angle", angles, ANGLE_RANGE), ("strength", speeds, SPEED_RANGE)):
        bad = ~(np.isfinite(values) & (values >= lo) & (values <= hi))
        if bad.any():
            raise ValueError(f"hitting {name} {values[bad][0]} is outside [{lo:.4g}, {hi:.4g}]")
    return angles, speeds


@dataclass(frozen=True)
class TimedHit:
    """One timed hit: waypoint times, positions, velocities, and where the paddle is on its line."""

    times: np.ndarray  # (T,) s
    positions: np.ndarray  # (T, dof) rad
    velocities: np.ndarray  # (T, dof) rad/s
    line: np.ndarray  # (T,) m, the ball's offset s along the hitting line
    contact_time: float  # s


class HittingPath:
    """The hitting line's path parameter, and the timing of any joint path along it within ``limits``.

    ``via`` are the path parameters (m along the line, ``s = 0`` at the puck's start) of the via postures; a path
    is the not-a-knot cubic spline through postures given there. :meth:`time` turns one into a checked motion.
    """

    def __init__(self, via: np.ndarray, contact: float, limits: MotionLimits, n_waypoints: int = N_WAYPOINTS):
        if n_waypoints < 4:
            raise ValueError(f"a hitting motion needs at least 4 waypoints, got {n_waypoints}")
        self.via, self.contact, self.limits, self.n_waypoints = np.asarray(via, float), contact, limits, n_waypoints
        self._breaks = tuple(self.via.tolist())  # for bisect, many times faster than numpy on one number
        self._waypoints = np.arange(n_waypoints, dtype=float)  # waypoint k is at k · duration / (n_waypoints − 1)

    def _pieces(self, begin: float, end: float) -> tuple[int, int]:
        """The first and last spline piece covering the path from ``begin`` to ``end``."""
        last_piece = len(self._breaks) - 2
        first = min(max(bisect_right(self._breaks, begin) - 1, 0), last_piece)
        return first, min(max(bisect_left(self._breaks, end) - 1, first), last_piece)

    def _ramp(self, bounds: np.ndarray, speed: float, share: float, run_up: bool) -> Ramp:
        """The speed ramp up to contact (``run_up``) or down after ``s = 0`` for a path with per-piece ``bounds``
        (3, pieces, dof), planned with the bounds over the pieces it runs through: from those of the shortest
        run-up (``CLEARANCE``) or none on, widened until the ramp fits the pieces it was planned on."""
        first, last = self._pieces(self.contact - CLEARANCE, 0.0) if run_up else self._pieces(0.0, 0.0)
        while True:
            ramp = Ramp.plan(speed, *path_rates(bounds[:, first:last + 1].max(axis=1), speed, self.limits, share))
            begin, end = ((self.contact - max(CLEARANCE, ramp.distance + PRE_CONTACT), 0.0) if run_up
                          else (0.0, ramp.distance))
            if begin < self.via[0] or end > self.via[-1]:
                raise MotionRefused(f"a paddle speed of {speed:.3f} m/s needs a {'run-up' if run_up else 'run-out'} "
                                    f"of {ramp.distance:.3f} m, more than the hitting line holds")
            need_first, need_last = self._pieces(begin, end)
            if need_first >= first and need_last <= last:
                return ramp
            first, last = min(first, need_first), max(last, need_last)

    def spline(self, postures: np.ndarray) -> np.ndarray:
        """The path through ``postures`` (N_VIA, dof) at the via points: its coefficients (pieces, 4, dof)."""
        return CubicSpline(self.via, postures, axis=0).c.transpose(1, 0, 2)

    def time(self, coefficients: np.ndarray, speed: float, names: tuple[str, ...]) -> TimedHit:
        """The motion along the path :meth:`spline` gives (its ``coefficients``) with contact speed ``speed``
        (m/s); ``MotionRefused`` when it cannot be made within the limits."""
        speed = float(speed)
        if not np.isfinite(coefficients).all() or not np.isfinite(speed) or speed <= 0:
            raise MotionRefused(f"a hitting motion needs a finite path and a positive speed, got {speed}")
        spline = PPoly.construct_fast(coefficients.transpose(1, 0, 2), self.via)
        bounds = path_bounds(self.via, coefficients)  # (3, pieces, dof)
        share, problem = SHARE, ""
        for _ in range(RETRIES + 1):
            up = self._ramp(bounds, speed, share, True)
            start = self.contact - max(CLEARANCE, up.distance + PRE_CONTACT)
            first, last = self._pieces(start + up.distance, 0.0)
            check_speed(bounds[:, first:last + 1].max(axis=1), speed, self.limits, names)
            down = self._ramp(bounds, speed, share, False)
            cruise = -(start + up.distance) / speed  # at full speed until s = 0
            duration = up.duration + cruise + down.duration
            times = self._waypoints * (duration / (self.n_waypoints - 1))  # as np.linspace(0, duration, n) has them
            times[-1] = duration
            (s_up, v_up), (s_down, v_down) = up(times), down(duration - times)
            line = np.where(times <= up.duration + cruise, start + s_up, down.distance - s_down)
            positions, slope = spline(line), spline(line, 1)
            velocities = slope * np.minimum(v_up, v_down)[:, None]
            velocities[[0, -1]] = 0.0
            contact_time = up.duration + (self.contact - start - up.distance) / speed
            try:
                check_motion(JointTrajectory(names, times, positions, velocities), self.limits, names)
                return TimedHit(times, positions, velocities, line, contact_time)
            except TrajectoryError as exc:
                share, problem = share * TIGHTEN, str(exc)
        raise MotionRefused(f"no timing at a paddle speed of {speed:.3f} m/s passes the limits: {problem}")


class HittingMotionGenerator:
    """(angle, strength) → hitting motion for one arm on one scene within ``limits`` (default: the family's
    published ones); IK runs once, here."""

    def __init__(self, arm: Arm, scene: Scene, limits: MotionLimits | None = None, n_waypoints: int = N_WAYPOINTS):
        self.arm, self.scene, self.joint_names = arm, scene, arm.joint_names
        self.limits = arm_limits(arm)
        contact = -(scene.puck_radius + scene.paddle_radius)
        self.height = scene.table_top + scene.puck_height / 2
        via = np.concatenate([np.linspace(contact - RUN_UP, 0.0, N_VIA_UP),
                              np.linspace(0.0, RUN_OUT, N_VIA_OUT + 1)[1:]])
        self.path = HittingPath(via, contact, published_limits(arm) if limits is None else limits, n_waypoints)
        span = ANGLE_RANGE[1] - ANGLE_RANGE[0]
        self.angles = np.linspace(*ANGLE_RANGE, int(np.ceil(span / ANGLE_STEP)) + 1)
        points = self._line(self.angles[:, None], via[None, :])
        results = solve_ik_batch(paddle_arm(arm, scene), points.reshape(-1, 3), tol=IK_TOLERANCE)
        failed = [k for k, r in enumerate(results) if not r.success]
        if failed:
            raise ValueError(f"{arm.robot_id}: the paddle cannot reach {points.reshape(-1, 3)[failed[0]].round(4)} "
                             f"on the hitting line (IK error {results[failed[0]].error:.4f} m)")
        self._via_postures = np.array([r.q for r in results]).reshape(len(self.angles), N_VIA, arm.dof)
        self._coefficients = np.array([self.path.spline(p) for p in self._via_postures])  # (angles, pieces, 4, dof)

    @property
    def n_waypoints(self) -> int:
        return self.path.n_waypoints

    def _line(self, angles: np.ndarray, s: np.ndarray) -> np.ndarray:
        """World points at offsets ``s`` along the hitting lines of ``angles`` (broadcast together), (..., 3)."""
        x = self.scene.puck_start[0] + s * np.cos(angles)
        y = self.scene.puck_start[1] + s * np.sin(angles)
        return np.stack(np.broadcast_arrays(x, y, np.full_like(x, self.height)), axis=-1)

    def _blend(self, tables: tuple[np.ndarray, ...], angles: np.ndarray) -> list[np.ndarray]:
        """Rows of each of ``tables`` (one per grid angle) for checked ``angles``: linear between the two nearest."""
        position = (angles - self.angles[0]) / (self.angles[1] - self.angles[0])
        lower = np.minimum(np.maximum(np.floor(position).astype(int), 0), len(self.angles) - 2)
        blended = []
        for table in tables:
            weight = (position - lower).reshape((-1,) + (1,) * (table.ndim - 1))
            blended.append((1 - weight) * table[lower] + weight * table[lower + 1])
        return blended

    def motions(self, angles, speeds) -> HittingMotions:
        """A batch of motions, one per (angle, strength) pair; out-of-range parameters raise ValueError, a motion
        that cannot be made within the limits ``MotionRefused``."""
        angles, speeds = check_parameters(angles, speeds)
        postures, coefficients = self._blend((self._via_postures, self._coefficients), angles)
        hits = [self.path.time(c, v, self.joint_names) for c, v in zip(coefficients, speeds.tolist(), strict=True)]
        lines = np.array([h.line for h in hits])
        return HittingMotions(self.joint_names, angles, speeds, np.array([h.times[-1] for h in hits]),
                              np.array([h.contact_time for h in hits]), np.array([h.positions for h in hits]),
                              np.array([h.velocities for h in hits]), self._line(angles[:, None], lines), postures)

    def motion(self, angle: float, speed: float) -> JointTrajectory:
        """One hitting trajectory within the limits (``MotionRefused`` otherwise): the trajectory of
        :meth:`motions`, without the batch's other arrays."""
        angles, speeds = check_parameters(angle, speed)
        (coefficients,) = self._blend((self._coefficients,), angles)
        hit = self.path.time(coefficients[0], float(speeds[0]), self.joint_names)
        return JointTrajectory(self.joint_names, hit.times, hit.positions, hit.velocities)
