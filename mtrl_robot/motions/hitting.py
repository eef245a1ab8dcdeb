"""Parameterized hitting motions: (hitting angle, strength) → a joint trajectory whose paddle strikes the puck.

The paddle is the ball at the end of a stick along the flange z axis (``Scene.paddle_length`` and
``paddle_radius``; :func:`with_paddle` gives a scene without one ``PADDLE_LENGTH`` and ``PADDLE_RADIUS``).
In the table plane the puck rests at ``p₀`` (the scene's nominal start) and
``u = (cos θ, sin θ)`` is the hitting direction, θ measured from the world x axis. The ball centre moves
at the puck's mid-height along the line ``p₀ + s·u``:

1. it starts at rest ``CLEARANCE`` behind the contact point ``s_c = −(R_puck + r_ball)`` (farther back when
   the run-up needs more room), so the puck's position noise does not put the puck on the ball;
2. accelerates to the strength ``v`` (m/s) with a smoothstep velocity ramp of peak ``ACCELERATION``;
3. keeps ``v`` from ``PRE_CONTACT`` before ``s_c`` until it reaches ``s = 0``: it strikes the puck at ``v``
   and sweeps through the puck's start position along ``u``;
4. decelerates to rest with the same ramp.

Joint space: IK (:func:`~mtrl_robot.arms.ik.solve_ik_batch`, on the arm extended to the ball centre) runs
once, when the generator is built, on ``N_VIA`` Cartesian via points along the hitting line (``s = 0`` is
one of them) for every angle of a grid ``ANGLE_STEP`` apart. A motion interpolates linearly between the
two nearest grid angles, runs a cubic spline q(s) through the via points, and samples it at
``N_WAYPOINTS`` evenly spaced times, with velocities q'(s)·ṡ(t): the motion is C¹, starts and ends at
rest, and (θ, v) → trajectory is a smooth function (the paddle stays within 0.05 mm of the line). Within
``ANGLE_RANGE`` × ``SPEED_RANGE`` the Panda stays below 92 % of its velocity limits; other arms may not
(their kinematics put parts of the box over a limit). :meth:`HittingMotionGenerator.motion` validates every
motion with :func:`~mtrl_robot.backends.trajectory.check_trajectory`, and so does every backend it is sent to.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.interpolate import CubicSpline

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.ik import solve_ik_batch
from mtrl_robot.backends.trajectory import JointLimits, JointTrajectory, check_trajectory
from mtrl_robot.scenes.puck_table import Scene

N_WAYPOINTS = 32  # points per hitting motion, evenly spaced in time
N_VIA = 9  # Cartesian via points per hitting line (7 up to the puck's start, 2 beyond)
ANGLE_RANGE = (-np.pi / 3, np.pi / 3)  # rad, hitting direction from the world x axis
ANGLE_STEP = np.radians(2.0)  # rad between the angles whose via points are solved by IK
SPEED_RANGE = (0.3, 1.0)  # m/s, paddle speed at contact
ACCELERATION = 10.0  # m/s², peak paddle acceleration and deceleration
CLEARANCE = 0.06  # m between ball and puck at the start (3σ of the default position noise)
PRE_CONTACT = 0.02  # m before contact from which the paddle moves at full speed
IK_TOLERANCE = 1e-4  # m
PADDLE_LENGTH = 0.15  # m, flange to the paddle ball's centre: keeps the wrist well above the puck
PADDLE_RADIUS = 0.03  # m


@dataclass(frozen=True)
class HittingMotions:
    """A batch of hitting motions sampled at ``N_WAYPOINTS`` evenly spaced times from 0 to their duration."""

    joint_names: tuple[str, ...]
    angles: np.ndarray  # (n,) rad
    speeds: np.ndarray  # (n,) m/s
    durations: np.ndarray  # (n,) s
    contact_times: np.ndarray  # (n,) s, when the ball nominally touches the puck
    positions: np.ndarray  # (n, T, dof) rad
    velocities: np.ndarray  # (n, T, dof) rad/s
    paddle_path: np.ndarray  # (n, T, 3) m, commanded ball centre in the world frame

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


def _unit(x: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(x, 0.0), 1.0)


class SpeedProfile:
    """Ball position s(t) and speed ṡ(t) along the hitting line, for a batch of strengths."""

    def __init__(self, speeds: np.ndarray, contact: float):
        self.speed = speeds
        self.ramp = 1.5 * speeds / ACCELERATION  # smoothstep ramp: peak acceleration 1.5 v / T
        ramp_distance = speeds * self.ramp / 2
        self.start = contact - np.maximum(CLEARANCE, ramp_distance + PRE_CONTACT)
        self.cruise = -(self.start + ramp_distance) / speeds  # at full speed until s = 0
        self.duration = 2 * self.ramp + self.cruise
        self.contact_time = self.ramp + (contact - self.start - ramp_distance) / speeds

    def __call__(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """s (m) and ṡ (m/s) at ``times`` (n, T)."""
        v, ramp, cruise = self.speed[:, None], self.ramp[:, None], self.cruise[:, None]
        up = _unit(times / ramp)  # np.clip costs several times more per call
        down = _unit((times - ramp - cruise) / ramp)
        s = self.start[:, None] + v * (ramp * (up**3 - up**4 / 2) + np.minimum(np.maximum(times - ramp, 0.0), cruise)
                                       + ramp * (down - down**3 + down**4 / 2))
        speed = v * (3 * up**2 - 2 * up**3 - 3 * down**2 + 2 * down**3)
        return s, speed


class HittingMotionGenerator:
    """(angle, strength) → hitting motion for one arm on one scene; IK runs once, here."""

    def __init__(self, arm: Arm, scene: Scene, n_waypoints: int = N_WAYPOINTS):
        if n_waypoints < 4:
            raise ValueError(f"a hitting motion needs at least 4 waypoints, got {n_waypoints}")
        self.arm, self.scene, self.n_waypoints = arm, scene, n_waypoints
        self.limits = arm_limits(arm)
        self.contact = -(scene.puck_radius + scene.paddle_radius)
        self.height = scene.table_top + scene.puck_height / 2
        fastest = SpeedProfile(np.array([SPEED_RANGE[1]]), self.contact)
        slowest = SpeedProfile(np.array([SPEED_RANGE[0]]), self.contact)
        first = min(fastest.start[0], slowest.start[0])
        last = SPEED_RANGE[1] * fastest.ramp[0] / 2
        self.via = np.concatenate([np.linspace(first, 0.0, N_VIA - 2), np.linspace(0.0, last, 3)[1:]])
        span = ANGLE_RANGE[1] - ANGLE_RANGE[0]
        self.angles = np.linspace(*ANGLE_RANGE, int(np.ceil(span / ANGLE_STEP)) + 1)
        points = self._line(self.angles[:, None], self.via[None, :])
        results = solve_ik_batch(paddle_arm(arm, scene), points.reshape(-1, 3), tol=IK_TOLERANCE)
        failed = [k for k, r in enumerate(results) if not r.success]
        if failed:
            raise ValueError(f"{arm.robot_id}: the paddle cannot reach {points.reshape(-1, 3)[failed[0]].round(4)} "
                             f"on the hitting line (IK error {results[failed[0]].error:.4f} m)")
        q_via = np.array([r.q for r in results]).reshape(len(self.angles), N_VIA, arm.dof)
        self._coefficients = CubicSpline(self.via, q_via, axis=1).c.transpose(2, 1, 0, 3)  # (angles, piece, 4, dof)

    def _line(self, angles: np.ndarray, s: np.ndarray) -> np.ndarray:
        """World points at offsets ``s`` along the hitting lines of ``angles`` (broadcast together), (..., 3)."""
        x = self.scene.puck_start[0] + s * np.cos(angles)
        y = self.scene.puck_start[1] + s * np.sin(angles)
        return np.stack(np.broadcast_arrays(x, y, np.full_like(x, self.height)), axis=-1)

    def motions(self, angles, speeds) -> HittingMotions:
        """A batch of motions, one per (angle, strength) pair; out-of-range parameters raise ValueError."""
        angles, speeds = check_parameters(angles, speeds)
        profile = SpeedProfile(speeds, self.contact)
        times = profile.duration[:, None] * np.linspace(0.0, 1.0, self.n_waypoints)[None]
        s, s_dot = profile(times)
        position = (angles - self.angles[0]) / (self.angles[1] - self.angles[0])
        lower = np.minimum(np.maximum(np.floor(position).astype(int), 0), len(self.angles) - 2)
        piece = np.minimum(np.maximum(np.searchsorted(self.via, s, side="right") - 1, 0), N_VIA - 2)  # (n, T)
        weight = (position - lower)[:, None, None, None]
        rows = lower[:, None]
        c = (1 - weight) * self._coefficients[rows, piece] + weight * self._coefficients[rows + 1, piece]
        ds = (s - self.via[piece])[..., None]  # c: (n, T, 4, dof), highest power first
        q = ((c[..., 0, :] * ds + c[..., 1, :]) * ds + c[..., 2, :]) * ds + c[..., 3, :]
        dq_ds = (3 * c[..., 0, :] * ds + 2 * c[..., 1, :]) * ds + c[..., 2, :]
        return HittingMotions(self.arm.joint_names, angles, speeds, profile.duration, profile.contact_time, q,
                              dq_ds * s_dot[..., None], self._line(angles[:, None], s))

    def motion(self, angle: float, speed: float) -> JointTrajectory:
        """One validated hitting trajectory (raises ``TrajectoryError`` naming a joint over its limits)."""
        return check_trajectory(self.motions([angle], [speed]).trajectory(0), self.limits)
