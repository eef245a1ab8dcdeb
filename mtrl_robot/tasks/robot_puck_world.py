"""Puck hitting on a robot reached through the one robot interface: the meta-RL world outside the simulator.

:class:`RobotPuckWorld` is the :class:`~mtrl_robot.learning.puck.train.HitSpace` of a trained run (its goals,
observations and latent box) whose hits run on any :class:`~mtrl_robot.backends.interface.RobotBackend` — in
practice the hardware client, so every motion passes the safety layer — with the puck measured from outside
(the overhead camera through the perception node). The physics are whatever the puck and table really are,
so :func:`~mtrl_robot.learning.puck.train.adaptation_curve` with this world adapts the policy to them.

One hit:

1. decode the latent into a hitting motion (:meth:`~mtrl_robot.models.hitting_vae.HittingVAE.decode_motion`);
2. **approach**: move from the measured posture to the motion's first posture, at rest, in
   ``approach_time(…)`` (at most ``APPROACH_SPEED`` of each joint's velocity limit);
3. **puck back at its start**: ``reset_puck()`` (in simulation the arm node's ``~/reset_scene`` service; on a
   bench a person puts the puck back), then ``wait_puck_at_start()`` until the measurement sees it there;
4. **hit**: the motion itself;
5. **retract** (with ``home``): once ``measure_rest()`` sees the puck still, back to the motion's first
   posture (along the hitting line, away from the puck) and then to ``home``, out of the overhead camera's
   view, as the simulated camera evaluation does; then the puck's resting position from ``measure_rest()``.

A hit the safety layer or the controller refuses, or whose puck is not found, scores ``MISSED_DISTANCE`` and is
counted in ``refused`` or ``misses``; the policy learns to avoid it like any other bad outcome.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from mtrl_robot.backends.interface import RobotBackend
from mtrl_robot.backends.trajectory import JointTrajectory, TrajectoryError
from mtrl_robot.learning.puck.train import MISSED_DISTANCE, HitSpace, PuckMetaRLConfig, Task
from mtrl_robot.models.hitting_vae import HittingVAE

APPROACH_SPEED = 0.3  # fraction of each joint's velocity limit the approach may use (its peak)
MIN_APPROACH_TIME = 1.0  # s
ROBOT_TASK = Task("robot", {}, False)  # the physics are the real ones: nothing to set


def approach_time(start: np.ndarray, goal: np.ndarray, velocity_limits: np.ndarray) -> float:
    """Duration of a rest-to-rest cubic from ``start`` to ``goal`` whose peak speed is ``APPROACH_SPEED`` of the limit.

    A cubic with zero end velocities peaks at 1.5·Δq/T.
    """
    peak = 1.5 * np.abs(np.asarray(goal) - np.asarray(start)) / (APPROACH_SPEED * np.asarray(velocity_limits))
    return max(MIN_APPROACH_TIME, float(peak.max()))


class RobotPuckWorld(HitSpace):
    """Hits executed by a robot backend, outcomes measured by a camera (or any other measurement)."""

    def __init__(self, backend: RobotBackend, vae: HittingVAE, puck_start: np.ndarray, config: PuckMetaRLConfig,
                 measure_rest: Callable[[], np.ndarray | None], reset_puck: Callable[[], None],
                 wait_puck_at_start: Callable[[], bool], home: np.ndarray | None = None,
                 log: Callable[[str], None] = print):
        if tuple(backend.joint_names) != tuple(vae.joint_names):
            raise ValueError(f"the motion VAE was trained for joints {list(vae.joint_names)}, the robot has "
                             f"{list(backend.joint_names)}")
        super().__init__(vae, puck_start, config)
        self.backend, self.log, self.home = backend, log, home
        self.measure_rest, self.reset_puck, self.wait_puck_at_start = measure_rest, reset_puck, wait_puck_at_start
        self.refused, self.misses = 0, 0
        self.record: list[dict] = []  # one entry per hit: goal, measured final position (None if none), distance

    @property
    def hits(self) -> int:
        return len(self.record)

    def hit(self, task: Task, goals: np.ndarray, actions: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
        """Final distances (m) of one real hit per (goal, normalised action); ``task`` and ``rng`` are unused."""
        distances = np.empty(len(goals))
        for i, (goal, latent) in enumerate(zip(goals, self.latents(actions), strict=True)):
            final = self._hit_once(self.vae.decode_motion(latent)[0])
            distances[i] = MISSED_DISTANCE if final is None else float(np.linalg.norm(final[:2] - goal))
            self.record.append({"goal": goal.tolist(), "final": None if final is None else final.tolist(),
                                "distance": float(distances[i])})
            self.log(f"hit {self.hits}: goal {goal.round(3).tolist()}, puck at "
                     f"{None if final is None else final.round(3).tolist()}, distance {distances[i] * 100:.1f} cm")
        return distances

    def _hit_once(self, motion: JointTrajectory) -> np.ndarray | None:
        """The puck's resting (x, y) after ``motion``, or None if it was refused or the puck was not found."""
        try:
            self._move_to(motion.positions[0], "approach")
            self.reset_puck()
            if not self.wait_puck_at_start():
                self.log("hit skipped: the puck is not at its start")
                self.misses += 1
                return None
            self._execute(motion, "hit")
            if self.home is not None:
                self.measure_rest()  # the arm stays until the puck has stopped, then gets out of the camera's view:
                self._move_to(motion.positions[0], "retract")  # back along the hitting line, away from the puck,
                self._move_to(self.home, "retract")  # then home
        except TrajectoryError as exc:  # a SafetyError is one too
            self.refused += 1
            self.log(f"hit refused or failed, scored as a miss: {exc}")
            return None
        final = self.measure_rest()
        if final is None:
            self.misses += 1
        return final

    def _move_to(self, goal: np.ndarray, stage: str) -> None:
        """A rest-to-rest move from the measured posture to ``goal``."""
        start = self.backend.read_state().positions
        duration = approach_time(start, goal, self.backend.limits.velocity)
        self._execute(JointTrajectory(self.backend.joint_names, np.array([0.0, duration]), np.vstack([start, goal]),
                                      np.zeros((2, len(goal)))), stage)

    def _execute(self, trajectory: JointTrajectory, stage: str) -> None:
        result = self.backend.execute(trajectory)
        if not result.success:
            raise TrajectoryError(f"{stage}: {result.message}")
