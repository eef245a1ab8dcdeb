"""Command-line values checked like config fields: a kind, a range, a limit and why, refused in one line.

An option that sets what a config field sets takes the field's kind and range (:func:`like`); any other number
option declares its own (:func:`bounded`). ``argparse`` then refuses a bad value naming the option, e.g.
``argument --steps: must be <= 1000000 (more steps would run for weeks), got 1000000000``. Numbers may be
written as ``1e6``.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mtrl_robot.core.config import SEED, Limit, Rule, config_from_overrides, read_value, rule_of, setting
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.distributed.compute import ComputeConfig

RUNS = Path("runs")  # where commands write by default
EPISODES = Limit(1_000_000, "each episode is printed (and logged, and applied to a simulator)")


def bounded(kind: type, *, minimum: float | None = None, above: float | None = None,
            maximum: Limit | None = None) -> Callable[[str], Any]:
    """The ``type=`` of a number option: ``kind`` within the range, at most ``maximum`` (which says why)."""
    return _reader(kind, Rule(minimum=minimum, above=above, maximum=maximum.value if maximum else None,
                              why=maximum.why if maximum else ""))


def like(config: type, name: str) -> Callable[[str], Any]:
    """The ``type=`` of an option that sets what the field ``name`` of the config dataclass ``config`` sets."""
    field = next(f for f in dataclasses.fields(config) if f.name == name)
    return _reader(typing.get_type_hints(config)[name], rule_of(field))


def seed() -> Callable[[str], int]:
    """The ``type=`` of a ``--seed`` option: a 32-bit seed, as every config's seed field."""
    return bounded(int, minimum=0, maximum=SEED)


@dataclasses.dataclass(frozen=True)
class ComputeSection:
    """What ``--set`` sets on a command that reads no preset (an evaluation): the ``compute`` section."""

    compute: ComputeConfig = setting(ComputeConfig)


def existing(path: Path, what: str) -> Path:
    """``path``, which must exist, else one line naming it as ``what`` it should be: checked before a command loads
    torch, so that a mistyped path is named at once."""
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, f"no such {what}", str(path))
    return path


def add_compute_option(parser: argparse.ArgumentParser) -> None:
    """``--set compute.FIELD=VALUE`` (repeatable), read by :func:`compute_of`."""
    parser.add_argument("--set", action="append", default=[], metavar="compute.FIELD=VALUE",
                        help="where it computes, e.g. --set compute.backend=ray --set compute.address=auto "
                             "(repeatable; fields: workers, threads, backend, address)")


def compute_of(args: argparse.Namespace) -> ComputeConfig:
    """The compute setting of a command with :func:`add_compute_option`; ``ConfigError`` naming a bad field."""
    return config_from_overrides(ComputeSection, args.set).compute


class Unique(argparse.Action):
    """``nargs`` values that must not repeat (e.g. ``--families panda panda``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Sequence[Any],
                 option_string: str | None = None) -> None:
        repeated = sorted({v for v in values if list(values).count(v) > 1})
        if repeated:
            raise argparse.ArgumentError(self, f"repeated {', '.join(map(str, repeated))}: each may appear once")
        setattr(namespace, self.dest, list(values))


def _reader(kind: type, rule: Rule) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        try:
            return read_value(kind, text, rule)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(exc.problem) from None

    read.__name__ = kind.__name__
    return read
