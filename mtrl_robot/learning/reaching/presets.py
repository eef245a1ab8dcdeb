"""Training presets: every hyperparameter of a run, read from ``config/training/<name>.yaml`` and validated.

A preset has six sections, each a dataclass below (the field comments say what each number means):
``data`` (population and demonstrations), ``model`` (VAE and policy sizes), ``pretrain``, ``meta`` (the
meta-learning loop), ``adapt`` (few-shot adaptation defaults) and ``compute`` (processes and threads:
they change the speed; the number of processes never changes the result). Unknown fields, wrong types and
values out of range raise ``ConfigError`` naming the file and the field.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from mtrl_robot.core.config import load_yaml, mapping, unknown_keys
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.paths import data_dir

VARIANTS = ("maml", "first_order", "probabilistic")
LR_MODES = ("none", "per_tensor", "per_element")
PRETRAIN_SOURCES = ("nominal", "population")


@dataclass(frozen=True)
class DataConfig:
    families: tuple[str, ...] = ("panda", "gen3", "yumi", "baxter")  # one model (checkpoint) per family
    robots_per_family: int = 100  # population size per family, held-out robots included
    held_out_per_family: int = 10  # the last robots of each family: never trained on, used for evaluation
    demos_per_robot: int = 40  # planned reaching demos per robot
    population_seed: int = 0  # robot perturbations
    demo_seed: int = 0  # demo targets
    population_config: str | None = None  # perturbation ranges (population YAML); None: config/population.yaml
    pooled: bool = False  # one model across all the families (the across-families experiment), not one per family


@dataclass(frozen=True)
class ModelConfig:
    latent_dim: int = 8  # z of the motor VAE
    vae_hidden: tuple[int, ...] = (128, 128)  # encoder layers (the decoder mirrors them)
    policy_hidden: tuple[int, ...] = (128, 128, 128)  # target → z
    beta: float = 1e-3  # weight of the VAE's KL term


@dataclass(frozen=True)
class PretrainConfig:
    source: str = "nominal"  # nominal: the family's nominal robot; population: all training robots (multi-task)
    nominal_demos: int = 2000  # demos planned for the nominal robot
    vae_steps: int = 2000  # Adam steps on the β-VAE loss
    policy_steps: int = 3000  # Adam steps on target → trajectory (policy and decoder), cosine-decayed
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0  # weight initialisation, batches, demo targets of the nominal robot


@dataclass(frozen=True)
class MetaConfig:
    variant: str = "maml"  # maml (second order) | first_order | probabilistic (latent task variable)
    learn_inner_lr: str = "per_tensor"  # Meta-SGD: none | per_tensor | per_element
    adapt_only: tuple[str, ...] = ("policy.head", "policy.body.4")  # name prefixes the inner loop adapts; (): all
    k_support: int = 5  # support demos per robot (K)
    k_query: int = 15  # query demos per robot
    inner_steps: int = 5
    inner_lr: float = 0.01  # the initial value when learned
    outer_lr: float = 1e-3  # cosine-decayed to outer_lr_final over meta_steps
    outer_lr_final: float = 1e-5
    meta_batch_size: int = 16  # robots per meta-step
    meta_steps: int = 3000
    task_latent_dim: int = 4  # probabilistic variant only: size of the latent task variable
    kl_weight: float = 0.01  # probabilistic variant only
    checkpoint_every: int = 250  # meta-steps between checkpoints (and the last step)
    seed: int = 0  # robot and demo sampling


@dataclass(frozen=True)
class AdaptConfig:
    steps: int = 15  # gradient steps at adaptation (and in the held-out evaluation)
    k: int = 5  # demos used by the held-out evaluation at the end of training


@dataclass(frozen=True)
class ComputeConfig:
    workers: int = 2  # processes: demo generation, and families trained side by side
    threads: int = 1  # torch threads per process (more than one slows small models down on a busy machine)


@dataclass(frozen=True)
class Preset:
    name: str
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, numbers and strings: fit for YAML, JSON and ``weights_only`` checkpoints."""
        return _plain(asdict(self))


SECTIONS = {"data": DataConfig, "model": ModelConfig, "pretrain": PretrainConfig, "meta": MetaConfig,
            "adapt": AdaptConfig, "compute": ComputeConfig}
CHOICES = {"meta.variant": VARIANTS, "meta.learn_inner_lr": LR_MODES,
           "pretrain.source": PRETRAIN_SOURCES}
NON_NEGATIVE = {"data.held_out_per_family", "data.population_seed", "data.demo_seed", "model.beta", "pretrain.seed",
                "meta.inner_steps", "meta.kl_weight", "meta.seed", "adapt.steps"}  # every other number must be > 0


def presets_dir() -> Path:
    return data_dir("config") / "training"


def preset_names() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def load_preset(preset: str | Path, overrides: Sequence[str] = ()) -> Preset:
    """A preset by name (``small``, ``full``) or by path to a YAML file.

    ``overrides`` are ``section.field=value`` strings (the value read as YAML, e.g. ``meta.variant=probabilistic``
    or ``data.families=[panda]``), applied before validation, so they are checked like the file's own values.
    """
    path = Path(preset)
    if path.suffix not in (".yaml", ".yml"):
        path = presets_dir() / f"{preset}.yaml"
        if not path.is_file():
            raise ConfigError(None, "preset", f"unknown training preset '{preset}' "
                              f"(known: {', '.join(preset_names())}; or give a path to a YAML file)")
    data = mapping(load_yaml(path), path, "")
    for override in overrides:
        _apply_override(data, override, path)
    unknown_keys(data, {"name", *SECTIONS}, path, "")
    sections = {key: _section(cls, data.get(key, {}), path, key) for key, cls in SECTIONS.items()}
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise ConfigError(path, "name", f"expected a non-empty string, got {name!r}")
    preset = Preset(name=name, **sections)
    _check_together(preset, path)
    return preset


def preset_from_dict(data: dict[str, Any], source: str = "<checkpoint>") -> Preset:
    """Rebuild a preset saved with ``Preset.to_dict`` (e.g. from a checkpoint)."""
    data = mapping(data, source, "")
    sections = {key: _section(cls, data.get(key, {}), source, key) for key, cls in SECTIONS.items()}
    return Preset(name=str(data.get("name", "")), **sections)


def _apply_override(data: dict[str, Any], override: str, src: Path) -> None:
    """Set ``section.field`` of the raw preset to the YAML value after ``=``."""
    key, sep, text = override.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not name:
        raise ConfigError(src, key or override, f"an override reads section.field=value, got {override!r}")
    if section not in SECTIONS:
        raise ConfigError(src, key, f"unknown section '{section}' (known: {', '.join(SECTIONS)})")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(src, key, f"the override's value {text!r} is not YAML ({e})") from e
    data[section] = {**mapping(data.get(section) or {}, src, section), name: value}


def _section(cls: type, raw: Any, src: str | Path, prefix: str) -> Any:
    raw = mapping(raw if raw is not None else {}, src, prefix)
    hints = typing.get_type_hints(cls)
    unknown_keys(raw, {f.name for f in fields(cls)}, src, prefix)
    values = {name: _value(hints[name], raw[name], src, f"{prefix}.{name}") for name in raw}
    return cls(**values)


def _value(kind: Any, value: Any, src: str | Path, where: str) -> Any:
    """Check one field against its annotation (int, float, str, str | None, tuple[int|str, ...]) and range."""
    optional = isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind)
    if optional:
        if value is None:
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(src, where, f"expected a list, got {value!r}")
        return tuple(_value(item, v, src, f"{where}[{i}]") for i, v in enumerate(value))
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(src, where, f"expected true or false, got {value!r}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(src, where, f"expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ConfigError(src, where, f"expected a number, got {value!r}")
        value = float(value)
    if kind is str and (not isinstance(value, str) or not value):
        raise ConfigError(src, where, f"expected a non-empty string, got {value!r}")
    if where in CHOICES and value not in CHOICES[where]:
        raise ConfigError(src, where, f"expected one of {', '.join(CHOICES[where])}, got {value!r}")
    zero_ok = where.split("[")[0] in NON_NEGATIVE
    if kind in (int, float) and (value < 0 or (value == 0 and not zero_ok)):
        raise ConfigError(src, where, f"must be {'>= 0' if zero_ok else '> 0'}, got {value}")
    return value


def _check_together(preset: Preset, src: Path) -> None:
    """Constraints between fields."""
    from mtrl_robot.arms.families import family_names

    data, meta = preset.data, preset.meta
    known = family_names()
    for i, family in enumerate(data.families):
        if family not in known:
            raise ConfigError(src, f"data.families[{i}]", f"unknown arm family '{family}' (known: {', '.join(known)})")
    if len(set(data.families)) != len(data.families) or not data.families:
        raise ConfigError(src, "data.families", "expected a non-empty list without repeats")
    if data.pooled:
        from mtrl_robot.arms.families import load_family

        dofs = {f: load_family(f).dof for f in data.families}
        if len(data.families) < 2 or len(set(dofs.values())) != 1:
            raise ConfigError(src, "data.pooled", f"pooling needs two or more families with one number of joints, "
                              f"got {dofs}")
    if data.robots_per_family - data.held_out_per_family < meta.meta_batch_size:
        raise ConfigError(src, "meta.meta_batch_size", f"{meta.meta_batch_size} robots per meta-step, but only "
                          f"{data.robots_per_family - data.held_out_per_family} training robots per family")
    if meta.k_support + meta.k_query > data.demos_per_robot:
        raise ConfigError(src, "meta.k_query", f"k_support + k_query = {meta.k_support + meta.k_query} exceeds "
                          f"data.demos_per_robot = {data.demos_per_robot}")
    if data.held_out_per_family and preset.adapt.k >= data.demos_per_robot:
        raise ConfigError(src, "adapt.k", f"the held-out evaluation needs adapt.k < data.demos_per_robot "
                          f"({data.demos_per_robot}) to keep demos for measuring")
    if meta.outer_lr_final > meta.outer_lr:
        raise ConfigError(src, "meta.outer_lr_final", f"must not exceed meta.outer_lr ({meta.outer_lr})")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
