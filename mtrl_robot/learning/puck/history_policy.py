"""A puck-hitting policy conditioned on the history of its previous hits and their outcomes: it adapts to the
puck's physics by reading what its hits did (RMA-style, Kumar et al. 2021), with no gradient at test time.

The run (:func:`train_history_policy`, ``mtrl-robot puck train-history RUN``), top to bottom:

1. **Data.** ``tasks`` randomized tasks, drawn like the meta-policy's training tasks (the randomization spec,
   a fresh puck start offset per hit), each hit ``hits_per_task`` times with latents uniform over the VAE's box,
   on the simulated puck table the policies train on: per hit, the latent, the puck's start and where it came to
   rest (a refused or lost hit is dropped).
2. **Model** (:class:`HistoryPolicy`). Every past hit (its latent and where it left the puck, relative to its
   start) is encoded by an MLP and the codes are averaged (the history is a set; its size enters as 1/(1+n)).
   A second MLP maps (goal relative to the puck's start, the average, 1/(1+n)) to the latent to hit with.
3. **Training.** Hindsight relabelling: on a task, any hit is a demonstration of how to send the puck where it
   came to rest. Each Adam step takes ``batch`` tasks, splits each task's hits at random into a history (0 to
   all but one of them) and the rest, and regresses the latent of every remaining hit whose resting place is a
   goal the policy may be asked for (the run's goal distances and angles, widened by ``goal_margin`` and
   ``angle_margin``) on that resting place and the history (mean squared error). Nothing tells the model the
   task's physics: it must read them from the history.
4. **Test time** (:class:`HistoryMethod`): the hits so far are the history; every hit, exploratory or best,
   is the policy's latent for its goal (clipped to the box).

The policy file (``history_policy.pt`` in the run folder) holds the config and weights; it is written
atomically and read with ``weights_only=True``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtrl_robot.core import config as cfg
from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.config import SEED, STEPS, WIDTH, check_settings, setting
from mtrl_robot.core.progress import progress_bar
from mtrl_robot.core.torch_files import CheckpointError, load_torch_file
from mtrl_robot.core.torch_threads import torch_threads
from mtrl_robot.learning.puck.methods import AdaptationMethod
from mtrl_robot.learning.puck.presets import HITS, TASKS, PuckMetaRLConfig
from mtrl_robot.learning.puck.train import META_FILE, VAE_FILE, load_policy, simulated_world
from mtrl_robot.models.hitting_vae import HittingVAE
from mtrl_robot.models.mlp import mlp
from mtrl_robot.tasks.puck import HitBatch, PuckHittingEnv, PuckWorld

HISTORY_FILE = "history_policy.pt"
FORMAT, VERSION = "mtrl_robot.puck_history_policy", 1
DATA_STREAM = 6  # seed stream of the training hits (the run uses its seed and streams 1-5)


@dataclass(frozen=True)
class HistoryPolicyConfig:
    """Every hyperparameter of the history-conditioned policy; the defaults are the full run's."""

    seed: int = setting(0, "tasks, hits, weights, batches", minimum=0, maximum=SEED)
    tasks: int = setting(300, "randomized tasks simulated for training", above=0, maximum=TASKS)
    hits_per_task: int = setting(40, "hits per task, latents uniform over the VAE's box", minimum=2, maximum=HITS)
    goal_margin: float = setting(0.04, "m by which the goal distances are widened for training targets", minimum=0)
    angle_margin: float = setting(15.0, "degrees by which the goal angles are widened for training targets",
                                  minimum=0)
    context: int = setting(16, "width of a history's code", above=0, maximum=WIDTH)
    hidden: tuple[int, ...] = setting((64, 64), "hidden widths of the encoder and of the policy", above=0,
                                      maximum=WIDTH)
    steps: int = setting(3000, "Adam steps", above=0, maximum=STEPS)
    batch: int = setting(32, "tasks per Adam step", above=0, maximum=TASKS)
    lr: float = setting(1e-3, "Adam step size", above=0)

    def __post_init__(self) -> None:
        check_settings(self)

    def to_dict(self) -> dict[str, Any]:
        return cfg.config_to_dict(self)


class HistoryPolicy(nn.Module):
    """(goals, history of hits) → normalised VAE latents; positions relative to the puck's start, over ``scale``."""

    def __init__(self, context: int, hidden: tuple[int, ...], scale: float):
        super().__init__()
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.encoder = mlp([4, *hidden, context])
        self.head = mlp([2 + context + 1, *hidden, 2])

    def forward(self, goals: Tensor, history: Tensor, mask: Tensor) -> Tensor:
        """``goals`` (B, G, 2) and ``history`` (B, H, 4: latent, rest − start) in m relative to the starts,
        ``mask`` (B, H) the history's real entries → latents (B, G, 2)."""
        codes = self.encoder(torch.cat([history[..., :2], history[..., 2:] / self.scale], dim=-1))
        count = mask.sum(dim=1, keepdim=True)
        context = (codes * mask[..., None]).sum(dim=1) / count.clamp_min(1.0)
        summary = torch.cat([context, 1.0 / (1.0 + count)], dim=-1)
        return self.head(torch.cat([goals / self.scale, summary[:, None].expand(-1, goals.shape[1], -1)], dim=-1))


# ---------------------------------------------------------------------------------------------- data


def simulate_tasks(world: PuckWorld, config: HistoryPolicyConfig, progress: bool = True) -> tuple[Tensor, Tensor]:
    """Per task and hit: (latent, rest − start) (tasks, hits, 4) and whether the hit is real (tasks, hits)."""
    rng = np.random.default_rng([config.seed, DATA_STREAM])
    hits = np.zeros((config.tasks, config.hits_per_task, 4))
    real = np.zeros((config.tasks, config.hits_per_task), dtype=bool)
    for t in progress_bar(range(config.tasks), desc="history policy: simulated tasks", unit="task",
                          disable=not progress):
        task = world.random_task(rng)
        layout = world.layout(task, config.hits_per_task, rng)
        actions = rng.uniform(-1.0, 1.0, (config.hits_per_task, 2))
        outcome = world.strike(layout, layout.starts, torch.as_tensor(actions))
        real[t] = np.all(np.isfinite(outcome.finals), axis=1)
        hits[t, :, :2] = actions
        hits[t, :, 2:] = np.where(real[t, :, None], outcome.finals - outcome.starts, 0.0)
    return torch.as_tensor(hits, dtype=torch.float32), torch.as_tensor(real)


def goal_region(hits: Tensor, real: Tensor, run: PuckMetaRLConfig, config: HistoryPolicyConfig) -> Tensor:
    """The real hits whose resting place (relative to the start) lies in the run's goal region, widened."""
    rest = hits[..., 2:]
    distance = rest.norm(dim=-1)
    angle = torch.rad2deg(torch.atan2(rest[..., 1], rest[..., 0]))
    (d0, d1), (a0, a1) = run.goal_distance, run.goal_angle
    near = (distance >= d0 - config.goal_margin) & (distance <= d1 + config.goal_margin)
    return real & near & (angle >= a0 - config.angle_margin) & (angle <= a1 + config.angle_margin)


# ---------------------------------------------------------------------------------------------- training


def train_history_policy(run_dir: str | Path, config: HistoryPolicyConfig = HistoryPolicyConfig(),
                         progress: bool = True) -> Path:
    """Train the history-conditioned policy for a run's VAE and goals; write ``history_policy.pt`` there."""
    run = Path(run_dir)
    run_config = load_policy(run / META_FILE).config
    started = time.perf_counter()
    env = PuckHittingEnv(run_config.arm, motion_vae=HittingVAE.load(run / VAE_FILE))
    try:
        with torch_threads(1):
            hits, real = simulate_tasks(simulated_world(env, run_config), config, progress)
            simulated = time.perf_counter() - started
            targets = goal_region(hits, real, run_config, config)
            if not targets.any():
                raise ValueError("history policy: no simulated hit came to rest in the goal region")
            torch.manual_seed(config.seed)
            policy = HistoryPolicy(config.context, config.hidden, run_config.goal_distance[1])
            losses = fit(policy, hits, real, targets, config, progress)
    finally:
        env.close()
    payload = {"format": FORMAT, "version": VERSION, "config": config.to_dict(), "policy": policy.state_dict(),
               "losses": losses, "seconds": {"simulation": simulated, "total": time.perf_counter() - started},
               "target_hits": int(targets.sum()), "real_hits": int(real.sum())}
    path = run / HISTORY_FILE
    write_atomic(path, lambda f: torch.save(payload, f), verify=lambda tmp: load_torch_file(tmp, "history policy"))
    write_atomic(run / "history_policy.json", json.dumps({k: v for k, v in payload.items() if k != "policy"},
                                                          indent=1))
    return path


def fit(policy: HistoryPolicy, hits: Tensor, real: Tensor, targets: Tensor, config: HistoryPolicyConfig,
        progress: bool = True) -> list[float]:
    """Adam on hindsight-relabelled hits (the module docstring's step 3); the loss every 100 steps."""
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
    tasks, per_task = real.shape
    losses = []
    for step in progress_bar(range(config.steps), desc="history policy: fit", disable=not progress):
        chosen = torch.randint(tasks, (config.batch,), generator=generator)
        rank = torch.rand(config.batch, per_task, generator=generator).argsort(dim=1).argsort(dim=1)
        length = torch.randint(per_task, (config.batch, 1), generator=generator)  # 0 .. per_task − 1 past hits
        past = (rank < length) & real[chosen]
        scored = (rank >= length) & targets[chosen]
        batch = hits[chosen]
        predicted = policy(batch[..., 2:], batch, past.float())
        error = ((predicted - batch[..., :2]) ** 2).sum(dim=-1)
        loss = (error * scored).sum() / scored.sum().clamp_min(1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step + 1 == config.steps:
            losses.append(loss.item())
    return losses


def load_history_policy(path: str | Path) -> tuple[HistoryPolicy, HistoryPolicyConfig]:
    """A policy written by :func:`train_history_policy`; ``CheckpointError`` if it is not one."""
    payload = load_torch_file(path, "history policy")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: not a puck history policy of version {VERSION}")
    try:
        config = cfg.config_from_dict(HistoryPolicyConfig, payload["config"], str(path))
        policy = HistoryPolicy(config.context, config.hidden, 1.0)
        policy.load_state_dict(payload["policy"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: does not fit the policy it describes: {e}") from e
    return policy, config


# ---------------------------------------------------------------------------------------------- test time


class HistoryMethod(AdaptationMethod):
    """Every hit is the history policy's latent for its goal, given all hits so far; learning only remembers."""

    def __init__(self, policy: HistoryPolicy):
        self.policy = policy
        self.history: list[np.ndarray] = []

    def begin(self, seed: int) -> None:
        self.history = []  # nothing is drawn at random

    @torch.no_grad()
    def propose(self, goals: np.ndarray, starts: np.ndarray, explore: bool) -> torch.Tensor:
        past = np.concatenate(self.history) if self.history else np.zeros((0, 4))
        history = torch.as_tensor(past, dtype=torch.float32)[None]
        relative = torch.as_tensor(goals - starts, dtype=torch.float32)[None]
        return self.policy(relative, history, torch.ones(1, len(past)))[0].clamp(-1.0, 1.0)

    def learn(self, hits: HitBatch) -> None:
        real = np.all(np.isfinite(hits.finals), axis=1)
        self.history.append(np.concatenate([hits.actions, hits.finals - hits.starts], axis=1)[real])


def build(run: Path, world: PuckWorld, config: PuckMetaRLConfig) -> HistoryMethod:
    """The method from a run's ``history_policy.pt`` (``mtrl-robot puck train-history``)."""
    return HistoryMethod(load_history_policy(Path(run) / HISTORY_FILE)[0])
