"""Domain randomization: the YAML spec, seeded sampling, and a log of what was sampled.

A spec names parameters of the simulated world (see :data:`PARAMETERS`), a distribution for each, and
whether the draw is absolute, relative to the nominal value, or relative to another parameter's draw.
Backends apply a sample in place (:meth:`SimBackend.apply_randomization`); this module only decides
the numbers, so the same seed gives the same numbers whatever engine runs them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtrl_robot.core.config import load_yaml, mapping, number, unknown_keys, vector
from mtrl_robot.core.errors import ConfigError


@dataclass(frozen=True)
class Parameter:
    description: str
    unit: str
    lower_bound: float  # physical lower bound of the value (inclusive unless strict)
    strict: bool = False  # value must be strictly above lower_bound


PARAMETERS: dict[str, Parameter] = {
    "puck.friction.slide_x": Parameter("sliding friction along the puck's x axis", "", 0.0),
    "puck.friction.slide_y": Parameter("sliding friction along the puck's y axis", "", 0.0),
    "puck.friction.torsional": Parameter("torsional (spinning) friction", "m", 0.0),
    "puck.friction.roll_x": Parameter("rolling friction about the puck's x axis", "m", 0.0),
    "puck.friction.roll_y": Parameter("rolling friction about the puck's y axis", "m", 0.0),
    "puck.mass": Parameter("puck mass", "kg", 0.0, strict=True),
    "puck.offset_x": Parameter("initial puck position offset along x", "m", -math.inf),
    "puck.offset_y": Parameter("initial puck position offset along y", "m", -math.inf),
    "arm.damping_scale": Parameter("factor on every joint's damping", "", 0.0),
    "arm.friction_scale": Parameter("factor on every joint's friction loss", "", 0.0),
    "arm.mass_scale": Parameter("factor on every link's mass", "", 0.0, strict=True),
}
ARM_PARAMETERS = ("arm.damping_scale", "arm.friction_scale", "arm.mass_scale")  # nominal 1.0 on every robot
DISTRIBUTIONS = ("uniform", "log_uniform", "normal")
WHEN = ("episode", "reset")


def check_sample(sample: Mapping[str, float], supported: Iterable[str]) -> None:
    """Refuse unknown names, parameters this world lacks, and unphysical values, before anything is applied."""
    unknown = sorted(set(sample) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"unknown randomization parameters {unknown} (known: {', '.join(PARAMETERS)})")
    unsupported = sorted(set(sample) - set(supported))
    if unsupported:
        raise ValueError(f"parameters {unsupported} need the puck scene; this backend was built without one")
    for name, value in sample.items():
        bound = PARAMETERS[name]
        if not math.isfinite(value) or value < bound.lower_bound or (bound.strict and value <= bound.lower_bound):
            raise ValueError(f"{name} = {value} is not allowed ({bound.description} must be "
                             f"{'>' if bound.strict else '≥'} {bound.lower_bound})")


@dataclass(frozen=True)
class Distribution:
    """One scalar distribution; ``low``/``high`` bound uniform draws or clip normal ones."""

    kind: str
    low: float = 0.0
    high: float = 0.0
    mean: float = 0.0
    std: float = 0.0

    def sample(self, rng: np.random.Generator) -> float:
        if self.kind == "uniform":
            return float(rng.uniform(self.low, self.high))
        if self.kind == "log_uniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(np.clip(rng.normal(self.mean, self.std), self.low, self.high))

    @property
    def support(self) -> tuple[float, float]:
        return self.low, self.high

    def moments(self) -> tuple[float, float]:
        """Mean and standard deviation of the draws (a clipped normal's as if unclipped)."""
        if self.kind == "uniform":
            return (self.low + self.high) / 2, (self.high - self.low) / math.sqrt(12.0)
        if self.kind == "log_uniform":
            a, b = math.log(self.low), math.log(self.high)
            if b == a:
                return self.low, 0.0
            mean = (self.high - self.low) / (b - a)
            return mean, math.sqrt(max((self.high**2 - self.low**2) / (2 * (b - a)) - mean**2, 0.0))
        return self.mean, self.std


def parse_distribution(raw: object, source: str | Path | None, field: str,
                       extra_fields: set[str] = frozenset()) -> Distribution:
    """Read ``{distribution, range}`` or ``{distribution: normal, mean, std, clip}``."""
    raw = mapping(raw, source, field)
    unknown_keys(raw, {"distribution", "range", "mean", "std", "clip"} | set(extra_fields), source, field)
    kind = raw.get("distribution", "uniform")
    if kind not in DISTRIBUTIONS:
        raise ConfigError(source, f"{field}.distribution",
                          f"unknown distribution '{kind}' (use {', '.join(DISTRIBUTIONS)})")
    if kind == "normal":
        if "mean" not in raw or "std" not in raw:
            raise ConfigError(source, field, "a normal distribution needs 'mean' and 'std'")
        mean = number(raw["mean"], source, f"{field}.mean")
        std = number(raw["std"], source, f"{field}.std", non_negative=True)
        low, high = vector(raw["clip"], 2, source, f"{field}.clip") if "clip" in raw else (-math.inf, math.inf)
        if low > high:
            raise ConfigError(source, f"{field}.clip", f"min {low} is greater than max {high}")
        return Distribution(kind, low=low, high=high, mean=mean, std=std)
    if "range" not in raw:
        raise ConfigError(source, f"{field}.range", f"a {kind} distribution needs 'range: [low, high]'")
    low, high = vector(raw["range"], 2, source, f"{field}.range")
    if low > high:
        raise ConfigError(source, f"{field}.range", f"min {low} is greater than max {high}")
    if kind == "log_uniform" and low <= 0:
        raise ConfigError(source, f"{field}.range", f"log_uniform needs a positive range, got [{low}, {high}]")
    return Distribution(kind, low=low, high=high)


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    distribution: Distribution
    relative_to: str | None  # None: absolute; "nominal"; or another parameter's name
    when: str


@dataclass(frozen=True)
class RandomizationSpec:
    parameters: tuple[ParameterSpec, ...]  # in dependency order
    source: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)


def load_spec(path: str | Path) -> RandomizationSpec:
    return parse_spec(load_yaml(path), source=path)


def parse_spec(data: object, source: str | Path | None = None) -> RandomizationSpec:
    """Validate a spec: known parameters, sane ranges, physically possible values, no cycles."""
    data = mapping(data, source, "")
    unknown_keys(data, {"parameters"}, source, "")
    params = mapping(data.get("parameters", {}), source, "parameters")
    specs: dict[str, ParameterSpec] = {}
    for name, raw in params.items():
        field = f"parameters.{name}"
        if name not in PARAMETERS:
            raise ConfigError(source, field, f"unknown parameter (known: {', '.join(PARAMETERS)})")
        dist = parse_distribution(raw, source, field, extra_fields={"relative_to", "when"})
        relative_to = raw.get("relative_to")
        if relative_to is not None and relative_to != "nominal" and relative_to not in params:
            raise ConfigError(source, f"{field}.relative_to",
                              f"'{relative_to}' is neither 'nominal' nor a parameter of this spec")
        when = raw.get("when", "episode")
        if when not in WHEN:
            raise ConfigError(source, f"{field}.when", f"'{when}' is not one of {', '.join(WHEN)}")
        _check_physical(name, dist, relative_to, source, field)
        specs[name] = ParameterSpec(name, dist, relative_to, when)
    return RandomizationSpec(tuple(_dependency_order(specs, source)), str(source) if source else None)


def _check_physical(name: str, dist: Distribution, relative_to: str | None, source, field: str) -> None:
    """Refuse distributions that can produce unphysical values (negative mass or friction)."""
    bound = PARAMETERS[name]
    if bound.lower_bound == -math.inf:
        return
    # A relative draw multiplies a non-negative value, so the factor itself must respect the bound 0.
    low = dist.low
    floor = 0.0 if relative_to else bound.lower_bound
    if low < floor or (bound.strict and low <= floor):
        what = "factor" if relative_to else "value"
        raise ConfigError(source, field, f"{bound.description} must be {'>' if bound.strict else '≥'} {floor}, "
                          f"but the distribution allows a {what} of {low} (add or fix range/clip)")


def _dependency_order(specs: dict[str, ParameterSpec], source) -> list[ParameterSpec]:
    ordered: list[ParameterSpec] = []
    state: dict[str, str] = {}

    def visit(name: str) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise ConfigError(source, f"parameters.{name}.relative_to", "relative_to forms a cycle")
        state[name] = "visiting"
        dep = specs[name].relative_to
        if dep and dep != "nominal":
            visit(dep)
        state[name] = "done"
        ordered.append(specs[name])

    for name in specs:
        visit(name)
    return ordered


class Randomizer:
    """Seeded sampler over a spec; keeps reset-level draws between episodes."""

    def __init__(self, spec: RandomizationSpec, nominal: Mapping[str, float], seed: int = 0):
        missing = [p.name for p in spec.parameters if p.relative_to == "nominal" and p.name not in nominal]
        if missing:
            raise ValueError(f"no nominal value for {missing}")
        self.spec = spec
        self.nominal = dict(nominal)
        self.rng = np.random.default_rng(seed)
        self._held: dict[str, float] = {}

    def sample(self, event: str = "episode") -> dict[str, float]:
        """Values for a new episode (``event='episode'``) or a full reset (``'reset'``, redraws all)."""
        if event not in WHEN:
            raise ValueError(f"event must be one of {WHEN}, got {event!r}")
        values: dict[str, float] = {}
        for p in self.spec.parameters:
            if p.when == "reset" and event == "episode" and p.name in self._held:
                values[p.name] = self._held[p.name]
                continue
            draw = p.distribution.sample(self.rng)
            if p.relative_to == "nominal":
                draw *= self.nominal[p.name]
            elif p.relative_to:
                draw *= values[p.relative_to]
            values[p.name] = draw
            if p.when == "reset":
                self._held[p.name] = draw
        return values


class SampleLog:
    """Appends each episode's sampled values to a JSON-lines file, one flushed line per episode."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, episode: int, values: Mapping[str, float], **extra) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"episode": episode, **extra, "values": dict(values)}) + "\n")
