"""Puck meta-RL presets: every hyperparameter of a run (:class:`PuckMetaRLConfig`), from ``config/puck_meta_rl.yaml``.

The file holds named presets; ``base: <preset>`` takes every field a preset does not list from another. Read by
:func:`mtrl_robot.core.config.load_config`: unknown fields, wrong types, NaN/inf, values out of range or beyond what
a run can hold raise ``ConfigError`` naming the file and the field (``<preset>.<field>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtrl_robot.core import config as cfg
from mtrl_robot.core.config import INNER_STEPS, SEED, STEPS, WIDTH, Limit, check_settings, setting
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.paths import data_dir
from mtrl_robot.distributed.compute import ComputeConfig

MOTIONS = Limit(1_000_000, "the VAE's hitting motions are generated and held in memory")
HITS = Limit(100_000, "every hit is simulated")
TASKS = Limit(10_000, "every task is simulated at every iteration")
EPOCHS = Limit(10_000, "each epoch differentiates through every hit of the iteration")


@dataclass(frozen=True)
class PuckMetaRLConfig:
    """Every hyperparameter of a run; the defaults are the ``default`` preset."""

    name: str = setting("default", "the preset's name")
    seed: int = setting(0, "VAE data and weights, policy weights, tasks, goals, exploration noise",
                        minimum=0, maximum=SEED)
    arm: str = setting("panda", "arm family that hits")
    # action space: the hitting VAE
    vae_motions: int = setting(5000, "generated hitting motions it is trained on", above=0, maximum=MOTIONS)
    vae_steps: int = setting(1500, "Adam steps", above=0, maximum=STEPS)
    # goals: uniform in distance and direction from the puck's nominal start
    goal_distance: tuple[float, float] = setting((0.12, 0.22), "m, low and high", above=0)
    goal_angle: tuple[float, float] = setting((-40.0, 40.0), "degrees from the world x axis, low and high",
                                              minimum=-90, maximum=90, why="goals lie ahead of the puck")
    reward_scale: float = setting(0.1, "m: reward = −distance / reward_scale", above=0)
    # policy: goal → Gaussian over the normalised VAE latent
    observe_start: bool = setting(False, "the policy also sees where the puck stands before each hit (as the "
                                         "overhead camera does), not only the goal")
    hidden: tuple[int, ...] = setting((64, 64), "hidden layer widths", above=0, maximum=WIDTH)
    init_std: float = setting(0.3, "initial standard deviation in normalised latent units (the box is [−1, 1]²)",
                              above=0)
    # inner loop: one policy-gradient step on K hits
    rollouts: int = setting(16, "K, hits per adaptation step", minimum=2, maximum=HITS)
    inner_steps: int = setting(3, "adaptation steps in meta-training", above=0, maximum=INNER_STEPS)
    inner_lr: float = setting(0.05, "inner step size (the initial value when learned)", above=0)
    learn_inner_lr: bool = setting(True, "Meta-SGD, one step size per parameter element")
    first_order: bool = setting(False, "treat inner gradients as constants")
    score_first_step: bool = setting(True, "the meta outer loss also scores step 0 (the return of every trial), "
                                           "not only 1..H")
    # outer loop: PPO-clip through the inner steps
    iterations: int = setting(150, "outer iterations", above=0, maximum=STEPS)
    tasks_per_iteration: int = setting(8, "randomized tasks per iteration", above=0, maximum=TASKS)
    outer_lr: float = setting(3e-3, "Adam", above=0)
    epochs: int = setting(8, "Adam steps per iteration on the same hits", above=0, maximum=EPOCHS)
    clip: float = setting(0.2, "PPO ratio clip ε, in (0, 1)", above=0)
    max_grad_norm: float = setting(1.0, "gradient norm clip of the outer step", above=0)
    checkpoint_every: int = setting(25, "iterations between checkpoint writes (and the last)", above=0)
    # baseline: its fixed inner step size is the best of these multiples of inner_lr on randomized tasks
    baseline_lr_factors: tuple[float, ...] = setting((0.25, 0.5, 1.0, 2.0, 4.0), "multiples of inner_lr tried",
                                                     above=0)
    tuning_tasks: int = setting(8, "randomized tasks the baseline's step size is tuned on", above=0, maximum=TASKS)
    # evaluation
    eval_steps: int = setting(5, "adaptation steps (0..eval_steps are reported)", above=0, maximum=INNER_STEPS)
    eval_goals: int = setting(8, "fresh goals per step, hit with the policy's mean action", above=0, maximum=HITS)
    # where the hits are simulated: changes the speed, never the result; policy files record the default
    compute: ComputeConfig = setting(ComputeConfig)

    def __post_init__(self) -> None:
        check_settings(self)
        for name in ("goal_distance", "goal_angle"):
            low, high = getattr(self, name)
            if low > high:
                raise ConfigError(None, name, f"low {low} exceeds high {high}")
        if not self.clip < 1:
            raise ConfigError(None, "clip", f"must be in (0, 1), got {self.clip}")
        for name in ("hidden", "baseline_lr_factors"):
            if not getattr(self, name):
                raise ConfigError(None, name, "expected a non-empty list")

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers, strings and lists (for YAML, JSON and ``weights_only`` checkpoints)."""
        return cfg.config_to_dict(self)


def presets_file() -> Path:
    return data_dir("config") / "puck_meta_rl.yaml"


def load_preset(name: str = "default", path: str | Path | None = None,
                overrides: Sequence[str] = ()) -> PuckMetaRLConfig:
    """Preset ``name`` of ``path`` (default ``config/puck_meta_rl.yaml``), with ``field=value`` ``overrides``."""
    return cfg.load_config(PuckMetaRLConfig, path if path is not None else presets_file(), section=name,
                           overrides=overrides, given={"name": name})


def config_from_dict(data: dict[str, Any], source: str = "<checkpoint>") -> PuckMetaRLConfig:
    """A config saved with :meth:`PuckMetaRLConfig.to_dict`."""
    return cfg.config_from_dict(PuckMetaRLConfig, data, source)
