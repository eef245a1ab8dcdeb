"""Timing a joint path within joint velocity, acceleration and jerk limits: path–velocity decomposition with ruckig.

A motion along a path is a joint path q(s) and a timing s(t). The path here is a cubic spline over a path
parameter s in metres (the hitting line's arc length, so that ṡ is the paddle's speed). Its joint motion is

    q̇ = q′ ṡ,    q̈ = q″ ṡ² + q′ s̈,    q⃛ = q‴ ṡ³ + 3 q″ ṡ s̈ + q′ s⃛,

so bounds on |q′|, |q″| and |q‴| over the path (per joint, :func:`path_bounds`) turn a cruise speed V and the
joint limits into bounds on the path's own acceleration and jerk (:func:`path_rates`) under which every joint stays
inside its acceleration and jerk limits for every ṡ ≤ V; at ṡ = V the velocity limits hold where |q′| V is within
them (:func:`check_speed`, on the stretch run at full speed; the ramps run slower). The path's speed goes from rest
to V, holds V through contact, and returns to rest: each ramp is one degree of freedom that ruckig (Berscheid and
Kröger, RSS 2021; the ``ruckig`` package) times, jerk-limited and time-optimal, from (ṡ, s̈) = (0, 0) to (V, 0)
(:class:`Ramp`; the ramp down is such a ramp, planned with the bounds of its own stretch, reversed in time).
Ruckig's jerk bound is kept low enough that an acceleration ramp lasts at least
``MIN_RAMP_TIME``, several waypoint spacings, so that the controller's cubic interpolation between the waypoints
follows the profile closely.

Limits below ``SHARE`` of each joint's are planned with; :func:`~mtrl_robot.backends.limits.check_motion` (the
safety layer's check) then judges what the controller commands for the waypoints, and a motion that does not pass
is planned again with a tighter share, at most ``RETRIES`` times. A path that cannot reach the asked speed
within the velocity limits, or whose checked motion never passes, is a :class:`MotionRefused`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from ruckig import ControlInterface, InputParameter, Result, Ruckig, Trajectory

from mtrl_robot.backends.limits import MotionLimits
from mtrl_robot.backends.trajectory import TrajectoryError

SHARE = 0.95  # of each joint's acceleration and jerk limits planned with (the check then judges the result)
TIGHTEN = 0.8  # share multiplier when the checked motion exceeds a limit
RETRIES = 3  # tighter plans tried before a motion is refused
MIN_RAMP_TIME = 0.04  # s over which the path's acceleration may rise from 0 to its bound


_RUCKIG = Ruckig(1)  # offline planning only: calculate() keeps no state between calls


class MotionRefused(TrajectoryError):
    """A motion that cannot be made within the limits; the message says why (a hit refused, scored as a miss)."""


def path_bounds(breaks: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """Largest |q′|, |q″|, |q‴| per piece and joint of a cubic spline: coefficients (pieces, 4, dof), highest
    power first, on ``breaks`` (pieces + 1,); returns (3, pieces, dof)."""
    h = np.diff(breaks)[:, None]
    a, b, c = 3 * coefficients[:, 0], 2 * coefficients[:, 1], coefficients[:, 2]  # q′ = a x² + b x + c
    vertex = np.divide(-b, 2 * a, out=np.zeros_like(b), where=a != 0)
    inside = (vertex > 0) & (vertex < h)
    bounds = np.empty((3,) + a.shape)
    np.maximum(np.maximum(np.abs(c), np.abs((a * h + b) * h + c)),
               np.where(inside, np.abs((a * vertex + b) * vertex + c), 0.0), out=bounds[0])
    np.maximum(np.abs(b), np.abs(2 * a * h + b), out=bounds[1])
    np.abs(6 * coefficients[:, 0], out=bounds[2])
    return bounds


def check_speed(bounds: np.ndarray, speed: float, limits: MotionLimits, names: tuple[str, ...]) -> None:
    """``MotionRefused`` unless a path with bounds (3, dof) can be run at ``speed`` (m/s) within the velocity limits
    of the joints ``names``."""
    need = bounds[0] * speed
    ratio = need / limits.velocity
    j = int(np.argmax(ratio))
    if ratio[j] > 1:
        raise MotionRefused(f"{names[j]}: a paddle speed of {speed:.3f} m/s needs {need[j]:.3f} rad/s, over its "
                            f"velocity limit {limits.velocity[j]:.3f} rad/s")


def path_rates(bounds: np.ndarray, speed: float, limits: MotionLimits, share: float) -> tuple[float, float]:
    """The path's acceleration (m/s²) and jerk (m/s³) bounds for path speeds up to ``speed`` (m/s) on a path with
    ``bounds`` (3, dof) under ``share`` of ``limits``; ``MotionRefused`` when the path's curvature alone uses them."""
    first, second, third = bounds
    max_acceleration, max_jerk = limits.acceleration, limits.jerk
    moving = first > 0
    if not moving.all():
        first, second, third = first[moving], second[moving], third[moving]
        max_acceleration, max_jerk = max_acceleration[moving], max_jerk[moving]
    acceleration = ((share * max_acceleration - second * speed**2) / first).min()
    jerk = ((share * max_jerk - third * speed**3 - 3 * second * speed * acceleration) / first).min()
    if not acceleration > 0 or not jerk > 0:
        raise MotionRefused(f"at a paddle speed of {speed:.3f} m/s the path's curvature alone uses the joints' "
                            f"acceleration or jerk limits")
    return float(acceleration), float(min(jerk, acceleration / MIN_RAMP_TIME))


_INPUT = InputParameter(1)  # one ramp's input, rewritten for every plan
_INPUT.control_interface = ControlInterface.Velocity
_INPUT.current_position, _INPUT.current_velocity, _INPUT.current_acceleration = [0.0], [0.0], [0.0]
_INPUT.target_acceleration = [0.0]
_TRAJECTORY = Trajectory(1)  # ruckig's output, read into a Ramp at once
_PLANNING = threading.Lock()  # one plan at a time through the shared input and output


@dataclass(frozen=True)
class Ramp:
    """Ruckig's jerk-limited ramp of the path speed from rest to ``speed``: phase durations, jerks, and the state
    (s, ṡ, s̈) at each phase's start."""

    speed: float  # m/s
    durations: np.ndarray  # (7,) s
    jerks: np.ndarray  # (7,) m/s³
    start: np.ndarray  # (3, 8): position, velocity, acceleration at the phase boundaries
    ends: np.ndarray  # (7,) s after the ramp's start when each phase ends
    duration: float  # s
    distance: float  # m

    @staticmethod
    def plan(speed: float, acceleration: float, jerk: float) -> Ramp:
        """The time-optimal ramp from (0, 0, 0) to speed ``speed`` with acceleration 0, within the bounds."""
        with _PLANNING:
            _INPUT.target_velocity = [speed]
            _INPUT.max_velocity, _INPUT.max_acceleration, _INPUT.max_jerk = [speed], [acceleration], [jerk]
            result = _RUCKIG.calculate(_INPUT, _TRAJECTORY)
            if result != Result.Working:
                raise MotionRefused(f"no ramp to {speed:.3f} m/s within {acceleration:.4g} m/s² and {jerk:.4g} "
                                    f"m/s³ ({result.name})")
            profile = _TRAJECTORY.profiles[0][0]
            durations, jerks = np.array(profile.t), np.array(profile.j)
            start = np.array([profile.p, profile.v, profile.a])
        return Ramp(speed, durations, jerks, start, np.cumsum(durations), float(durations.sum()), float(start[0, -1]))

    def __call__(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance and speed ``t`` s after the ramp's start (held at ``speed`` afterwards)."""
        ends, durations = self.ends, self.durations
        phase = np.minimum(np.searchsorted(ends, t, side="right"), len(ends) - 1)
        length = durations[phase]
        tau = np.minimum(np.maximum(t - (ends[phase] - length), 0.0), length)
        p, v, a = self.start[:, phase]
        j = self.jerks[phase]
        distance = p + tau * (v + tau * (a / 2 + tau * j / 6))
        speed = v + tau * (a + tau * j / 2)
        late = t > ends[-1]
        if late.any():
            distance[late] = self.distance + (t[late] - ends[-1]) * self.speed
            speed[late] = self.speed
        return distance, speed
