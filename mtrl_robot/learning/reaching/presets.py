"""Training presets: every hyperparameter of a run, read from ``config/training/<name>.yaml`` and validated.

A preset has six sections, each a dataclass (each field's ``setting`` says what it means and its range):
``data`` (population and demonstrations), ``model`` (VAE and policy sizes), ``pretrain``, ``meta`` (the
meta-learning loop), ``adapt`` (few-shot adaptation defaults) and ``compute`` (processes, threads, local or a Ray
cluster: :class:`~mtrl_robot.distributed.compute.ComputeConfig`; they change the speed, never the result). A
preset may take the fields it does not set from another with ``base: <name>``. Read by
:func:`mtrl_robot.core.config.load_config`: unknown fields, wrong types, NaN/inf, values out of range or beyond what
a run can hold raise ``ConfigError`` naming the file and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtrl_robot.arms.kinematic_calibration import NOISE
from mtrl_robot.core.config import (
    INNER_STEPS,
    ROBOTS,
    SEED,
    STEPS,
    WIDTH,
    Limit,
    config_from_dict,
    config_to_dict,
    load_config,
    setting,
)
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.paths import data_dir
from mtrl_robot.distributed.compute import ComputeConfig

VARIANTS = ("maml", "first_order", "probabilistic")
LR_MODES = ("none", "per_tensor", "per_element")
PRETRAIN_SOURCES = ("nominal", "population")

DEMOS = Limit(100_000, "demonstrations are planned and held in memory")
BATCH = Limit(100_000, "a batch is held in memory with its gradients")
DEMOS_PER_FAMILY = 1_000_000  # robots_per_family × demos_per_robot: a family's demos are held in memory at once


@dataclass(frozen=True)
class DataConfig:
    families: tuple[str, ...] = setting(("panda", "gen3", "yumi", "baxter"), "built-in names or family files "
                                        "(paths); one model (checkpoint) per family")
    robots_per_family: int = setting(100, "population size per family, held-out robots included",
                                     above=0, maximum=ROBOTS)
    held_out_per_family: int = setting(10, "the last robots of each family: never trained on, used for evaluation",
                                       minimum=0, maximum=ROBOTS)
    demos_per_robot: int = setting(40, "planned reaching demos per robot", above=0, maximum=DEMOS)
    population_seed: int = setting(0, "robot perturbations", minimum=0, maximum=SEED)
    demo_seed: int = setting(0, "demo targets", minimum=0, maximum=SEED)
    population_config: str | None = setting(None, "perturbation ranges (population YAML); None: "
                                                  "config/population.yaml")
    pooled: bool = setting(False, "one model across all the families (the across-families experiment; arms with "
                                  "fewer joints padded to the most), not one per family")


@dataclass(frozen=True)
class ModelConfig:
    latent_dim: int = setting(8, "z of the motor VAE", above=0, maximum=WIDTH)
    vae_hidden: tuple[int, ...] = setting((128, 128), "encoder layers (the decoder mirrors them)",
                                          above=0, maximum=WIDTH)
    policy_hidden: tuple[int, ...] = setting((128, 128, 128), "target → z", above=0, maximum=WIDTH)
    beta: float = setting(1e-3, "weight of the VAE's KL term", minimum=0)
    family_code: bool = setting(False, "pooled runs: a one-hot of the arm family beside the target at the policy's "
                                       "input (zeros for a family not trained on)")


@dataclass(frozen=True)
class PretrainConfig:
    source: str = setting("nominal", "nominal: the family's nominal robot; population: all training robots "
                                     "(multi-task)", choices=PRETRAIN_SOURCES)
    nominal_demos: int = setting(2000, "demos planned for the nominal robot", above=0, maximum=DEMOS)
    vae_steps: int = setting(2000, "Adam steps on the β-VAE loss", above=0, maximum=STEPS)
    policy_steps: int = setting(3000, "Adam steps on target → trajectory (policy and decoder), cosine-decayed",
                                above=0, maximum=STEPS)
    batch_size: int = setting(256, "demos per Adam step", above=0, maximum=BATCH)
    lr: float = setting(1e-3, "Adam's learning rate", above=0)
    seed: int = setting(0, "weight initialisation, batches, demo targets of the nominal robot",
                        minimum=0, maximum=SEED)


@dataclass(frozen=True)
class MetaConfig:
    variant: str = setting("maml", "maml (second order) | first_order | probabilistic (latent task variable)",
                           choices=VARIANTS)
    learn_inner_lr: str = setting("per_tensor", "Meta-SGD: none | per_tensor | per_element", choices=LR_MODES)
    adapt_only: tuple[str, ...] = setting(("policy.head", "policy.body.4"),
                                          "name prefixes the inner loop adapts; (): all")
    k_support: int = setting(5, "support demos per robot (K)", above=0, maximum=DEMOS)
    k_query: int = setting(15, "query demos per robot", above=0, maximum=DEMOS)
    inner_steps: int = setting(5, "gradient steps of the inner loop", minimum=0, maximum=INNER_STEPS)
    inner_lr: float = setting(0.01, "inner step size (the initial value when learned)", above=0)
    outer_lr: float = setting(1e-3, "cosine-decayed to outer_lr_final over meta_steps", above=0)
    outer_lr_final: float = setting(1e-5, "the outer learning rate at the last meta-step", above=0)
    meta_batch_size: int = setting(16, "robots per meta-step", above=0, maximum=ROBOTS)
    meta_steps: int = setting(3000, "outer Adam steps", above=0, maximum=STEPS)
    task_latent_dim: int = setting(4, "probabilistic variant only: size of the latent task variable",
                                   above=0, maximum=WIDTH)
    kl_weight: float = setting(0.01, "probabilistic variant only", minimum=0)
    final_weight: float = setting(0.0, "weight of an extra term of the demos' joint-space loss (inner loop, "
                                       "adaptation and query): the squared error of the final waypoint alone, "
                                       "where the flange ends; 0: every waypoint alike", minimum=0)
    flange_weight: float = setting(0.0, "weight of the query loss's flange term: the mean squared distance in cm² "
                                        "from the forward kinematics of each predicted final waypoint, with the "
                                        "training robot's known kinematics, to the demo's target (the inner loop "
                                        "keeps the joint-space loss, as adaptation must); 0: joint-space loss only",
                                   minimum=0)
    checkpoint_every: int = setting(250, "meta-steps between checkpoints (and the last step)", above=0)
    seed: int = setting(0, "robot and demo sampling", minimum=0, maximum=SEED)


@dataclass(frozen=True)
class AdaptConfig:
    steps: int = setting(15, "gradient steps at adaptation (and in the held-out evaluation)",
                         minimum=0, maximum=STEPS)
    k: int = setting(5, "demos used by the held-out evaluation at the end of training",
                     above=0, maximum=DEMOS)
    demo_precision: float = setting(NOISE, "m: how far a demo's last posture may leave the flange from its target; "
                                    "calibrating the robot's kinematics from demos trusts them this far",
                                    above=0, maximum=0.1)


@dataclass(frozen=True)
class Preset:
    name: str = setting("", "the preset's name (default: its file name)")
    data: DataConfig = setting(DataConfig)
    model: ModelConfig = setting(ModelConfig)
    pretrain: PretrainConfig = setting(PretrainConfig)
    meta: MetaConfig = setting(MetaConfig)
    adapt: AdaptConfig = setting(AdaptConfig)
    compute: ComputeConfig = setting(ComputeConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, numbers and strings: fit for YAML, JSON and ``weights_only`` checkpoints."""
        return config_to_dict(self)


def presets_dir() -> Path:
    return data_dir("config") / "training"


def preset_names() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def load_preset(preset: str | Path, overrides: Sequence[str] = ()) -> Preset:
    """A preset by name (``small``, ``full``) or by path to a YAML file (its name: the file's, unless it sets one).

    ``overrides`` are ``section.field=value`` strings (the value read as YAML, e.g. ``meta.variant=probabilistic``
    or ``data.families=[panda]``), applied before validation, so they are checked like the file's own values.
    """
    path = Path(preset)
    if path.suffix not in (".yaml", ".yml"):
        path = presets_dir() / f"{preset}.yaml"
        if not path.is_file():
            raise ConfigError(None, "preset", f"unknown training preset '{preset}' "
                              f"(known: {', '.join(preset_names())}; or give a path to a YAML file)")
    return load_config(Preset, path, overrides=overrides, given={"name": path.stem}, check=_check_together)


def preset_from_dict(data: dict[str, Any], source: str = "<checkpoint>") -> Preset:
    """Rebuild a preset saved with ``Preset.to_dict`` (e.g. from a checkpoint)."""
    return config_from_dict(Preset, data, source)


def _check_together(preset: Preset) -> None:
    """Constraints between fields."""
    from mtrl_robot.arms.families import load_families

    data, meta = preset.data, preset.meta
    if len(set(data.families)) != len(data.families) or not data.families:
        raise ConfigError(None, "data.families", "expected a non-empty list without repeats")
    arms = load_families(data.families, None, "data.families")
    dofs = {f: arm.dof for f, arm in arms.items()}
    if data.pooled and len(data.families) < 2:
        raise ConfigError(None, "data.pooled", f"pooling needs two or more families, got {list(data.families)}")
    if preset.model.family_code and (not data.pooled or meta.variant == "probabilistic"):
        raise ConfigError(None, "model.family_code", "a family code is for pooled runs (data.pooled) of the maml or "
                          "first_order variant")
    if data.pooled and len(set(dofs.values())) > 1 and meta.variant == "probabilistic":
        raise ConfigError(None, "meta.variant", f"the probabilistic variant reads whole support trajectories and "
                          f"cannot pool families with different joint counts "
                          f"({', '.join(f'{f} {n}' for f, n in dofs.items())}); use maml or first_order")
    if data.robots_per_family * data.demos_per_robot > DEMOS_PER_FAMILY:
        raise ConfigError(None, "data.demos_per_robot", f"robots_per_family × demos_per_robot = "
                          f"{data.robots_per_family * data.demos_per_robot} demos per family exceeds the limit "
                          f"{DEMOS_PER_FAMILY} (a family's demos are held in memory at once)")
    if data.robots_per_family - data.held_out_per_family < meta.meta_batch_size:
        raise ConfigError(None, "meta.meta_batch_size", f"{meta.meta_batch_size} robots per meta-step, but only "
                          f"{data.robots_per_family - data.held_out_per_family} training robots per family")
    if meta.k_support + meta.k_query > data.demos_per_robot:
        raise ConfigError(None, "meta.k_query", f"k_support + k_query = {meta.k_support + meta.k_query} exceeds "
                          f"data.demos_per_robot = {data.demos_per_robot}")
    if data.held_out_per_family and preset.adapt.k >= data.demos_per_robot:
        raise ConfigError(None, "adapt.k", f"the held-out evaluation needs adapt.k < data.demos_per_robot "
                          f"({data.demos_per_robot}) to keep demos for measuring")
    if meta.outer_lr_final > meta.outer_lr:
        raise ConfigError(None, "meta.outer_lr_final", f"must not exceed meta.outer_lr ({meta.outer_lr})")

