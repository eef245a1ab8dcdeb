"""Meta-RL for puck hitting: a goal → latent-action policy, meta-trained with MAML to adapt to unknown puck dynamics.

The run (:func:`train_puck`), top to bottom:

1. **Action space.** A :class:`~mtrl_robot.models.hitting_vae.HittingVAE` is trained on generated hitting motions
   and frozen; the policy acts in its 2-D latent, normalised to the trained box ([−1, 1]² ↔ the box).
2. **Tasks.** A task is one sample of the puck's physics (friction, mass) from the domain randomization spec
   (``config/randomization.yaml``); the puck's start offset is drawn anew for every hit. An episode is one hit
   (:class:`~mtrl_robot.tasks.puck.PuckWorld` on the simulated puck table) towards a goal drawn uniformly in
   distance and direction from the puck's nominal start; the policy observes the goal relative to that start
   (with ``observe_start``: relative to where the puck stands before the hit, and that start's offset, as an
   overhead camera sees it); reward = −(final distance to the goal) / ``reward_scale``.
3. **Meta-policy** (:func:`train_policy` with ``meta=True``): per iteration, for each of ``tasks_per_iteration``
   tasks, K = ``rollouts`` hits with the current parameters, one inner policy-gradient step
   (:mod:`mtrl_robot.meta.policy_gradient_maml`: linear-baseline advantages, learned per-element step sizes),
   K hits with the adapted parameters, … up to ``inner_steps`` steps. Each task's hits draw from a seed stream of
   their own (:data:`HIT_STREAM`, the iteration and the task's index), so the tasks of an iteration are simulated
   independently, in this process, in local processes or as Ray tasks (``compute``,
   :mod:`mtrl_robot.distributed.compute`), each worker on a puck table of its own (:class:`WorldRecipe`), with the
   same numbers every way. The outer loss is PPO's clipped surrogate
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
   with ``weights_only=True``; the policy files are rewritten every ``checkpoint_every`` iterations and record the
   config without its ``compute`` section, so they are the same files whichever way the run computed) and
   ``training.json`` (config, timings, learning curves, the baseline's step-size scores).

The test-time procedure (:func:`~mtrl_robot.learning.puck.methods.adaptation_curve`) that tunes the baseline's step
size is the one of adaptation and evaluation (:mod:`mtrl_robot.learning.puck.adapt`). Hyperparameters:
:class:`PuckMetaRLConfig` (:mod:`mtrl_robot.learning.puck.presets`), presets in
``config/puck_meta_rl.yaml``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.progress import progress_bar
from mtrl_robot.core.torch_files import CheckpointError, load_torch_file
from mtrl_robot.core.torch_threads import torch_threads
from mtrl_robot.distributed.compute import ComputeConfig, Workers, check_reachable, workers
from mtrl_robot.learning.puck.presets import PuckMetaRLConfig, config_from_dict, load_preset
from mtrl_robot.meta.policy_gradient_maml import (
    Batch,
    adapt,
    advantages,
    clip_loss,
    detached,
    meta_parameters,
    sample,
)
from mtrl_robot.meta.step_sizes import StepSizes
from mtrl_robot.models.hitting_vae import HittingVAE, train_hitting_vae
from mtrl_robot.models.policy import GaussianPolicy
from mtrl_robot.tasks.puck import PuckHittingEnv, PuckWorld, SimulatedPuckScene, Task

ACT_DIM = 2  # normalised VAE latent
HIT_STREAM = 5  # seed stream of training's hits (tuning uses 1 and 2, the evaluation 3, adaptation 4)


def simulated_world(env: PuckHittingEnv, config: PuckMetaRLConfig,
                    measure: Callable[[], np.ndarray | None] | None = None) -> PuckWorld:
    """The meta-RL world on a simulated puck table: ``env``'s arm and physics, its randomization spec and VAE,
    the puck's resting place from ``measure`` (e.g. a camera) if given, else from the simulator."""
    if env.vae is None:
        raise ValueError("the meta-RL task needs a PuckHittingEnv with a motion VAE")
    return PuckWorld(env.backend, SimulatedPuckScene(env.backend, measure), env.vae, config.goal_distance,
                     config.goal_angle, randomization=env.randomization_spec)


_built: dict[str, tuple[PuckHittingEnv, PuckWorld]] = {}  # this process's world of the run being trained


@dataclass(frozen=True)
class WorldRecipe:
    """What a process needs to build the run's simulated world: it builds it once (its first task) and keeps it."""

    config: PuckMetaRLConfig
    vae: HittingVAE
    token: str = field(default_factory=lambda: uuid.uuid4().hex)  # tells this run's world from another's

    def world(self) -> PuckWorld:
        if self.token not in _built:
            self.close_all()
            env = PuckHittingEnv(self.config.arm, motion_vae=self.vae)
            _built[self.token] = env, simulated_world(env, self.config)
        return _built[self.token][1]

    @staticmethod
    def close_all() -> None:
        """Close the worlds this process built."""
        while _built:
            _built.popitem()[1][0].close()


# ---------------------------------------------------------------------------------------------- the algorithm


def explore(policy: GaussianPolicy, params: dict, world: PuckWorld, task: Task, config: PuckMetaRLConfig,
            rng: np.random.Generator, generator: torch.Generator) -> tuple[Batch, np.ndarray]:
    """K hits with actions sampled from the policy: the batch (with advantages) and the final distances."""
    goals = world.goals(config.rollouts, rng)
    layout = world.layout(task, config.rollouts, rng)
    obs = world.observe(goals, layout.starts if config.observe_start else None)
    actions, log_probs = sample(policy, params, obs, generator)
    distances = world.strike(layout, goals, actions).distances
    rewards = torch.as_tensor(-distances / config.reward_scale, dtype=torch.float32)
    return Batch(obs, actions, log_probs, advantages(obs, rewards)), distances


def collect(policy: GaussianPolicy, lrs: StepSizes, world: PuckWorld, task: Task, config: PuckMetaRLConfig,
            meta: bool, rng: np.random.Generator, generator: torch.Generator) -> tuple[list[Batch], np.ndarray]:
    """``inner_steps`` + 1 batches of K hits on one task (meta: an inner step after each but the last)."""
    params, rates = detached(meta_parameters(policy)), {k: v.detach() for k, v in lrs().items()}
    batches, distances = [], []
    for h in range(config.inner_steps + 1):
        batch, d = explore(policy, params, world, task, config, rng, generator)
        batches.append(batch)
        distances.append(d.mean())
        if meta and h < config.inner_steps:
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
    obs_dim = 4 if config.observe_start else 2  # goal (x, y) relative to the puck's start (and the start's offset)
    policy = GaussianPolicy(obs_dim, ACT_DIM, config.hidden, config.init_std)
    return policy, StepSizes(dict(policy.named_parameters()), config.inner_lr, "per_element", learn_lr,
                             log_space=True)


def _collect_task(item: tuple[Task, list[int]], recipe: WorldRecipe, policy: GaussianPolicy, lrs: StepSizes,
                  meta: bool) -> tuple[list[Batch], np.ndarray]:
    """:func:`collect` on one task (its hits seeded by ``item[1]``) in the world of this process."""
    task, seed = item
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    with torch_threads(recipe.config.compute.threads):
        return collect(policy, lrs, recipe.world(), task, recipe.config, meta, rng, generator)


def train_policy(recipe: WorldRecipe, meta: bool, hitters: Workers, progress: bool = True,
                 checkpoint: Path | None = None) -> TrainedPolicy:
    """Meta-train (``meta``) or train the baseline on randomized tasks, their hits simulated by ``hitters``; the
    same seed gives the same tasks and hits."""
    config = recipe.config
    torch.manual_seed(config.seed)
    policy, lrs = new_policy(config, learn_lr=meta and config.learn_inner_lr)
    trained = TrainedPolicy("meta" if meta else "baseline", config, policy, lrs, [])
    learnable = [p for p in (*policy.parameters(), *lrs.parameters()) if p.requires_grad]
    optimizer = torch.optim.Adam(learnable, lr=config.outer_lr)
    rng = np.random.default_rng(config.seed)
    bar = progress_bar(range(config.iterations), desc=f"puck {trained.kind} policy", disable=not progress)
    for iteration in bar:
        tasks = [recipe.world().random_task(rng) for _ in range(config.tasks_per_iteration)]
        collected = hitters.map(partial(_collect_task, recipe=recipe, policy=policy, lrs=lrs, meta=meta),
                                [(task, [config.seed, HIT_STREAM, iteration, t]) for t, task in enumerate(tasks)],
                                desc="hits", unit="task", progress=False)
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


def tune_inner_lr(trained: TrainedPolicy, world: PuckWorld, progress: bool = True) -> dict[float, float]:
    """Set the baseline's fixed step size to the best candidate; returns mean distance after H steps per candidate."""
    from mtrl_robot.learning.puck.methods import PolicyMethod, adaptation_curve  # here: it imports this module

    config = trained.config
    rng = np.random.default_rng([config.seed, 1])  # tasks apart from the training tasks
    tasks = [world.random_task(rng) for _ in range(config.tuning_tasks)]
    scores = {}
    for factor in progress_bar(config.baseline_lr_factors, desc="baseline step size", disable=not progress):
        lrs = StepSizes(dict(trained.policy.named_parameters()), config.inner_lr * factor, learn=False,
                        log_space=True)
        scores[config.inner_lr * factor] = float(np.mean([
            adaptation_curve(PolicyMethod(trained.policy, lrs, config, world), world, task, config,
                             config.inner_steps, [config.seed, 2, i])[-1]
            for i, task in enumerate(tasks)]))
    trained.lrs.fill_(min(scores, key=scores.get))
    return scores


# ---------------------------------------------------------------------------------------------- files

FORMAT = "mtrl_robot.puck_meta_rl"
VERSION = 2  # 2: the Meta-SGD log-rates are saved as the state of StepSizes (key step_sizes, was log_lr)
VAE_FILE, META_FILE, BASELINE_FILE, SUMMARY_FILE = "vae.pt", "meta_policy.pt", "baseline_policy.pt", "training.json"


def save_policy(trained: TrainedPolicy, path: str | Path) -> Path:
    """Write the policy atomically (a temporary file in the same folder, read back, then renamed)."""
    config = replace(trained.config, compute=ComputeConfig())  # how it computed is not part of what it computed
    payload = {"format": FORMAT, "version": VERSION, "kind": trained.kind, "config": config.to_dict(),
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
    check_reachable(config.compute)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.compute.threads)  # small models only lose time to thread hand-offs
    try:
        times = {}
        start = time.perf_counter()
        env = PuckHittingEnv(config.arm)
        try:
            vae = train_hitting_vae(env.generator, config.vae_motions, config.vae_steps, seed=config.seed,
                                    progress=progress)
        finally:
            env.close()
        vae.save(out / VAE_FILE)
        recipe = WorldRecipe(config, HittingVAE.load(out / VAE_FILE))
        times["vae_s"] = time.perf_counter() - start
        with workers(config.compute) as hitters:
            meta = train_policy(recipe, True, hitters, progress=progress, checkpoint=out / META_FILE)
            times["meta_s"] = time.perf_counter() - start - sum(times.values())
            baseline = train_policy(recipe, False, hitters, progress=progress, checkpoint=out / BASELINE_FILE)
        times["baseline_s"] = time.perf_counter() - start - sum(times.values())
        scores = tune_inner_lr(baseline, recipe.world(), progress)
        save_policy(baseline, out / BASELINE_FILE)
        times["baseline_lr_s"] = time.perf_counter() - start - sum(times.values())
    finally:
        WorldRecipe.close_all()
        torch.set_num_threads(threads)
    hits = config.iterations * config.tasks_per_iteration * (config.inner_steps + 1) * config.rollouts
    summary = {"config": config.to_dict(), "seconds": times, "hits_per_policy": hits,
               "baseline_lr_scores": {f"{lr:.6g}": score for lr, score in scores.items()},
               "meta_inner_lr": meta.lrs.per_tensor(),
               "baseline_inner_lr": next(iter(baseline.lrs().values())).flatten()[0].item(),
               "meta_history": meta.history, "baseline_history": baseline.history}
    write_atomic(out / SUMMARY_FILE, json.dumps(summary, indent=1))
    return out
