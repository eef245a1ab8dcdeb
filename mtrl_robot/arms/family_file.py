"""User family files: an arm family defined by a URDF, for an arm that is not one of the built-in families.

A family file is a small YAML (``mtrl-robot arm init`` writes a first one)::

    family: my_arm            # the family's name in populations, robot ids, checkpoints (default: the file's stem)
    description: My arm       # a display name (default: the URDF's robot name)
    urdf: my_arm.urdf         # relative to this file
    base_link: base_link      # default: the URDF's root link
    flange_link: tool0
    home: [0, 0.6, 0, -1.2, 0, 0.8, 0]   # default: chosen (see mtrl_robot.arms.home)
    limits:                   # per joint, replacing the URDF's; each with where the numbers come from
      joint_1: {velocity: 1.71, acceleration: 10, jerk: 500, effort: 320, source: "maker's data sheet"}

Continuous joints need ``lower`` and ``upper`` here; a joint needs a velocity and an effort limit from the URDF or
from here. Every problem raises :class:`ConfigError` naming this file (or the URDF) and the field.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Collection
from pathlib import Path

import numpy as np

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.home import HOME_MARGIN, HomeChoice, check_home, choose_home
from mtrl_robot.arms.ik import TARGET_SPREAD
from mtrl_robot.arms.urdf import (
    MAX_EFFORT,
    MAX_POSITION_LIMIT,
    MAX_VELOCITY,
    LimitOverride,
    chain_joint_types,
    load_urdf_arm,
    placeholder_limits,
    urdf_limits,
)
from mtrl_robot.core.config import load_yaml, mapping, number, unknown_keys, vector
from mtrl_robot.core.errors import ConfigError

FAMILY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # used in robot ids (<family>-<index>) and file names
SUFFIXES = (".yaml", ".yml")
_TOP_FIELDS = {"family", "description", "urdf", "base_link", "flange_link", "home", "limits"}
_BOUNDS = {"velocity": (MAX_VELOCITY, "rad/s"), "acceleration": (1e4, "rad/s²"), "jerk": (1e7, "rad/s³"),
           "effort": (MAX_EFFORT, "N·m")}  # beyond any real arm
HOME_SEED = 0  # the seed of the chosen home: a family file without a home always gets the same one

_log = logging.getLogger(__name__)


def is_family_file(spec: str | Path) -> bool:
    """Whether ``spec`` names a family file (a path: a YAML suffix or a folder in it) rather than a built-in name."""
    text = str(spec)
    return isinstance(spec, Path) or text.endswith(SUFFIXES) or "/" in text or "\\" in text


def load_user_family(path: str | Path) -> Arm:
    """The nominal robot of the family file at ``path``."""
    src = Path(path)
    data = load_yaml(src)
    data = mapping({} if data is None else data, src, "")
    unknown_keys(data, _TOP_FIELDS, src, "")
    for key in ("urdf", "flange_link"):
        if key not in data:
            raise ConfigError(src, key, "required field is missing")
    family = data.get("family", src.stem)
    if not isinstance(family, str) or not FAMILY_NAME.fullmatch(family):
        raise ConfigError(src, "family", f"{family!r} is not a family name: a letter, then letters, digits or _ "
                          "(it becomes part of robot ids and file names)")
    urdf = data["urdf"]
    if not isinstance(urdf, str) or not urdf:
        raise ConfigError(src, "urdf", f"expected the URDF's path, got {urdf!r}")
    urdf_path = src.parent / urdf
    if not urdf_path.is_file():
        raise ConfigError(src, "urdf", f"no URDF at {urdf_path}")
    links = {}
    for key in ("base_link", "flange_link"):
        if key in data and (not isinstance(data[key], str) or not data[key]):
            raise ConfigError(src, key, f"expected a link name, got {data[key]!r}")
        links[key] = data.get(key)
    overrides = _limits(data.get("limits") or {}, src)
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise ConfigError(src, "description", f"expected text, got {description!r}")
    arm = urdf_family(urdf_path, links["flange_link"], links["base_link"], family, overrides,
                      data.get("home"), src)
    return arm.with_changes(description=description) if description else arm


def urdf_family(urdf: str | Path, flange_link: str, base_link: str | None = None, family: str | None = None,
                overrides: dict[str, LimitOverride] | None = None, home: object = None,
                source: str | Path | None = None) -> Arm:
    """A family from a URDF: its chain with ``overrides``, and ``home`` checked or, when None, chosen.

    ``source`` (the family file, if any) is what errors about the overrides and the home name."""
    source = source or urdf
    overrides = overrides or {}
    arm = load_urdf_arm(urdf, flange_link, base_link=base_link, family=family, overrides=overrides)
    unknown = sorted(set(overrides) - set(arm.joint_names))
    if unknown:
        raise ConfigError(source, f"limits.{unknown[0]}", f"not a joint between '{arm.base_link}' and "
                          f"'{arm.flange_link}' (those are {', '.join(arm.joint_names)})")
    if home is None:
        choice = choose_home(arm, HOME_SEED)
        _log.info("%s: no home given; chose %s (mean smallest singular value of the flange Jacobian around it "
                  "%.3f m/rad, %.3f at the URDF's zero)", source, list(choice.q), choice.sigma_min,
                  choice.default_sigma_min)
        return arm.with_changes(home=choice.q)
    q = np.array(vector(home, arm.dof, source, "home"))
    check_home(arm, q, source)
    return arm.with_changes(home=tuple(float(v) for v in q))


def _limits(raw, src: Path) -> dict[str, LimitOverride]:
    """``limits:`` of a family file: joint name → its overrides, each with a ``source``."""
    overrides = {}
    for name, entry in mapping(raw, src, "limits").items():
        field = f"limits.{name}"
        entry = mapping(entry, src, field)
        unknown_keys(entry, {"source", "lower", "upper", *_BOUNDS}, src, field)
        source = entry.get("source")
        if not isinstance(source, str) or not source.strip():
            raise ConfigError(src, f"{field}.source", "say where these limits come from (e.g. the maker's data "
                              "sheet and its version)")
        values = {}
        for key, (bound, unit) in _BOUNDS.items():
            if key in entry:
                values[key] = number(entry[key], src, f"{field}.{key}", positive=True)
                if values[key] > bound:
                    raise ConfigError(src, f"{field}.{key}", f"{values[key]:g} {unit} is beyond any real arm "
                                      f"(at most {bound:g} {unit})")
        for key in ("lower", "upper"):
            if key in entry:
                values[key] = number(entry[key], src, f"{field}.{key}")
                if abs(values[key]) > MAX_POSITION_LIMIT:
                    raise ConfigError(src, f"{field}.{key}", f"{values[key]:g} rad is more than two turns")
        if "lower" in values and "upper" in values and values["lower"] >= values["upper"]:
            raise ConfigError(src, f"{field}.lower", f"{values['lower']:g} is not below upper {values['upper']:g}")
        overrides[str(name)] = LimitOverride(source=source.strip(), **values)
    return overrides


CONTINUOUS_RANGE = math.pi  # rad either way: the range a first family file gives a continuous joint


def draft_family_file(urdf: str | Path, flange_link: str, out: str | Path, base_link: str | None = None,
                      family: str | None = None, reserved: Collection[str] = ()) -> tuple[str, Arm, HomeChoice]:
    """The text of a first family file for ``urdf`` to be written at ``out``, the arm it defines and its chosen
    home. Every choice is written with its reason as a comment; the text loads back to the same arm. ``reserved``:
    names the family may not take (the built-in ones)."""
    urdf, out = Path(urdf), Path(out)
    family = family or out.stem
    if not FAMILY_NAME.fullmatch(family) or family in reserved:
        why = "is a built-in family's" if family in reserved else "is not a family name (a letter, then letters, " \
                                                                 "digits or _)"
        raise ConfigError(out, "family", f"'{family}' {why}; name the family with --name")
    types = chain_joint_types(urdf, flange_link, base_link)
    continuous = [name for name, kind in types.items() if kind == "continuous"]
    overrides = {name: LimitOverride(source=_CHOSEN_RANGE, lower=-CONTINUOUS_RANGE, upper=CONTINUOUS_RANGE)
                 for name in continuous}
    arm = urdf_family(urdf, flange_link, base_link, family, overrides, home=None, source=out)
    choice = choose_home(arm, HOME_SEED)
    given = urdf_limits(urdf, flange_link, base_link)
    suspects = placeholder_limits(given, {})
    relative = os.path.relpath(urdf.resolve(), out.resolve().parent)
    where = "relative to this file"
    if relative.startswith(".."):  # not beside or below the family file: absolute
        relative, where = str(urdf.resolve()), "absolute: it is not beside this file"
    lines = [
        f"# Family file of {arm.description}, first written by `mtrl-robot arm init` from {urdf.name}.",
        "# Fields: family, description, urdf, base_link, flange_link, home, limits (mtrl_robot/arms/family_file.py).",
        f"family: {family}    # its name in robot ids ({family}-000), checkpoints and run folders",
        f"description: {json.dumps(arm.description)}    # the URDF's robot name",
        f"urdf: {json.dumps(relative)}    # {where}",
        f"base_link: {arm.base_link}    # {'as given' if base_link else 'the URDF root link (none was given)'}",
        f"flange_link: {arm.flange_link}",
        f"# home: chosen (seed {choice.seed}) to maximise the mean smallest singular value of the flange's position",
        f"# Jacobian over joint vectors within ±{TARGET_SPREAD} rad of it, where the demos' targets come from, keeping",
        f"# {HOME_MARGIN:.0%} of each range from the limits: {choice.sigma_min:.3f} m/rad there against "
        f"{choice.default_sigma_min:.3f} m/rad around the URDF's",
        f"# zero posture; condition number {choice.condition:.3g} at home. Replace it with your arm's own home if "
        "it has one.",
        f"home: [{', '.join(f'{v:g}' for v in choice.q)}]",
        "# limits: per joint, these replace the URDF's; give each with its source (the maker's data sheet).",
    ]
    if suspects:
        lines.append("# The URDF gives the same limits on every joint: placeholders, not the arm's data. Fill in the "
                     "published ones below.")
    lines.append("limits:" if continuous else "limits: {}")
    entries = [f"  {name}: {{lower: {-CONTINUOUS_RANGE:.6f}, upper: {CONTINUOUS_RANGE:.6f}, "
               f"source: {json.dumps(_CHOSEN_RANGE)}}}" for name in continuous]
    for name, kinds in suspects.items():
        velocity, effort = given[name]
        entries.append(f"  # {name}: {{velocity: ?, effort: ?, source: ?}}    # the URDF's {' and '.join(kinds)} "
                       f"(velocity {velocity:g} rad/s, effort {effort:g} N·m) look like placeholders")
    return "\n".join(lines + entries) + "\n", arm.with_changes(home=choice.q), choice


_CHOSEN_RANGE = ("mtrl-robot arm init: one turn either way, as the URDF gives a continuous joint no range; replace "
                 "it with the arm's own")
