"""Robot populations: arm families perturbed into many distinct robots, saved with stable ids."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.families import load_families, load_family
from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.config import ROBOTS, SEED, Rule, load_yaml, mapping, read_value, unknown_keys
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.paths import data_dir
from mtrl_robot.core.progress import progress_bar
from mtrl_robot.randomization import Distribution, parse_distribution

FILE_FORMAT = "mtrl_robot.population"
FILE_VERSION = 1
PERTURBATIONS = ("link_length", "link_offset", "joint_zero_offset", "link_mass", "joint_damping", "joint_friction")
_FACTORS = ("link_length", "link_mass", "joint_damping", "joint_friction")  # multiply: must stay positive
_NO_CHANGE = {"link_length": Distribution("uniform", 1.0, 1.0), "link_offset": Distribution("uniform", 0.0, 0.0),
              "joint_zero_offset": Distribution("uniform", 0.0, 0.0), "link_mass": Distribution("uniform", 1.0, 1.0),
              "joint_damping": Distribution("uniform", 1.0, 1.0), "joint_friction": Distribution("uniform", 1.0, 1.0)}


@dataclass(frozen=True)
class PopulationConfig:
    seed: int = 0
    families: tuple[str, ...] = ("panda", "gen3", "yumi", "baxter")  # built-in names or family files
    robots_per_family: int = 100
    perturbation: dict[str, Distribution] = field(default_factory=lambda: dict(_NO_CHANGE))


def default_config_path() -> Path:
    return data_dir("config") / "population.yaml"


def load_config(path: str | Path | None = None, **overrides) -> PopulationConfig:
    """Read a population YAML; keyword overrides (seed, families, robots_per_family) win over the file."""
    src = Path(path) if path else default_config_path()
    data = mapping(load_yaml(src), src, "")
    unknown_keys(data, {"seed", "families", "robots_per_family", "perturbation"}, src, "")
    data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    families = data.get("families", list(PopulationConfig.families))
    if isinstance(families, str):
        families = [families]
    if not isinstance(families, (list, tuple)) or not families:
        raise ConfigError(src, "families", "expected a non-empty list of family names or family files")
    load_families([str(f) for f in families], src, "families")
    try:
        count = read_value(int, data.get("robots_per_family", 100), Rule(above=0, maximum=ROBOTS.value,
                                                                         why=ROBOTS.why), "robots_per_family")
        seed = read_value(int, data.get("seed", 0), Rule(minimum=0, maximum=SEED.value, why=SEED.why), "seed")
    except ConfigError as exc:
        raise ConfigError(src, exc.field, exc.problem) from None
    raw = mapping(data.get("perturbation", {}), src, "perturbation")
    unknown_keys(raw, set(PERTURBATIONS), src, "perturbation")
    perturbation = dict(_NO_CHANGE)
    for name, spec in raw.items():
        dist = parse_distribution(spec, src, f"perturbation.{name}")
        if name in _FACTORS and dist.low <= 0:
            raise ConfigError(src, f"perturbation.{name}",
                              f"a factor must stay positive, but the distribution allows {dist.low}")
        perturbation[name] = dist
    return PopulationConfig(seed=seed, families=tuple(str(f) for f in families), robots_per_family=count,
                            perturbation=perturbation)


def perturbed_kinematics(nominal: Arm, length: np.ndarray, offset: np.ndarray, zero: np.ndarray) -> Arm:
    """``nominal`` with its kinematic perturbations: every joint origin's and the flange's translation scaled by
    ``length`` (dof + 1,) and shifted by ``offset`` (dof + 1, 3) m, every joint's zero moved by ``zero`` (dof,) rad;
    its ``parameters`` name them (``<joint>.link_length``, ``<joint>.offset_x``, ``<joint>.zero_offset``, the
    flange's as ``flange.*``)."""
    joints = tuple(
        replace(j, xyz=tuple(np.asarray(j.xyz) * length[i] + offset[i]), zero_offset=float(j.zero_offset + zero[i]))
        for i, j in enumerate(nominal.joints)
    )
    n = nominal.dof
    parameters = {}
    for i, name in enumerate([*(j.name for j in nominal.joints), "flange"]):
        parameters[f"{name}.link_length"] = float(length[i])
        parameters.update({f"{name}.offset_{a}": float(offset[i, k]) for k, a in enumerate("xyz")})
        if i < n:
            parameters[f"{name}.zero_offset"] = float(zero[i])
    return replace(nominal, joints=joints, flange_xyz=tuple(np.asarray(nominal.flange_xyz) * length[n] + offset[n]),
                   parameters=parameters)


def perturb(nominal: Arm, config: PopulationConfig, index: int) -> Arm:
    """Robot ``index`` of a family; depends only on (seed, family, index)."""
    rng = np.random.default_rng([config.seed, zlib.crc32(nominal.family.encode()), index])
    p = config.perturbation
    n = nominal.dof

    def draws(name: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.array([p[name].sample(rng) for _ in range(int(np.prod(shape)))]).reshape(shape)

    length = draws("link_length", (n + 1,))
    offset = draws("link_offset", (n + 1, 3))
    zero = draws("joint_zero_offset", (n,))
    mass = draws("link_mass", (n,))
    damping = draws("joint_damping", (n,))
    friction = draws("joint_friction", (n,))

    kinematic = perturbed_kinematics(nominal, length, offset, zero)
    links = tuple(replace(ln, mass=ln.mass * mass[i], inertia=tuple(np.asarray(ln.inertia) * mass[i]))
                  for i, ln in enumerate(nominal.links))
    parameters = dict(kinematic.parameters)
    for i, j in enumerate(nominal.joints):
        parameters.update({f"{j.child}.mass_factor": mass[i], f"{j.name}.damping_factor": damping[i],
                           f"{j.name}.friction_factor": friction[i]})
    return replace(
        kinematic,
        robot_id=f"{nominal.family}-{index:03d}",
        links=links,
        damping=tuple(np.asarray(nominal.damping) * damping),
        friction=tuple(np.asarray(nominal.friction) * friction),
        parameters={k: float(v) for k, v in parameters.items()},
    )


@dataclass(frozen=True)
class Population:
    robots: tuple[Arm, ...]
    config: PopulationConfig

    def __len__(self) -> int:
        return len(self.robots)

    def __iter__(self) -> Iterator[Arm]:
        return iter(self.robots)

    @property
    def ids(self) -> list[str]:
        return [r.robot_id for r in self.robots]

    def get(self, robot_id: str) -> Arm:
        for robot in self.robots:
            if robot.robot_id == robot_id:
                return robot
        raise KeyError(f"no robot '{robot_id}' in this population (ids run like {', '.join(self.ids[:3])}, …)")

    def family(self, name: str) -> list[Arm]:
        return [r for r in self.robots if r.family == name]

    @property
    def family_names(self) -> list[str]:
        """The families' names (a family file's own name, not its path), in order."""
        return list(dict.fromkeys(r.family for r in self.robots))

    def select(self, robot_ids: Sequence[str]) -> Population:
        return Population(tuple(self.get(i) for i in robot_ids), self.config)


def generate(config: PopulationConfig, progress: bool = False) -> Population:
    """All robots of a config, family by family, in id order."""
    total = len(config.families) * config.robots_per_family
    robots = []
    with progress_bar(total=total, desc="robots", unit="robot", disable=not progress) as bar:
        for name in config.families:
            nominal = load_family(name)
            for index in range(config.robots_per_family):
                robots.append(perturb(nominal, config, index))
                bar.update()
    return Population(tuple(robots), config)


def _config_to_dict(config: PopulationConfig) -> dict:
    return {"seed": config.seed, "families": list(config.families), "robots_per_family": config.robots_per_family,
            "perturbation": {k: vars(d) for k, d in config.perturbation.items()}}


def save(population: Population, path: str | Path) -> Path:
    """Write a population as JSON, atomically (a crash never leaves half a file)."""
    payload = {"format": FILE_FORMAT, "version": FILE_VERSION, "config": _config_to_dict(population.config),
               "robots": [r.to_dict() for r in population.robots]}
    return write_atomic(path, json.dumps(payload))


def load(path: str | Path) -> Population:
    src = Path(path)
    if not src.is_file():
        raise ConfigError(src, None, "population file not found")
    try:
        data = json.loads(src.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(src, None, f"not a population file (invalid JSON: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
        raise ConfigError(src, "format", f"not a population file (expected format '{FILE_FORMAT}')")
    if data.get("version") != FILE_VERSION:
        raise ConfigError(src, "version", f"unsupported version {data.get('version')!r} (this reader: {FILE_VERSION})")
    try:
        raw = data["config"]
        config = PopulationConfig(seed=raw["seed"], families=tuple(raw["families"]),
                                  robots_per_family=raw["robots_per_family"],
                                  perturbation={k: Distribution(**d) for k, d in raw["perturbation"].items()})
        robots = tuple(Arm.from_dict(r) for r in data["robots"])
    except (KeyError, TypeError) as exc:
        raise ConfigError(src, "robots", f"malformed population entry: {exc}") from None
    ids = [r.robot_id for r in robots]
    if len(set(ids)) != len(ids):
        raise ConfigError(src, "robots", "robot ids are not unique")
    return Population(robots, config)
