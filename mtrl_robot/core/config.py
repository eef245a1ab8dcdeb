"""Reading YAML files with errors that name the file, the field and the problem."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mtrl_robot.core.errors import ConfigError


def load_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, None, "file not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(path, None, f"malformed YAML: {where}{getattr(exc, 'problem', exc)}") from None


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
