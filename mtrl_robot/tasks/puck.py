"""Puck hitting, Gymnasium API: one episode is one hit of the puck towards a goal on the table.

- **Observation**: the goal (x, y) in the world frame, m.
- **Action**: hitting parameters (angle rad, strength m/s) within ``ANGLE_RANGE`` × ``SPEED_RANGE`` (outside:
  ValueError), turned into a joint trajectory by :class:`~mtrl_robot.motions.hitting.HittingMotionGenerator`;
  or, with a frozen :class:`~mtrl_robot.models.hitting_vae.HittingVAE` attached, a latent vector in the box seen
  in training (outside: **clipped** into it, ``info["latent_clipped"]`` says so).
- **Reset**: draws a goal (seeded; at ``GOAL_DISTANCE`` from the puck's start within the hitting angles, or
  ``options["goal"]``: a goal off the table is a ValueError) and the episode's physics: a sample of the
  randomization spec (``config/randomization.yaml`` by default, Arndt et al.'s ranges) or a fixed condition
  (``condition=`` or ``options["condition"]``: a name in :data:`CONDITIONS` or a mapping of parameter
  values), applied with ``backend.apply_randomization``; the values read back from the engine are in ``info``.
- **Step** (one hit): the arm is reset to the motion's first posture (a simulator reset, the puck back at its
  start plus the sampled offset), the motion runs, then the simulation continues until the puck rests
  (speed below ``REST_SPEED``), leaves the table top, or ``MAX_SLIDE_TIME`` passes. Reward = −(distance from
  the puck's final (x, y) to the goal), in m; ``terminated`` is always True.

Fixed evaluation conditions, in the spirit of Arndt et al. (2020), all with a 110 g puck, the scene's
torsional and rolling friction and no position offset: ``iso_low`` (μ = 0.2), ``iso_medium`` (μ = 0.5), and
the mirror pair ``aniso_low_x`` (μx = 0.3, μy = 0.39) / ``aniso_low_y`` (μx = 0.39, μy = 0.3) with
μy/μx = 1.3 and 1/1.3, inside the randomization ranges. What "x" means is the backend's friction mapping
(PyBullet: the puck's own x axis; MuJoCo: the first tangent of its contact frame, which for the table's
normal is the world y axis).

Speed: MuJoCo runs at ``HIT_TIMESTEP`` (5 ms; the project's default 2 ms changes outcomes by a few percent),
the arm phase is only the hitting motion itself (the arm starts where the motion starts, no approach), and
the slide phase ends as soon as the puck rests; :func:`mtrl_robot.tools.bench.hitting_bench.bench_hitting` reports
hits per second.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import gymnasium as gym
import numpy as np

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.families import load_family
from mtrl_robot.backends.interface import SimBackend
from mtrl_robot.backends.trajectory import JointTrajectory
from mtrl_robot.core.paths import data_dir
from mtrl_robot.models.hitting_vae import HittingVAE
from mtrl_robot.motions.hitting import ANGLE_RANGE, SPEED_RANGE, HittingMotionGenerator, with_paddle
from mtrl_robot.randomization import RandomizationSpec, Randomizer, check_sample, load_spec
from mtrl_robot.scenes.puck_table import Scene, load_scene

HIT_TIMESTEP = 0.005  # s, MuJoCo physics step of the hitting task
GOAL_DISTANCE = (0.1, 0.4)  # m from the puck's start, for sampled goals
REST_SPEED = 0.01  # m/s; a slower puck has at most ~0.1 mm left to slide at the lowest friction
MAX_SLIDE_TIME = 3.0  # s of simulation after the motion ends
PYBULLET_DT = 1.0 / 240.0  # s, PyBullet's physics step (its default)
BACKENDS = ("mujoco", "pybullet")
EVAL_PUCK_MASS = 0.11  # kg


def _condition(slide_x: float, slide_y: float) -> dict[str, float]:
    return {"puck.friction.slide_x": slide_x, "puck.friction.slide_y": slide_y, "puck.mass": EVAL_PUCK_MASS,
            "puck.offset_x": 0.0, "puck.offset_y": 0.0}


CONDITIONS: dict[str, dict[str, float]] = {
    "iso_low": _condition(0.2, 0.2),
    "iso_medium": _condition(0.5, 0.5),
    "aniso_low_x": _condition(0.3, 0.39),
    "aniso_low_y": _condition(0.39, 0.3),
}


def make_backend(name: str, arm: Arm, scene: Scene, timestep: float = HIT_TIMESTEP) -> SimBackend:
    """The simulator ``name`` (``mujoco`` or ``pybullet``) with ``arm`` on ``scene``."""
    if name == "mujoco":
        from mtrl_robot.backends.mujoco_backend import MujocoBackend

        return MujocoBackend(arm, scene, timestep=timestep)
    if name == "pybullet":
        from mtrl_robot.backends.pybullet_backend import PybulletBackend

        return PybulletBackend(arm, scene, control_dt=PYBULLET_DT)
    raise ValueError(f"unknown backend {name!r} (use {', '.join(BACKENDS)})")


class PuckHittingEnv(gym.Env):
    """Hit the puck so that it comes to rest at the goal; one step is one hit."""

    metadata = {"render_modes": []}

    def __init__(self, arm: Arm | str = "panda", backend: str = "mujoco", scene: Scene | None = None,
                 randomization: str | Path | RandomizationSpec | None = None,
                 condition: str | Mapping[str, float] | None = None, motion_vae: HittingVAE | None = None,
                 timestep: float = HIT_TIMESTEP):
        self.arm = load_family(arm) if isinstance(arm, str) else arm
        self.scene = with_paddle(scene or load_scene())
        self.generator = HittingMotionGenerator(self.arm, self.scene)
        self.backend = make_backend(backend, self.arm, self.scene, timestep)
        self.control_dt = timestep if backend == "mujoco" else PYBULLET_DT
        if randomization is None:
            randomization = data_dir("config") / "randomization.yaml"
        if not isinstance(randomization, RandomizationSpec):
            randomization = load_spec(randomization)
        self.randomization_spec = randomization
        self._fixed_condition = None if condition is None else self._resolve_condition(condition)
        self.vae = motion_vae
        if motion_vae is not None:
            if motion_vae.joint_names != self.arm.joint_names:
                raise ValueError(f"the motion VAE was trained for joints {list(motion_vae.joint_names)}, "
                                 f"not {list(self.arm.joint_names)}")
            self.action_space = gym.spaces.Box(motion_vae.latent_low.double().numpy(),
                                               motion_vae.latent_high.double().numpy(), dtype=np.float64)
        else:
            self.action_space = gym.spaces.Box(np.array([ANGLE_RANGE[0], SPEED_RANGE[0]]),
                                               np.array([ANGLE_RANGE[1], SPEED_RANGE[1]]), dtype=np.float64)
        (x0, x1), (y0, y1) = self.table_bounds()
        self.observation_space = gym.spaces.Box(np.array([x0, y0]), np.array([x1, y1]), dtype=np.float64)
        self._randomizer: Randomizer | None = None
        self._goal: np.ndarray | None = None
        self._physics: dict[str, float] = {}
        self._condition_name: str | None = None

    def table_bounds(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """(x min, x max), (y min, y max) of the table top, m."""
        (cx, cy), (sx, sy) = self.scene.table_center, self.scene.table_size
        return (cx - sx / 2, cx + sx / 2), (cy - sy / 2, cy + sy / 2)

    def check_goal(self, goal) -> np.ndarray:
        """``goal`` as an (x, y) array, or a ValueError if it is malformed or off the table."""
        goal = np.asarray(goal, dtype=float)
        if goal.shape != (2,) or not np.all(np.isfinite(goal)):
            raise ValueError(f"a goal is a finite (x, y) position in m, got {goal.tolist()}")
        (x0, x1), (y0, y1) = self.table_bounds()
        if not (x0 <= goal[0] <= x1 and y0 <= goal[1] <= y1):
            raise ValueError(f"goal {goal.round(4).tolist()} is off the table (x in [{x0:.3f}, {x1:.3f}], "
                             f"y in [{y0:.3f}, {y1:.3f}])")
        return goal

    def _resolve_condition(self, condition: str | Mapping[str, float]) -> tuple[str | None, dict[str, float]]:
        """(name or None, parameter values) of a named or given condition; unphysical values raise ValueError."""
        if isinstance(condition, str):
            if condition not in CONDITIONS:
                raise ValueError(f"unknown condition {condition!r} (known: {', '.join(CONDITIONS)})")
            return condition, dict(CONDITIONS[condition])
        values = {str(k): float(v) for k, v in dict(condition).items()}
        check_sample(values, self.backend.nominal_parameters())
        return None, values

    def reset(self, *, seed: int | None = None, options: Mapping | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - {"goal", "condition"})
        if unknown:
            raise ValueError(f"unknown reset options {unknown} (known: goal, condition)")
        if seed is not None or self._randomizer is None:
            self._randomizer = Randomizer(self.randomization_spec, self.backend.nominal_parameters(),
                                          seed=int(self.np_random.integers(2**63)))
        if "goal" in options:
            goal = self.check_goal(options["goal"])
        else:
            angle = self.np_random.uniform(*ANGLE_RANGE)
            goal = self.check_goal(np.asarray(self.scene.puck_start)
                                   + self.np_random.uniform(*GOAL_DISTANCE) * np.array([np.cos(angle), np.sin(angle)]))
        condition = self._resolve_condition(options["condition"]) if "condition" in options else self._fixed_condition
        if condition is None:
            self._condition_name, sample = None, self._randomizer.sample()
        else:
            self._condition_name, sample = condition
        self._physics = self.backend.apply_randomization(sample)
        self._goal = goal
        return goal.copy(), {"goal": goal.copy(), "randomization": dict(self._physics),
                             "condition": self._condition_name}

    def _motion(self, action) -> tuple[JointTrajectory, dict]:
        if self.vae is not None:
            trajectory, clipped = self.vae.decode_motion(action)
            return trajectory, {"latent": np.asarray(action, dtype=float).copy(), "latent_clipped": clipped}
        action = np.asarray(action, dtype=float)
        if action.shape != (2,):
            raise ValueError(f"a hitting action is (angle rad, strength m/s), got shape {action.shape}")
        motion = self.generator.motions(action[:1], action[1:]).trajectory(0)  # validated when sent
        return motion, {"angle": float(action[0]), "strength": float(action[1])}

    def step(self, action):
        if self._goal is None:
            raise RuntimeError("call reset() before step(): one episode is one hit")
        trajectory, hit = self._motion(action)
        goal, self._goal = self._goal, None
        start, final, rested, off_table, elapsed = self._hit(trajectory)
        distance = float(np.linalg.norm(final - goal))
        info = {"goal": goal, "puck_start": start, "puck_final": final, "distance": distance, "rested": rested,
                "off_table": off_table, "randomization": dict(self._physics), "condition": self._condition_name,
                "sim_time": elapsed, **hit}
        return goal.copy(), -distance, True, False, info

    def _hit(self, trajectory: JointTrajectory) -> tuple[np.ndarray, np.ndarray, bool, bool, float]:
        """Run one hit: the puck's start and final (x, y), whether it rested, whether it left the table, sim time."""
        backend = self.backend
        backend.reset(trajectory.positions[0])
        start, t0 = backend.puck_state()[0][:2], backend.time
        backend.send_trajectory(trajectory)
        backend.step(math.ceil(trajectory.duration / self.control_dt - 1e-9))
        backend.settle_puck(MAX_SLIDE_TIME, REST_SPEED)  # the paddle, now still, cannot catch the puck
        position, velocity = backend.puck_state()
        if not np.all(np.isfinite(position)):
            raise RuntimeError(f"the simulation diverged: puck position {position.tolist()}")
        (x0, x1), (y0, y1) = self.table_bounds()
        off_table = position[2] < self.scene.table_top or not (x0 <= position[0] <= x1 and y0 <= position[1] <= y1)
        rested = not off_table and np.hypot(*velocity[:2]) < REST_SPEED
        return start, position[:2], bool(rested), bool(off_table), backend.time - t0

    def close(self) -> None:
        self.backend.close()
