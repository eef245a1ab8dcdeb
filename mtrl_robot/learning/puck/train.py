"""Meta-RL for puck hitting: a goal → latent-action policy, meta-trained with MAML to adapt to unknown puck dynamics.

The run (:func:`train_puck`), top to bottom:

1. **Action space.** A :class:`~mtrl_robot.models.hitting_vae.HittingVAE` is trained on generated hitting motions
   and frozen; the policy acts in its 2-D latent, normalised to the trained box ([−1, 1]² ↔ the box).
2. **Tasks.** A task is one sample of the puck's physics (friction, mass) from the domain randomization spec
   (``config/randomization.yaml``); the puck's start offset is drawn anew for every hit. An episode is one hit
   towards a goal drawn uniformly in distance and direction from the puck's nominal start; the policy observes
   the goal relative to that start; reward = −(final distance to the goal) / ``reward_scale``.
3. **Meta-policy** (:func:`train_policy` with ``meta=True``): per iteration, for each of ``tasks_per_iteration``
   tasks, K = ``rollouts`` hits with the current parameters, one inner policy-gradient step
   (:mod:`mtrl_robot.meta.policy_gradient_maml`: linear-baseline advantages, learned per-element step sizes),
   K hits with the adapted parameters, … up to ``inner_steps`` steps. The outer loss is PPO's clipped surrogate
   of the hits of every step 0..H (the return over all trials, as in meta-RL's cumulative objectives; without
   ``score_first_step`` only the adapted steps 1..H, as in multi-step-loss MAML, which in the measured run left
   the un-adapted policy far off on low friction), differentiated through the inner steps (second order unless
   ``first_order``), ``epochs`` Adam steps per iteration on the same hits.
4. **Baseline** (``meta=False``): the same policy, domain randomization, hit budget and PPO loss, but no inner
   steps in training (all H+1 batches of a task use the current parameters). At test time it adapts with the
   same inner update; its fixed step size is the best of ``baseline_lr_factors`` × ``inner_lr`` after
   ``inner_steps`` steps on ``tuning_tasks`` randomized tasks (the training distribution, never the evaluation
   conditions) (:func:`tune_inner_lr`).
5. **Files** in the output folder: ``vae.pt``, ``meta_policy.pt``, ``baseline_policy.pt`` (atomic writes, read
   with ``weights_only=True``; the policy files are rewritten every ``checkpoint_every`` iterations) and
   ``training.json`` (config, timings, learning curves, the baseline's step-size scores).

:func:`adaptation_curve` is the test-time procedure shared with the evaluation
(:mod:`mtrl_robot.learning.puck.evaluate`): at each step the mean action's final distance on fresh goals, then K
exploratory hits and one inner step. Hyperparameters: :class:`PuckMetaRLConfig`, presets in
``config/puck_meta_rl.yaml``.
"""

from __future__ import annotations

import json
import math
import time
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.config import load_yaml, mapping, unknown_keys
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.paths import data_dir
from mtrl_robot.core.torch_files import CheckpointError, load_torch_file
from mtrl_robot.meta.policy_gradient_maml import (
    Batch,
    adapt,
    advantages,
    clip_loss,
    detached,
    mean_action,
    meta_parameters,
    sample,
)
from mtrl_robot.meta.step_sizes import StepSizes
from mtrl_robot.models.hitting_vae import HittingVAE, train_hitting_vae
from mtrl_robot.models.policy import GaussianPolicy
from mtrl_robot.randomization import Randomizer
from mtrl_robot.tasks.puck import CONDITIONS, PuckHittingEnv


@dataclass(frozen=True)
class PuckMetaRLConfig:
    """Every hyperparameter of a run; the defaults are the ``default`` preset."""

    name: str = "default"
    seed: int = 0  # VAE data and weights, policy weights, tasks, goals, exploration noise
    arm: str = "panda"
    # action space: the hitting VAE
    vae_motions: int = 5000  # generated hitting motions it is trained on
    vae_steps: int = 1500  # Adam steps
    # goals: uniform in distance and direction from the puck's nominal start
    goal_distance: tuple[float, float] = (0.12, 0.22)  # m
    goal_angle: tuple[float, float] = (-40.0, 40.0)  # degrees from the world x axis
    reward_scale: float = 0.1  # m: reward = −distance / reward_scale
    # policy: goal → Gaussian over the normalised VAE latent
    hidden: tuple[int, ...] = (64, 64)
    init_std: float = 0.3  # initial standard deviation in normalised latent units (the box is [−1, 1]²)
    # inner loop: one policy-gradient step on K hits
    rollouts: int = 16  # K, hits per adaptation step
    inner_steps: int = 3  # adaptation steps in meta-training
    inner_lr: float = 0.05  # inner step size (the initial value when learned)
    learn_inner_lr: bool = True  # Meta-SGD, one step size per parameter element
    first_order: bool = False  # treat inner gradients as constants
    score_first_step: bool = True  # the meta outer loss also scores step 0 (the return of every trial), not only 1..H
    # outer loop: PPO-clip through the inner steps
    iterations: int = 150
    tasks_per_iteration: int = 8
    outer_lr: float = 3e-3  # Adam
    epochs: int = 8  # Adam steps per iteration on the same hits
    clip: float = 0.2  # PPO ratio clip ε
    max_grad_norm: float = 1.0
    checkpoint_every: int = 25  # iterations between checkpoint writes (and the last)
    # baseline: its fixed inner step size is the best of these multiples of inner_lr on randomized tasks
    baseline_lr_factors: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    tuning_tasks: int = 8
    # evaluation
    eval_steps: int = 5  # adaptation steps (0..eval_steps are reported)
    eval_goals: int = 8  # fresh goals per step, hit with the policy's mean action

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            numbers = value if isinstance(value, tuple) else (value,)
            if f.name in ("name", "arm") or isinstance(value, bool):
                continue
            if f.name not in ("seed", "goal_angle") and not all(v > 0 for v in numbers):
                raise ValueError(f"{f.name} must be positive, got {value!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        for name in ("goal_distance", "goal_angle"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name}: low {low} exceeds high {high}")
        if max(abs(a) for a in self.goal_angle) > 90:
            raise ValueError(f"goal_angle must lie within ±90 degrees, got {self.goal_angle}")
        if not self.clip < 1:
            raise ValueError(f"clip must be in (0, 1), got {self.clip}")
        if self.rollouts < 2 or self.eval_goals < 1 or not self.hidden or not self.baseline_lr_factors:
            raise ValueError("rollouts must be >= 2, eval_goals >= 1, hidden and baseline_lr_factors non-empty")

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers, strings and lists (for YAML, JSON and ``weights_only`` checkpoints)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def presets_file() -> Path:
    return data_dir("config") / "puck_meta_rl.yaml"


def load_preset(name: str = "default", path: str | Path | None = None) -> PuckMetaRLConfig:
    """Preset ``name`` of ``path`` (default ``config/puck_meta_rl.yaml``); ``base: other`` inherits from another."""
    source = Path(path) if path is not None else presets_file()
    presets = mapping(load_yaml(source), source, "")
    chain: list[str] = []
    while name not in chain:
        chain.append(name)
        if name not in presets:
            raise ConfigError(source, name, f"unknown preset (known: {', '.join(presets)})")
        raw = mapping(presets[name], source, name)
        name = raw.get("base", name)
    if name != chain[-1]:
        raise ConfigError(source, f"{chain[-1]}.base", f"presets inherit in a cycle: {' → '.join(chain + [name])}")
    values: dict[str, Any] = {}
    for preset in reversed(chain):
        raw = presets[preset]
        unknown_keys(raw, {f.name for f in fields(PuckMetaRLConfig)} | {"base"}, source, preset)
        values.update({k: _typed(k, v, source, preset) for k, v in raw.items() if k != "base"})
    values["name"] = chain[0]
    try:
        return PuckMetaRLConfig(**values)
    except ValueError as e:
        raise ConfigError(source, chain[0], str(e)) from None


def config_from_dict(data: dict[str, Any], source: str = "<checkpoint>") -> PuckMetaRLConfig:
    """A config saved with :meth:`PuckMetaRLConfig.to_dict`."""
    data = mapping(data, source, "")
    unknown_keys(data, {f.name for f in fields(PuckMetaRLConfig)}, source, "")
    try:
        return PuckMetaRLConfig(**{k: _typed(k, v, source, "config") for k, v in data.items()})
    except ValueError as e:
        raise ConfigError(source, "config", str(e)) from None


def _typed(name: str, value: Any, source: str | Path, preset: str) -> Any:
    """``value`` checked against the annotation of field ``name`` (bool, int, float, str, tuples of them)."""
    kind = typing.get_type_hints(PuckMetaRLConfig)[name]
    where = f"{preset}.{name}"
    if typing.get_origin(kind) is tuple:
        items = typing.get_args(kind)
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or \
                (items[-1] is not Ellipsis and len(value) != len(items)):
            raise ConfigError(source, where, f"expected a list of {len(items) if items[-1] is not Ellipsis else ''} "
                              f"numbers, got {value!r}")
        return tuple(_scalar(items[0], v, source, f"{where}[{i}]") for i, v in enumerate(value))
    return _scalar(kind, value, source, where)


def _scalar(kind: type, value: Any, source: str | Path, where: str) -> Any:
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(source, where, f"expected true or false, got {value!r}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(source, where, f"expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(source, where, f"expected a finite number, got {value!r}")
        value = float(value)
    if kind is str and (not isinstance(value, str) or not value):
        raise ConfigError(source, where, f"expected a non-empty string, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------- the task

OBS_DIM, ACT_DIM = 2, 2  # goal (x, y) relative to the puck's start; normalised VAE latent
OFFSETS = ("puck.offset_x", "puck.offset_y")  # drawn anew for every hit of a randomized task
MISSED_DISTANCE = 0.5  # m, the distance a hit counts for when the measurement cannot find the puck
Measure = Callable[[], "np.ndarray | None"]  # the puck's final (x, y) after a hit, or None if not found


class Task(NamedTuple):
    """One puck physics: a fixed condition or a randomization sample (then with a fresh start offset per hit)."""

    name: str
    parameters: dict[str, float]
    jitter: bool  # draw the puck's start offset anew for every hit


class HitSpace(ABC):
    """What the policy sees, whoever makes the hits: goals around the puck's start in, normalised latent actions out."""

    def __init__(self, vae: HittingVAE, puck_start: np.ndarray, config: PuckMetaRLConfig):
        self.config, self.vae = config, vae
        self.start = np.asarray(puck_start, dtype=float)
        low, high = vae.latent_low.double().numpy(), vae.latent_high.double().numpy()
        self.center, self.half = (high + low) / 2, (high - low) / 2

    def goals(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` goals (x, y), uniform in distance and direction from the puck's nominal start."""
        distance = rng.uniform(*self.config.goal_distance, n)
        angle = np.radians(rng.uniform(*self.config.goal_angle, n))
        return self.start + distance[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)

    def observe(self, goals: np.ndarray) -> torch.Tensor:
        """The policy's input: goals relative to the puck's start, in units of the farthest goal distance."""
        return torch.as_tensor((goals - self.start) / self.config.goal_distance[1], dtype=torch.float32)

    def latents(self, actions: torch.Tensor) -> np.ndarray:
        """The VAE latents of normalised actions; the box edges clip them."""
        return self.center + self.half * np.clip(actions.double().numpy(), -1.0, 1.0)

    @abstractmethod
    def hit(self, task: Task, goals: np.ndarray, actions: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
        """Final distances (m) of one hit per (goal, normalised action)."""


class PuckWorld(HitSpace):
    """Puck hitting in simulation: hits on one task's physics."""

    def __init__(self, env: PuckHittingEnv, config: PuckMetaRLConfig, measure: Measure | None = None):
        if env.vae is None:
            raise ValueError("the meta-RL task needs a PuckHittingEnv with a motion VAE")
        super().__init__(env.vae, env.scene.puck_start, config)
        self.env, self.measure = env, measure
        self.spec, self.nominal = env.randomization_spec, env.backend.nominal_parameters()
        self.offsets = {p.name: p.distribution for p in self.spec.parameters if p.name in OFFSETS}
        self.misses = 0  # hits whose puck the measurement did not find

    def random_task(self, rng: np.random.Generator) -> Task:
        """A task drawn from the randomization spec (its offsets are redrawn per hit)."""
        values = Randomizer(self.spec, self.nominal, seed=int(rng.integers(2**63))).sample()
        return Task("randomized", {k: v for k, v in values.items() if k not in self.offsets}, True)

    @staticmethod
    def condition(name: str) -> Task:
        """A fixed evaluation condition of :data:`~mtrl_robot.tasks.puck.CONDITIONS`."""
        if name not in CONDITIONS:
            raise ValueError(f"unknown condition {name!r} (known: {', '.join(CONDITIONS)})")
        return Task(name, dict(CONDITIONS[name]), False)

    def hit(self, task: Task, goals: np.ndarray, actions: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
        """Final distances (m) of one hit per (goal, normalised action); the box edges clip the actions."""
        latents = self.latents(actions)
        distances = np.empty(len(goals))
        for i, (goal, latent) in enumerate(zip(goals, latents, strict=True)):
            physics = dict(task.parameters)
            if task.jitter:
                physics.update({name: d.sample(rng) for name, d in self.offsets.items()})
            self.env.reset(options={"goal": goal, "condition": physics})
            info = self.env.step(latent)[4]
            final = info["puck_final"] if self.measure is None else self.measure()
            if final is None:
                self.misses += 1
                distances[i] = MISSED_DISTANCE
            else:
                distances[i] = float(np.linalg.norm(np.asarray(final)[:2] - goal))
        return distances


# ---------------------------------------------------------------------------------------------- the algorithm


def explore(policy: GaussianPolicy, params: dict, world: HitSpace, task: Task, rng: np.random.Generator,
            generator: torch.Generator) -> tuple[Batch, np.ndarray]:
    """K hits with actions sampled from the policy: the batch (with advantages) and the final distances."""
    goals = world.goals(world.config.rollouts, rng)
    obs = world.observe(goals)
    actions, log_probs = sample(policy, params, obs, generator)
    distances = world.hit(task, goals, actions, rng)
    rewards = torch.as_tensor(-distances / world.config.reward_scale, dtype=torch.float32)
    return Batch(obs, actions, log_probs, advantages(obs, rewards)), distances


def collect(policy: GaussianPolicy, lrs: StepSizes, world: PuckWorld, task: Task, meta: bool,
            rng: np.random.Generator, generator: torch.Generator) -> tuple[list[Batch], np.ndarray]:
    """``inner_steps`` + 1 batches of K hits on one task (meta: an inner step after each but the last)."""
    params, rates = detached(meta_parameters(policy)), {k: v.detach() for k, v in lrs().items()}
    batches, distances = [], []
    for h in range(world.config.inner_steps + 1):
        batch, d = explore(policy, params, world, task, rng, generator)
        batches.append(batch)
        distances.append(d.mean())
        if meta and h < world.config.inner_steps:
            params = detached(adapt(policy, params, batch, rates, create_graph=False))
    return batches, np.array(distances)


def outer_loss(policy: GaussianPolicy, lrs: StepSizes, data: list[list[Batch]], config: PuckMetaRLConfig,
               meta: bool) -> torch.Tensor:
    """Mean PPO-clip loss over the meta-batch: meta, the scored steps' batches through the inner steps; else all."""
    first = 0 if config.score_first_step or not meta else 1
    used = [(t, h) for t, batches in enumerate(data) for h in range(first, len(batches))]
    scale = torch.cat([data[t][h].advantages for t, h in used]).std().clamp_min(1e-6)
    losses, rates = [], lrs()
    for batches in data:
        params = meta_parameters(policy)
        for h, batch in enumerate(batches):
            if h >= first:
                losses.append(clip_loss(policy, params, batch._replace(advantages=batch.advantages / scale),
                                        config.clip))
            if meta and h < config.inner_steps:
                params = adapt(policy, params, batch, rates, create_graph=not config.first_order)
    return torch.stack(losses).mean()


@dataclass
class TrainedPolicy:
    """A policy with its inner step sizes, the config it was trained with and its learning curve."""

    kind: str  # "meta" or "baseline"
    config: PuckMetaRLConfig
    policy: GaussianPolicy
    lrs: StepSizes
    history: list[dict[str, Any]]


def new_policy(config: PuckMetaRLConfig, learn_lr: bool) -> tuple[GaussianPolicy, StepSizes]:
    policy = GaussianPolicy(OBS_DIM, ACT_DIM, config.hidden, config.init_std)
    return policy, StepSizes(dict(policy.named_parameters()), config.inner_lr, "per_element", learn_lr,
                             log_space=True)


def train_policy(world: PuckWorld, meta: bool, progress: bool = True, checkpoint: Path | None = None) -> TrainedPolicy:
    """Meta-train (``meta``) or train the baseline on randomized tasks; the same seed gives the same tasks."""
    config = world.config
    torch.manual_seed(config.seed)
    policy, lrs = new_policy(config, learn_lr=meta and config.learn_inner_lr)
    trained = TrainedPolicy("meta" if meta else "baseline", config, policy, lrs, [])
    learnable = [p for p in (*policy.parameters(), *lrs.parameters()) if p.requires_grad]
    optimizer = torch.optim.Adam(learnable, lr=config.outer_lr)
    rng, generator = np.random.default_rng(config.seed), torch.Generator().manual_seed(config.seed)
    bar = tqdm(range(config.iterations), desc=f"puck {trained.kind} policy", disable=not progress)
    for iteration in bar:
        tasks = [world.random_task(rng) for _ in range(config.tasks_per_iteration)]
        collected = [collect(policy, lrs, world, task, meta, rng, generator) for task in tasks]
        data = [batches for batches, _ in collected]
        for _ in range(config.epochs):
            loss = outer_loss(policy, lrs, data, config, meta)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{trained.kind} policy: non-finite outer loss at iteration {iteration}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(learnable, config.max_grad_norm)
            if not torch.isfinite(norm):
                raise FloatingPointError(f"{trained.kind} policy: non-finite gradient at iteration {iteration}")
            optimizer.step()
        curve = np.mean([distances for _, distances in collected], axis=0)
        trained.history.append({"iteration": iteration, "distance_by_step": curve.tolist(), "loss": loss.item(),
                                "std": policy.log_std.exp().tolist(), "inner_lr": lrs.per_tensor()})
        bar.set_postfix(first=f"{100 * curve[0]:.1f}cm", last=f"{100 * curve[-1]:.1f}cm")
        if checkpoint is not None and ((iteration + 1) % config.checkpoint_every == 0
                                       or iteration + 1 == config.iterations):
            save_policy(trained, checkpoint)
    return trained


def adaptation_curve(policy: GaussianPolicy, lrs: StepSizes, world: HitSpace, task: Task, steps: int,
                     seed: int | list[int]) -> np.ndarray:
    """Mean final distance (m) of the mean action on fresh goals before each of ``steps`` inner steps and after."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    params, rates = detached(meta_parameters(policy)), {k: v.detach() for k, v in lrs().items()}
    curve = []
    for h in range(steps + 1):
        goals = world.goals(world.config.eval_goals, rng)
        curve.append(world.hit(task, goals, mean_action(policy, params, world.observe(goals)), rng).mean())
        if h < steps:
            batch, _ = explore(policy, params, world, task, rng, generator)
            params = detached(adapt(policy, params, batch, rates, create_graph=False))
    return np.array(curve)


def tune_inner_lr(trained: TrainedPolicy, world: PuckWorld, progress: bool = True) -> dict[float, float]:
    """Set the baseline's fixed step size to the best candidate; returns mean distance after H steps per candidate."""
    config = trained.config
    rng = np.random.default_rng([config.seed, 1])  # tasks apart from the training tasks
    tasks = [world.random_task(rng) for _ in range(config.tuning_tasks)]
    scores = {}
    for factor in tqdm(config.baseline_lr_factors, desc="baseline step size", disable=not progress):
        lrs = StepSizes(dict(trained.policy.named_parameters()), config.inner_lr * factor, learn=False,
                        log_space=True)
        scores[config.inner_lr * factor] = float(np.mean([
            adaptation_curve(trained.policy, lrs, world, task, config.inner_steps, [config.seed, 2, i])[-1]
            for i, task in enumerate(tasks)]))
    trained.lrs.fill_(min(scores, key=scores.get))
    return scores


# ---------------------------------------------------------------------------------------------- files

FORMAT = "mtrl_robot.puck_meta_rl"
VERSION = 2  # 2: the Meta-SGD log-rates are saved as the state of StepSizes (key step_sizes, was log_lr)
VAE_FILE, META_FILE, BASELINE_FILE, SUMMARY_FILE = "vae.pt", "meta_policy.pt", "baseline_policy.pt", "training.json"


def save_policy(trained: TrainedPolicy, path: str | Path) -> Path:
    """Write the policy atomically (a temporary file in the same folder, read back, then renamed)."""
    payload = {"format": FORMAT, "version": VERSION, "kind": trained.kind, "config": trained.config.to_dict(),
               "policy": trained.policy.state_dict(), "step_sizes": trained.lrs.state_dict(),
               "history": trained.history}
    return write_atomic(path, lambda f: torch.save(payload, f), verify=lambda tmp: load_torch_file(tmp, "policy"))


def load_policy(path: str | Path) -> TrainedPolicy:
    """A policy written by :func:`save_policy` (``weights_only=True``); ``CheckpointError`` if it is not one."""
    payload = load_torch_file(path, "policy")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: not a puck meta-RL policy of version {VERSION}")
    try:
        config = config_from_dict(payload["config"], str(path))
        policy, lrs = new_policy(config, learn_lr=False)
        policy.load_state_dict(payload["policy"])
        lrs.load_state_dict(payload["step_sizes"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: does not fit the policy it describes: {e}") from e
    return TrainedPolicy(str(payload["kind"]), config, policy, lrs, list(payload["history"]))


def train_puck(preset: str | PuckMetaRLConfig = "default", out_dir: str | Path = "runs/puck_meta_rl",
               progress: bool = True) -> Path:
    """The whole run (VAE, meta-policy, baseline, baseline step size) into ``out_dir``; returns ``out_dir``."""
    config = preset if isinstance(preset, PuckMetaRLConfig) else load_preset(preset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models only lose time to thread hand-offs
    env = PuckHittingEnv(config.arm)
    try:
        times = {}
        start = time.perf_counter()
        vae = train_hitting_vae(env.generator, config.vae_motions, config.vae_steps, seed=config.seed,
                                progress=progress)
        vae.save(out / VAE_FILE)
        env.close()
        env = PuckHittingEnv(config.arm, motion_vae=HittingVAE.load(out / VAE_FILE))
        world = PuckWorld(env, config)
        times["vae_s"] = time.perf_counter() - start
        meta = train_policy(world, meta=True, progress=progress, checkpoint=out / META_FILE)
        times["meta_s"] = time.perf_counter() - start - sum(times.values())
        baseline = train_policy(world, meta=False, progress=progress, checkpoint=out / BASELINE_FILE)
        times["baseline_s"] = time.perf_counter() - start - sum(times.values())
        scores = tune_inner_lr(baseline, world, progress)
        save_policy(baseline, out / BASELINE_FILE)
        times["baseline_lr_s"] = time.perf_counter() - start - sum(times.values())
    finally:
        env.close()
        torch.set_num_threads(threads)
    hits = config.iterations * config.tasks_per_iteration * (config.inner_steps + 1) * config.rollouts
    summary = {"config": config.to_dict(), "seconds": times, "hits_per_policy": hits,
               "baseline_lr_scores": {f"{lr:.6g}": score for lr, score in scores.items()},
               "meta_inner_lr": meta.lrs.per_tensor(),
               "baseline_inner_lr": next(iter(baseline.lrs().values())).flatten()[0].item(),
               "meta_history": meta.history, "baseline_history": baseline.history}
    write_atomic(out / SUMMARY_FILE, json.dumps(summary, indent=1))
    return out
