"""Puck hitting on any robot: one hit for simulation and hardware, the meta-RL world, the Gymnasium task.

**One hit** (:func:`hit`) runs on any :class:`~mtrl_robot.backends.interface.RobotBackend` and any
:class:`PuckScene` (put the puck back / randomize / where is the puck / wait until it is still): the arm at the
motion's first posture and the puck back at its start, the motion, optionally a retract out of the camera's view,
then the puck's resting place. Two scenes: :class:`SimulatedPuckScene`, the simulated puck table of a simulator
backend (a reset puts arm and puck in place at once; waiting for rest simulates the slide), and
:class:`MeasuredPuckScene`, a real puck (the arm approaches through the robot interface,
:func:`~mtrl_robot.tasks.moves.move_to`; the puck is put back by a reset service or a person and located by a
camera; its ROS side is :mod:`mtrl_robot.ros.puck_node`).

**The meta-RL world** (:class:`PuckWorld`): goals in, normalised actions in the latent space of a hitting VAE
out, hits on a task's physics (:class:`Task`: a fixed condition, a randomization sample, or a real puck's).

**The Gymnasium task** (:class:`PuckHittingEnv`): one episode is one simulated hit of the puck towards a goal.

- **Observation**: the goal (x, y) in the world frame, m.
- **Action**: hitting parameters (angle rad, strength m/s) within ``ANGLE_RANGE`` × ``SPEED_RANGE`` (outside:
  ValueError), turned into a joint trajectory by :class:`~mtrl_robot.motions.hitting.HittingMotionGenerator`;
  or, with a frozen :class:`~mtrl_robot.models.hitting_vae.HittingVAE` attached, a latent vector in the box seen
  in training (outside, or a motion that cannot be timed within the limits:
  :class:`~mtrl_robot.motions.path_timing.MotionRefused`).
- **Reset**: draws a goal (seeded; at ``GOAL_DISTANCE`` from the puck's start within the hitting angles, or
  ``options["goal"]``: a goal off the table is a ValueError) and the episode's physics: a sample of the
  randomization spec (``config/randomization.yaml`` by default, Arndt et al.'s ranges) or a fixed condition
  (``condition=`` or ``options["condition"]``: a name in :data:`CONDITIONS` or a mapping of parameter
  values), applied with ``backend.apply_randomization``; the values read back from the engine are in ``info``.
- **Step** (one :func:`hit`): the arm is reset to the motion's first posture (a simulator reset, the puck back at
  its start plus the sampled offset), the motion runs, then the simulation continues until the puck rests
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

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.families import load_family
from mtrl_robot.backends.factory import make_backend
from mtrl_robot.backends.interface import RobotBackend, SimBackend
from mtrl_robot.backends.trajectory import JointTrajectory, TrajectoryError
from mtrl_robot.core.paths import data_dir
from mtrl_robot.models.hitting_vae import HittingVAE
from mtrl_robot.motions.hitting import ANGLE_RANGE, SPEED_RANGE, HittingMotionGenerator, with_paddle
from mtrl_robot.motions.path_timing import MotionRefused
from mtrl_robot.randomization import RandomizationSpec, Randomizer, check_sample, load_spec
from mtrl_robot.scenes.puck_table import Scene, load_scene
from mtrl_robot.tasks.moves import move_to, run

HIT_TIMESTEP = 0.005  # s, MuJoCo physics step of the hitting task
GOAL_DISTANCE = (0.1, 0.4)  # m from the puck's start, for sampled goals
REST_SPEED = 0.01  # m/s; a slower puck has at most ~0.1 mm left to slide at the lowest friction
MAX_SLIDE_TIME = 3.0  # s of simulation after the motion ends
EVAL_PUCK_MASS = 0.11  # kg
OFFSETS = ("puck.offset_x", "puck.offset_y")  # drawn anew for every hit of a randomized task
MISSED_DISTANCE = 0.5  # m, the distance a hit counts for when it was refused or its puck not found
START_UNIT = 0.02  # m, the scale of the puck's start offsets in a policy's observation (their spread)


def _condition(slide_x: float, slide_y: float) -> dict[str, float]:
    return {"puck.friction.slide_x": slide_x, "puck.friction.slide_y": slide_y, "puck.mass": EVAL_PUCK_MASS,
            "puck.offset_x": 0.0, "puck.offset_y": 0.0}


CONDITIONS: dict[str, dict[str, float]] = {
    "iso_low": _condition(0.2, 0.2),
    "iso_medium": _condition(0.5, 0.5),
    "aniso_low_x": _condition(0.3, 0.39),
    "aniso_low_y": _condition(0.39, 0.3),
}


class Task(NamedTuple):
    """One puck physics: a fixed condition or a randomization sample (then with a fresh start offset per hit)."""

    name: str
    parameters: dict[str, float]
    jitter: bool  # draw the puck's start offset anew for every hit


REAL_TASK = Task("real", {}, False)  # a real puck's physics are what they are: nothing to set

class Layout(NamedTuple):
    """The physics of a few hits to come and the puck's start before each."""

    physics: list[dict[str, float]]  # per hit, what ``PuckScene.randomize`` sets
    starts: np.ndarray  # (n, 2) m, where the puck stands before each hit


class HitBatch(NamedTuple):
    """What a few hits left, one row per hit."""

    goals: np.ndarray  # (n, 2) m
    starts: np.ndarray  # (n, 2) m, the puck before the hit
    actions: np.ndarray  # (n, 2) normalised VAE latents ([−1, 1]² is the trained box)
    finals: np.ndarray  # (n, 2) m, where the puck came to rest; NaN if the hit was refused or the puck not found
    distances: np.ndarray  # (n,) m to the goal; ``MISSED_DISTANCE`` where ``finals`` is NaN



def condition_task(name: str) -> Task:
    """A fixed evaluation condition of :data:`CONDITIONS`."""
    if name not in CONDITIONS:
        raise ValueError(f"unknown condition {name!r} (known: {', '.join(CONDITIONS)})")
    return Task(name, dict(CONDITIONS[name]), False)


# ---------------------------------------------------------------------------------------------- the puck scene


class PuckScene(ABC):
    """The puck and table around a robot, as a hit needs them: put back, (randomized,) located, waited on."""

    def __init__(self, puck_start):
        self.puck_start = np.asarray(puck_start, dtype=float)  # (x, y) where the puck is put back, m

    @abstractmethod
    def put_back(self, posture: np.ndarray) -> bool:
        """The arm at rest at ``posture`` (a hit's first posture), then the puck back at its start; False if the
        puck is not there. A refused or failed arm motion raises ``TrajectoryError``."""

    @abstractmethod
    def nominal_parameters(self) -> dict[str, float]:
        """Nominal value of every parameter :meth:`randomize` can set."""

    @abstractmethod
    def randomize(self, physics: Mapping[str, float]) -> dict[str, float]:
        """Give the puck these physics (a randomization sample); the values now in force."""

    @abstractmethod
    def where(self) -> np.ndarray | None:
        """The puck's (x, y) now, m; None if it is not found."""

    @abstractmethod
    def rest(self) -> np.ndarray | None:
        """Wait until the puck is still; its (x, y) then, or None if it is not found."""

    def let_settle(self) -> None:
        """Wait until the arm may back away from a hit: until the puck is still (:meth:`rest`)."""
        self.rest()


class SimulatedPuckScene(PuckScene):
    """The simulated puck table of a :class:`SimBackend` (its ``table``): a reset puts the arm at the hit's first
    posture and the puck back at once; waiting for rest simulates the slide (at most ``MAX_SLIDE_TIME``).

    ``measure`` (for example the overhead camera) replaces the simulator's own resting position when given.
    """

    def __init__(self, backend: SimBackend, measure: Callable[[], np.ndarray | None] | None = None):
        if backend.table is None:
            raise ValueError("the puck scene needs a backend built with the puck table")
        super().__init__(backend.table.scene.puck_start)
        self.backend, self.table, self.measure = backend, backend.table, measure

    def put_back(self, posture: np.ndarray) -> bool:
        self.backend.reset(posture)  # the puck back at its start plus the sampled offset
        return True

    def nominal_parameters(self) -> dict[str, float]:
        return self.backend.nominal_parameters()

    def randomize(self, physics: Mapping[str, float]) -> dict[str, float]:
        return self.backend.apply_randomization(physics)

    def where(self) -> np.ndarray:
        return self.table.state()[0][:2]

    def rest(self) -> np.ndarray | None:
        self.table.settle(MAX_SLIDE_TIME, REST_SPEED)  # the paddle, now still, cannot catch the puck
        return self.where() if self.measure is None else self.measure()


class MeasuredPuckScene(PuckScene):
    """A real puck on a real table: the arm moves to the hit's first posture through the robot interface, the
    puck is put back from outside (a reset service, a person) and located by a measurement (a camera).

    Subclasses supply the outside world: :meth:`reset_puck`, :meth:`puck_at_start`, :meth:`where`, :meth:`rest`.
    """

    def __init__(self, robot: RobotBackend, puck_start):
        super().__init__(puck_start)
        self.robot = robot
        self.start_seen: np.ndarray | None = None  # (x, y) where a measurement last saw the puck at its start

    def put_back(self, posture: np.ndarray) -> bool:
        move_to(self.robot, posture, "approach")  # first, so that the approach cannot push the puck away
        self.reset_puck()
        return self.puck_at_start()

    def nominal_parameters(self) -> dict[str, float]:
        return {}

    def randomize(self, physics: Mapping[str, float]) -> dict[str, float]:
        if physics:
            raise ValueError(f"a real puck's physics cannot be set, got {sorted(physics)}")
        return {}

    @abstractmethod
    def reset_puck(self) -> None:
        """Have the puck put back at its start."""

    @abstractmethod
    def puck_at_start(self) -> bool:
        """Is the puck back at its start, at rest?"""


# ---------------------------------------------------------------------------------------------- one hit


class Hit(NamedTuple):
    """What one hit left: the puck's (x, y) before and after, or why there is no after."""

    start: np.ndarray | None  # where the puck was once put back (None: not found)
    final: np.ndarray | None  # where it came to rest (None: the hit was refused or skipped, or the puck not found)
    refused: bool  # an arm motion was refused or failed
    problem: str  # why ``final`` is None ("" otherwise)
    duration: float  # s on the robot's clock from the puck being back to its resting place being read


def hit(robot: RobotBackend, scene: PuckScene, motion: JointTrajectory, retract_to: np.ndarray | None = None) -> Hit:
    """One hit with ``motion`` on any robot and puck scene.

    1. the arm at the motion's first posture and the puck back at its start (:meth:`PuckScene.put_back`);
    2. the motion itself;
    3. with ``retract_to``: once the puck has settled (:meth:`PuckScene.let_settle`), back to the motion's first
       posture (along the hitting line, away from the puck) and then to ``retract_to``, out of an overhead
       camera's view;
    4. the puck's resting position (:meth:`PuckScene.rest`).
    """
    start = None
    try:
        if not scene.put_back(motion.positions[0]):
            return Hit(None, None, False, "the puck is not at its start", 0.0)
        start, t0 = scene.where(), robot.read_state().stamp
        run(robot, motion, "hit")
        if retract_to is not None:
            scene.let_settle()  # the arm stays until the puck has stopped,
            move_to(robot, motion.positions[0], "retract")  # then backs away along the hitting line,
            move_to(robot, retract_to, "retract")  # and goes out of the camera's view
    except TrajectoryError as exc:  # a SafetyError is one too
        return Hit(start, None, True, f"refused or failed: {exc}", 0.0)
    final = scene.rest()
    return Hit(start, final, False, "" if final is not None else "the puck was not found at rest",
               robot.read_state().stamp - t0)


# ---------------------------------------------------------------------------------------------- the meta-RL world


class PuckWorld:
    """What a goal-conditioned policy sees of puck hitting, whoever makes the hits: goals around the puck's start
    in, normalised latent actions of the hitting VAE out ([−1, 1]² ↔ its trained box), final distances back.

    A few hits are laid out first (:meth:`layout`: each hit's physics and where the puck will stand, which a
    policy may observe), then struck (:meth:`strike`); :meth:`hit` does both.
    Hits run with :func:`hit` on ``robot`` and ``scene``, a task's physics set through ``scene.randomize``; a hit
    that is refused (its latent outside the VAE's box, its motion not timeable within the limits, or the motion
    refused by the robot) or whose puck is not found scores ``MISSED_DISTANCE`` (counted in ``refused`` or
    ``misses``), so a policy adapted on it learns to avoid it like any other bad outcome.
    """

    def __init__(self, robot: RobotBackend, scene: PuckScene, vae: HittingVAE, goal_distance: tuple[float, float],
                 goal_angle: tuple[float, float], *, randomization: RandomizationSpec | None = None,
                 retract_to: np.ndarray | None = None, log: Callable[[str], None] | None = None,
                 keep_record: bool = False):
        if tuple(robot.joint_names) != tuple(vae.joint_names):
            raise ValueError(f"the motion VAE was trained for joints {list(vae.joint_names)}, the robot has "
                             f"{list(robot.joint_names)}")
        self.robot, self.scene, self.vae, self.retract_to, self.log = robot, scene, vae, retract_to, log
        self.start = scene.puck_start
        self.goal_distance, self.goal_angle = goal_distance, goal_angle
        low, high = vae.latent_low.double().numpy(), vae.latent_high.double().numpy()
        self.center, self.half = (high + low) / 2, (high - low) / 2
        self.randomization = randomization
        self.offsets = {} if randomization is None else {
            p.name: p.distribution for p in randomization.parameters if p.name in OFFSETS}
        self.hits, self.refused, self.misses = 0, 0, 0
        self.record: list[dict] | None = [] if keep_record else None  # per hit: goal, start, final, distance

    def goals(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` goals (x, y), uniform in distance and direction (degrees) from the puck's nominal start."""
        distance = rng.uniform(*self.goal_distance, n)
        angle = np.radians(rng.uniform(*self.goal_angle, n))
        return self.start + distance[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)

    def observe(self, goals: np.ndarray, starts: np.ndarray | None = None) -> torch.Tensor:
        """The policy's input: goals relative to the puck's nominal start, in units of the farthest goal distance;
        with the puck's ``starts`` before the hits, the goals relative to them and the starts' offsets from the
        nominal start (in units of ``START_UNIT``)."""
        if starts is None:
            return torch.as_tensor((goals - self.start) / self.goal_distance[1], dtype=torch.float32)
        return torch.as_tensor(np.concatenate([(goals - starts) / self.goal_distance[1],
                                               (starts - self.start) / START_UNIT], axis=1), dtype=torch.float32)

    def latents(self, actions: torch.Tensor) -> np.ndarray:
        """The VAE latents of normalised actions ([−1, 1]² is the trained box; beyond it a hit is refused)."""
        return self.center + self.half * actions.double().numpy()

    def random_task(self, rng: np.random.Generator) -> Task:
        """A task drawn from the randomization spec (its offsets are redrawn per hit)."""
        if self.randomization is None:
            raise ValueError("this world has no randomization spec to draw tasks from")
        values = Randomizer(self.randomization, self.scene.nominal_parameters(), seed=int(rng.integers(2**63))).sample()
        return Task("randomized", {k: v for k, v in values.items() if k not in self.offsets}, True)

    def layout(self, task: Task, n: int, rng: np.random.Generator) -> Layout:
        """The physics of ``n`` hits with ``task`` (a fresh start offset each if it jitters) and where the puck
        will stand before each: its nominal start plus that offset, which a reset puts it at exactly (as a camera
        looking before the hit would see it). A real puck's (a :class:`MeasuredPuckScene`'s) start is where its
        measurement last saw it at its start, NaN while it has seen none."""
        physics = []
        for _ in range(n):
            values = dict(task.parameters)
            if task.jitter:
                values.update({name: d.sample(rng) for name, d in self.offsets.items()})
            physics.append(values)
        if isinstance(self.scene, MeasuredPuckScene):
            seen = self.scene.start_seen
            return Layout(physics, np.tile(np.full(2, np.nan) if seen is None else seen, (n, 1)))
        starts = np.array([self.start + (p.get(OFFSETS[0], 0.0), p.get(OFFSETS[1], 0.0)) for p in physics])
        return Layout(physics, starts.reshape(n, 2))

    def strike(self, layout: Layout, goals: np.ndarray, actions: torch.Tensor | np.ndarray) -> HitBatch:
        """One hit per (physics of ``layout``, goal, normalised action): what each left."""
        actions = torch.as_tensor(actions)
        distances, finals = np.empty(len(goals)), np.full((len(goals), 2), np.nan)
        for i, (physics, goal, start, latent) in enumerate(zip(layout.physics, goals, layout.starts,
                                                               self.latents(actions), strict=True)):
            self.scene.randomize(physics)
            try:
                outcome = hit(self.robot, self.scene, self.vae.decode_motion(latent), self.retract_to)
            except MotionRefused as exc:
                outcome = Hit(None, None, True, f"refused: {exc}", 0.0)
            self.hits += 1
            self.refused += outcome.refused
            self.misses += outcome.final is None and not outcome.refused
            distances[i] = MISSED_DISTANCE if outcome.final is None else float(np.linalg.norm(outcome.final - goal))
            final = None if outcome.final is None else outcome.final.tolist()
            if final is not None:
                finals[i] = final
            if self.record is not None:
                seen = start.tolist() if np.isfinite(start).all() else None
                self.record.append({"goal": goal.tolist(), "start": seen, "final": final,
                                    "distance": float(distances[i])})
            if self.log is not None:
                self.log(f"hit {self.hits}: goal {goal.round(3).tolist()}, puck at "
                         f"{None if final is None else np.round(final, 3).tolist()}, distance "
                         f"{distances[i] * 100:.1f} cm" + (f" ({outcome.problem})" if outcome.problem else ""))
        return HitBatch(np.asarray(goals, dtype=float), layout.starts, actions.double().numpy(), finals, distances)

    def hit(self, task: Task, goals: np.ndarray, actions: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
        """Final distances (m) of one hit per (goal, normalised action) with ``task``'s physics."""
        return self.strike(self.layout(task, len(goals), rng), goals, actions).distances


# ---------------------------------------------------------------------------------------------- Gymnasium


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
        self.backend = make_backend(backend, self.arm, self.scene, timestep=timestep)
        self.puck = SimulatedPuckScene(self.backend)
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
            return self.vae.decode_motion(action), {"latent": np.asarray(action, dtype=float).copy()}
        action = np.asarray(action, dtype=float)
        if action.shape != (2,):
            raise ValueError(f"a hitting action is (angle rad, strength m/s), got shape {action.shape}")
        motion = self.generator.motion(action[0], action[1])  # validated when sent
        return motion, {"angle": float(action[0]), "strength": float(action[1])}

    def step(self, action):
        if self._goal is None:
            raise RuntimeError("call reset() before step(): one episode is one hit")
        trajectory, motion = self._motion(action)
        goal, self._goal = self._goal, None
        outcome = hit(self.backend, self.puck, trajectory)
        if outcome.final is None:
            raise TrajectoryError(f"the hit was {outcome.problem}")
        position, velocity = self.backend.table.state()
        if not np.all(np.isfinite(position)):
            raise RuntimeError(f"the simulation diverged: puck position {position.tolist()}")
        (x0, x1), (y0, y1) = self.table_bounds()
        off_table = position[2] < self.scene.table_top or not (x0 <= position[0] <= x1 and y0 <= position[1] <= y1)
        rested = not off_table and np.hypot(*velocity[:2]) < REST_SPEED
        distance = float(np.linalg.norm(outcome.final - goal))
        info = {"goal": goal, "puck_start": outcome.start, "puck_final": outcome.final, "distance": distance,
                "rested": bool(rested), "off_table": bool(off_table), "randomization": dict(self._physics),
                "condition": self._condition_name, "sim_time": outcome.duration, **motion}
        return goal.copy(), -distance, True, False, info

    def close(self) -> None:
        self.backend.close()
