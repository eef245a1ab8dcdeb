"""Typed YAML configs: a file read into frozen dataclasses, with errors that name the file, the field and the problem.

A config is a frozen dataclass. Each field's annotation gives its type (``int``, ``float``, ``bool``, ``str``,
``X | None``, ``tuple[X, ...]`` or ``tuple[X, X]``, ``dict[str, X]``, a nested config dataclass) and
:func:`setting` declares beside it what the field means, its range and its choices::

    @dataclass(frozen=True)
    class MetaConfig:
        inner_steps: int = setting(5, "gradient steps of the inner loop", minimum=0, maximum=INNER_STEPS)
        variant: str = setting("maml", "the meta-gradient", choices=("maml", "first_order"))

``maximum`` is a size beyond which a run cannot hold, given as a :class:`Limit` that says why.

:func:`load_config` reads one such config from a YAML file (or from one named section of a file that holds
several), with

- ``base: <name or path>``: take every field the file does not set from another preset — a file of the same folder
  (``base: small`` is ``small.yaml`` beside it) or, in a file of sections, another section; ``name`` is not
  inherited;
- overrides ``field=value`` or ``section.field=value`` (``--set`` on the command line), the value read as YAML and
  checked like the file's own values;
- every problem raised as one :class:`ConfigError` naming the file (``--set`` for an override) and the dotted field:
  unknown fields (naming the allowed ones), missing required fields, wrong types, NaN and ±inf, values out of range
  or beyond what a run can hold, values outside the choices. A float or int field also takes the strings PyYAML
  leaves unparsed, such as ``1e-3``, as the number they spell.

A dataclass may check its own fields together in ``__post_init__`` by raising ``ConfigError(None, field, problem)``
(or ``ValueError``); the loader adds the file and the section's dotted path. The small readers below it
(:func:`load_yaml`, :func:`mapping`, :func:`number`, :func:`vector`, :func:`unknown_keys`) serve files whose shape is
not a fixed set of fields.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import yaml

from mtrl_robot.core.errors import ConfigError

T = TypeVar("T")
OVERRIDE = "--set"  # the source named by errors in an override's value


class Limit(NamedTuple):
    """The most a run can hold of something, and why."""

    value: float
    why: str


# Sizes shared by the learners' presets; beyond these a run exhausts memory or never finishes.
WIDTH = Limit(10_000, "a wider layer's weights, gradients and optimizer state do not fit in memory")
STEPS = Limit(1_000_000, "more steps would run for weeks")
INNER_STEPS = Limit(1_000, "the meta-gradient keeps every inner step in memory")
PROCESSES = Limit(256, "more than the cores of any one machine")
ROBOTS = Limit(10_000, "every robot's parameters (and demonstrations) are made and held in memory")
SEED = Limit(2**32 - 1, "seeds are 32-bit")

_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")  # 1e-3, 5., -.5E+2: what users mean


@dataclasses.dataclass(frozen=True)
class Rule:
    """What :func:`setting` declares about a field: its meaning, range (applied to each item of a tuple) and choices."""

    doc: str = ""
    minimum: float | None = None  # inclusive
    above: float | None = None  # exclusive lower bound
    maximum: float | None = None  # inclusive; a size beyond what a run can hold
    why: str = ""  # why ``maximum``
    choices: tuple[Any, ...] = ()


def setting(default: Any = dataclasses.MISSING, doc: str = "", *, minimum: float | None = None,
            above: float | None = None, maximum: float | Limit | None = None, why: str = "",
            choices: Sequence[Any] = ()) -> Any:
    """A dataclass field with its documentation, range and choices; no ``default`` makes it required.

    ``maximum`` may be a :class:`Limit`, which brings its own ``why``.
    A nested config dataclass as ``default`` is built anew for each instance; so is a ``dict`` default.
    """
    if isinstance(maximum, Limit):
        maximum, why = maximum
    rule = Rule(doc, minimum, above, maximum, why, tuple(choices))
    metadata = {"config": rule}
    if isinstance(default, dict) or (dataclasses.is_dataclass(default) and isinstance(default, type)):
        factory = default if isinstance(default, type) else lambda: dict(default)
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def rule_of(field: dataclasses.Field) -> Rule:
    return field.metadata.get("config", Rule())


def load_config(cls: type[T], path: str | Path, *, section: str | None = None, overrides: Sequence[str] = (),
                given: Mapping[str, Any] | None = None, check: Callable[[T], None] | None = None) -> T:
    """The ``cls`` config of ``path`` (or of its ``section``), after ``base:`` and ``overrides``.

    ``given`` holds values for fields the preset does not set itself (e.g. its name from the file name); ``check``
    tests fields together after the build (raising ``ConfigError(None, field, problem)``, named after ``path``).
    """
    path = Path(path)
    raw, origins = _resolve(path, section)
    prefix = section or ""
    for override in overrides:
        key = _apply_override(cls, raw, override, path, prefix)
        origins[_join(prefix, key)] = OVERRIDE
    for name, value in (given or {}).items():
        raw.setdefault(name, value)
    origin = _Origins(origins, path)
    config = _build(cls, raw, origin, prefix)
    if check is not None:
        with _naming(origin, prefix):
            check(config)
    return config


def config_from_overrides(cls: type[T], overrides: Sequence[str]) -> T:
    """The ``cls`` config of its defaults and ``overrides`` (``field=value`` or ``section.field=value``, as
    ``--set`` gives them), checked like a file's values."""
    raw: dict[str, Any] = {}
    for override in overrides:
        _apply_override(cls, raw, override, Path(OVERRIDE), "")
    return _build(cls, raw, _Origins({}, OVERRIDE), "")


def config_from_dict(cls: type[T], data: Any, source: str | Path = "<checkpoint>") -> T:
    """A config saved with :func:`config_to_dict` (e.g. in a checkpoint), checked like a file."""
    return _build(cls, data, _Origins({}, source), "")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain dicts, lists, numbers and strings: fit for YAML, JSON and ``weights_only`` checkpoints."""
    return _plain(dataclasses.asdict(config))


# ---------------------------------------------------------------------------------------------- files and base:

def _resolve(path: Path, section: str | None) -> tuple[dict[str, Any], dict[str, str | Path]]:
    """The raw preset after following ``base:``, and which file each dotted field came from."""
    if section is not None:
        sections = mapping(load_yaml(path), path, "")
        chain, name = [], section
        while name not in chain:
            chain.append(name)
            if name not in sections:
                where = f"{chain[-2]}.base" if len(chain) > 1 else "preset"
                raise ConfigError(path, where, f"unknown preset '{name}' (known: {', '.join(map(str, sections))})")
            name = mapping(sections[name], path, name).get("base", name)
        if name != chain[-1]:
            raise ConfigError(path, f"{chain[-1]}.base", f"presets inherit in a cycle: {' → '.join(chain + [name])}")
        layers = [(path, section, dict(sections[n])) for n in reversed(chain)]
    else:
        layers, seen = [], []
        while True:
            seen.append(path.resolve())
            data = dict(mapping(load_yaml(path), path, ""))
            layers.insert(0, (path, "", data))
            if "base" not in data:
                break
            base = data["base"]
            if not isinstance(base, str) or not base:
                raise ConfigError(path, "base", f"expected a preset name or path, got {base!r}")
            following = Path(base) if Path(base).suffix in (".yaml", ".yml") else Path(f"{base}.yaml")
            following = following if following.is_absolute() else path.parent / following
            if following.resolve() in seen:
                raise ConfigError(path, "base", f"presets inherit in a cycle: {' → '.join(str(p) for p in seen)} "
                                                f"→ {following}")
            if not following.is_file():
                raise ConfigError(path, "base", f"no preset '{base}' ({following} does not exist)")
            path = following
    raw: dict[str, Any] = {}
    origins: dict[str, str | Path] = {}
    for i, (source, prefix, data) in enumerate(layers):
        data.pop("base", None)
        if i < len(layers) - 1:
            data.pop("name", None)  # a preset's name is its own
        _merge(raw, data, source, prefix, origins)
    return raw, origins


def _merge(into: dict[str, Any], data: Mapping[str, Any], source: str | Path, prefix: str,
           origins: dict[str, str | Path]) -> None:
    """``data`` over ``into``, mapping into mapping; lists and values replace."""
    for key, value in data.items():
        where = _join(prefix, str(key))
        origins[where] = source
        if isinstance(value, Mapping) and isinstance(into.get(key), Mapping):
            into[key] = dict(into[key])
            _merge(into[key], value, source, where, origins)
        else:
            into[key] = _copy(value)


def _copy(value: Any) -> Any:
    return {k: _copy(v) for k, v in value.items()} if isinstance(value, Mapping) else value


def _apply_override(cls: type, raw: dict[str, Any], override: str, source: Path, prefix: str) -> str:
    """Set the field ``key`` of ``key=value`` in ``raw`` to the YAML value; returns ``key``."""
    key, sep, text = override.partition("=")
    key = key.strip()
    parts = key.split(".")
    sections = [f.name for f in dataclasses.fields(cls) if dataclasses.is_dataclass(_hint(cls, f.name))]
    form = "section.field=value" if sections else "field=value"
    if not sep or not all(parts):
        raise ConfigError(OVERRIDE, _join(prefix, key or override), f"an override reads {form}, got {override!r}")
    kind: Any = cls
    for depth, part in enumerate(parts):
        where = _join(prefix, ".".join(parts[:depth + 1]))
        kind = _optional(kind)[0]
        if dataclasses.is_dataclass(kind):
            names = [f.name for f in dataclasses.fields(kind)]
            if part not in names:
                if depth == 0 and depth < len(parts) - 1 and sections:
                    raise ConfigError(OVERRIDE, _join(prefix, key),
                                      f"unknown section '{part}' (known: {', '.join(sections)})")
                hint = f"; an override reads {form}" if depth == 0 and sections else ""
                raise ConfigError(OVERRIDE, where, f"unknown field (allowed: {', '.join(names)}){hint}")
            kind = _hint(kind, part)
        elif typing.get_origin(kind) is dict:
            kind = typing.get_args(kind)[1]
        else:
            raise ConfigError(OVERRIDE, where, "has no fields to set")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(OVERRIDE, _join(prefix, key),
                          f"the override's value {text!r} is not YAML ({_yaml_problem(exc)})") from None
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is not None and not isinstance(child, Mapping):
            raise ConfigError(source, _join(prefix, ".".join(parts[:depth + 1])),
                              f"expected a mapping, got {type(child).__name__}")
        node[part] = dict(child or {})
        node = node[part]
    node[parts[-1]] = value
    return key


# ---------------------------------------------------------------------------------------------- building

class _Origins:
    """The file each dotted field came from (the longest known prefix), else the preset's own file."""

    def __init__(self, origins: Mapping[str, str | Path], default: str | Path):
        self.origins, self.default = origins, default

    def __call__(self, where: str) -> str | Path:
        while where:
            if where in self.origins:
                return self.origins[where]
            where = where[:where.rindex("[")] if where.endswith("]") else where.rpartition(".")[0]
        return self.default


@contextlib.contextmanager
def _naming(origin: _Origins, prefix: str) -> Iterator[None]:
    """``ConfigError(None, field, …)`` and ``ValueError`` raised inside get the ``prefix`` and the field's file."""
    try:
        yield
    except ConfigError as exc:
        if exc.source is not None:
            raise
        where = _join(prefix, exc.field or "")
        raise ConfigError(origin(where), where, exc.problem) from None
    except ValueError as exc:
        raise ConfigError(origin(prefix), prefix, str(exc)) from None


def _build(cls: type[T], raw: Any, origin: _Origins, prefix: str) -> T:
    raw = mapping(raw if raw is not None else {}, origin(prefix), prefix)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            raise ConfigError(origin(_join(prefix, str(key))), _join(prefix, str(key)),
                              f"unknown field (allowed: {', '.join(names)})")
    values = {}
    for f in dataclasses.fields(cls):
        where = _join(prefix, f.name)
        if f.name in raw:
            values[f.name] = _value(_hint(cls, f.name), raw[f.name], rule_of(f), origin, where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(origin(where), where, "required field is missing")
    with _naming(origin, prefix):
        return cls(**values)


def _value(kind: Any, value: Any, rule: Rule, origin: _Origins, where: str) -> Any:
    """``value`` converted to ``kind`` and checked against ``rule``."""
    kind, optional = _optional(kind)
    if value is None and optional:
        return None
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, origin, where)
    origin_kind, args = typing.get_origin(kind), typing.get_args(kind)
    if origin_kind is dict:
        items = mapping(value, origin(where), where)
        for key in items:
            if not isinstance(key, str) or not key:
                raise ConfigError(origin(where), where, f"expected names as keys, got {key!r}")
        return {key: _value(args[1], item, rule, origin, f"{where}.{key}") for key, item in items.items()}
    if origin_kind is tuple:
        variable = len(args) == 2 and args[1] is Ellipsis
        length = "" if variable else f"{len(args)} "
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or \
                (not variable and len(value) != len(args)):
            raise ConfigError(origin(where), where, f"expected a list of {length}{_noun(args[0])}, got {value!r}")
        return tuple(_value(args[0] if variable else args[i], item, rule, origin, f"{where}[{i}]")
                     for i, item in enumerate(value))
    value = _scalar(kind, value, origin(where), where)
    _obeys(value, rule, origin(where), where)
    return value


def _scalar(kind: type, value: Any, source: str | Path, where: str) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, where, f"expected true or false, got {value!r}")
        return value
    if kind is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(source, where, f"expected a non-empty string, got {value!r}")
        return value
    if kind in (int, float):
        number_ = value
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            number_ = float(value)
        if isinstance(number_, bool) or not isinstance(number_, (int, float)):
            raise ConfigError(source, where, f"expected {'an integer' if kind is int else 'a number'}, got {value!r}")
        if isinstance(number_, float) and not math.isfinite(number_):
            raise ConfigError(source, where, f"must be finite, got {value!r}")
        if kind is float:
            return float(number_)
        if isinstance(number_, float):
            if not number_.is_integer():
                raise ConfigError(source, where, f"expected an integer, got {value!r}")
            return int(number_)
        return number_
    raise TypeError(f"{where}: no reader for fields of type {kind!r}")


def read_value(kind: type, value: Any, rule: Rule, where: str = "") -> Any:
    """``value`` (a number, or a string that spells one) read as ``kind`` and checked against ``rule``, as a file's
    field would be; raises ``ConfigError(None, where, problem)``."""
    value = _scalar(kind, value, None, where)
    _obeys(value, rule, None, where)
    return value


def check_settings(config: Any) -> None:
    """``config``'s numbers and choices against their settings, for an instance built in code (e.g. by
    ``dataclasses.replace``); raises ``ConfigError(None, field, problem)``."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        items = enumerate(value) if isinstance(value, tuple) else [(None, value)]
        for i, item in items:
            where = f.name if i is None else f"{f.name}[{i}]"
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(None, where, f"must be finite, got {item!r}")
            _obeys(item, rule_of(f), None, where)


def _obeys(value: Any, rule: Rule, source: str | Path | None, where: str) -> None:
    """``value`` among ``rule``'s choices and, if a number, in its range."""
    if rule.choices and value not in rule.choices:
        raise ConfigError(source, where, f"expected one of {', '.join(map(str, rule.choices))}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _in_range(value, rule, source, where)


def _in_range(value: float, rule: Rule, source: str | Path | None, where: str) -> None:
    if rule.above is not None and not value > rule.above:
        raise ConfigError(source, where, f"must be > {_plain_number(rule.above)}, got {value}")
    if rule.minimum is not None and not value >= rule.minimum:
        raise ConfigError(source, where, f"must be >= {_plain_number(rule.minimum)}, got {value}")
    if rule.maximum is not None and not value <= rule.maximum:
        why = f" ({rule.why})" if rule.why else ""
        raise ConfigError(source, where, f"must be <= {_plain_number(rule.maximum)}{why}, got {value}")


def _optional(kind: Any) -> tuple[Any, bool]:
    """``X`` and True for ``X | None``; ``kind`` and False otherwise."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1 and len(args) < len(typing.get_args(kind)):
            return args[0], True
    return kind, False


def _hint(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _noun(kind: Any) -> str:
    return {int: "integers", float: "numbers", str: "names", bool: "true/false values"}.get(kind, "items")


def _plain_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------- small readers

def load_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, None, "file not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, f"malformed YAML: {_yaml_problem(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, f"unreadable: {exc}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error in one line: where and what."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return where + " ".join(str(getattr(exc, "problem", None) or exc).split())


def mapping(value: Any, source: str | Path | None, field: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ConfigError(source, field, f"expected a mapping, got {type(value).__name__}")
    return value


def number(value: Any, source: str | Path | None, field: str, *, positive: bool = False,
           non_negative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(source, field, f"expected a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(source, field, f"must be finite, got {value}")
    if positive and value <= 0:
        raise ConfigError(source, field, f"must be positive, got {value}")
    if non_negative and value < 0:
        raise ConfigError(source, field, f"must not be negative, got {value}")
    return value


def vector(value: Any, length: int, source: str | Path | None, field: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != length:
        raise ConfigError(source, field, f"expected a list of {length} numbers, got {value!r}")
    return tuple(number(v, source, f"{field}[{i}]") for i, v in enumerate(value))


def unknown_keys(data: Mapping, allowed: set[str], source: str | Path | None, field: str) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        prefix = f"{field}." if field else ""
        raise ConfigError(source, f"{prefix}{extra[0]}",
                          f"unknown field (allowed: {', '.join(sorted(allowed))})")
