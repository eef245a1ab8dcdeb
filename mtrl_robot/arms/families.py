"""Arm families: the built-in ones (YAML definitions under ``sim/arms/``) and user family files, by one resolver."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mtrl_robot.arms.chain import Arm, Joint, Link
from mtrl_robot.arms.family_file import is_family_file, load_user_family
from mtrl_robot.arms.inertia import rod_inertia
from mtrl_robot.core.config import load_yaml, mapping, number, unknown_keys, vector
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.paths import data_dir

_TOP_FIELDS = {"family", "description", "base_link", "flange_link", "base", "joints", "links",
               "flange", "home", "dynamics"}
_JOINT_FIELDS = {"name", "child", "xyz", "rpy", "axis", "lower", "upper", "velocity",
                 "acceleration", "jerk", "effort"}


def families_dir() -> Path:
    return data_dir("sim") / "arms"


def family_names() -> list[str]:
    return sorted(p.stem for p in families_dir().glob("*.yaml"))


def load_family(spec: str | Path) -> Arm:
    """The nominal robot of a family: a built-in name (``panda``, ``gen3``, ``yumi``, ``baxter``, ``ur5e``) or the
    path of a user family file (:mod:`mtrl_robot.arms.family_file`), whose name must not be a built-in one."""
    if is_family_file(spec):
        arm = load_user_family(spec)
        if arm.family in family_names():
            raise ConfigError(spec, "family", f"'{arm.family}' is the name of a built-in family; give this one "
                              "another name (field family:)")
        return arm
    path = families_dir() / f"{spec}.yaml"
    if not path.is_file():
        raise ConfigError(None, "family", f"unknown arm family '{spec}' (known: {', '.join(family_names())}; "
                          "or the path of a family file, see mtrl-robot arm init)")
    return load_family_file(path)


def load_families(specs: Sequence[str], source: str | Path | None, field: str) -> dict[str, Arm]:
    """Family name → nominal robot for the families ``specs`` name (names or family files), in order; two with one
    name are refused (robot ids and checkpoints would collide), as are errors, naming ``source`` and ``field[i]``."""
    arms: dict[str, Arm] = {}
    for i, spec in enumerate(specs):
        try:
            arm = load_family(spec)
        except ConfigError as exc:
            if exc.source is not None:  # a family file's own error names that file
                raise
            raise ConfigError(source, f"{field}[{i}]", exc.problem) from None
        if arm.family in arms:
            problem = (f"'{spec}' is listed twice" if spec in specs[:i] else
                       f"'{spec}' is named '{arm.family}', as an earlier entry is")
            raise ConfigError(source, f"{field}[{i}]", f"{problem}; each family may appear once under its name "
                              "(robot ids and checkpoints would collide)")
        arms[arm.family] = arm
    return arms


def load_family_file(path: str | Path) -> Arm:
    """Parse and validate one family definition."""
    src = Path(path)
    data = mapping(load_yaml(src), src, "")
    unknown_keys(data, _TOP_FIELDS, src, "")
    for key in ("family", "base_link", "flange_link", "joints", "links"):
        if key not in data:
            raise ConfigError(src, key, "required field is missing")
    family = str(data["family"])

    raw_joints = data["joints"]
    if not isinstance(raw_joints, list) or not raw_joints:
        raise ConfigError(src, "joints", "expected a non-empty list of joints")
    links_data = mapping(data["links"], src, "links")
    joints, links = [], []
    parent = str(data["base_link"])
    for i, raw in enumerate(raw_joints):
        field = f"joints[{i}]"
        raw = mapping(raw, src, field)
        unknown_keys(raw, _JOINT_FIELDS, src, field)
        for key in ("name", "child", "xyz", "lower", "upper", "velocity", "effort"):
            if key not in raw:
                raise ConfigError(src, f"{field}.{key}", "required field is missing")
        lower = number(raw["lower"], src, f"{field}.lower")
        upper = number(raw["upper"], src, f"{field}.upper")
        if lower >= upper:
            raise ConfigError(src, f"{field}.lower", f"lower limit {lower} is not below upper limit {upper}")
        axis = np.array(vector(raw.get("axis", [0, 0, 1]), 3, src, f"{field}.axis"))
        if np.linalg.norm(axis) < 1e-9:
            raise ConfigError(src, f"{field}.axis", "axis must not be zero")
        joint = Joint(
            name=str(raw["name"]),
            parent=parent,
            child=str(raw["child"]),
            xyz=vector(raw["xyz"], 3, src, f"{field}.xyz"),
            rpy=vector(raw.get("rpy", [0, 0, 0]), 3, src, f"{field}.rpy"),
            axis=tuple(float(a) for a in axis / np.linalg.norm(axis)),
            lower=lower,
            upper=upper,
            velocity=number(raw["velocity"], src, f"{field}.velocity", positive=True),
            effort=number(raw["effort"], src, f"{field}.effort", positive=True),
            acceleration=number(raw.get("acceleration", 10.0), src, f"{field}.acceleration", positive=True),
            jerk=number(raw["jerk"], src, f"{field}.jerk", positive=True) if "jerk" in raw else None,
        )
        joints.append(joint)
        parent = joint.child

    flange = mapping(data.get("flange", {}), src, "flange")
    flange_xyz = vector(flange.get("xyz", [0, 0, 0]), 3, src, "flange.xyz")
    for i, joint in enumerate(joints):
        field = f"links.{joint.child}"
        if joint.child not in links_data:
            raise ConfigError(src, field, f"no mass given for the child link of {joint.name}")
        raw = mapping(links_data[joint.child], src, field)
        unknown_keys(raw, {"mass", "com", "inertia"}, src, field)
        mass = number(raw.get("mass"), src, f"{field}.mass", positive=True)
        next_xyz = joints[i + 1].xyz if i + 1 < len(joints) else flange_xyz
        inertia = (vector(raw["inertia"], 3, src, f"{field}.inertia") if "inertia" in raw
                   else rod_inertia(mass, float(np.linalg.norm(next_xyz))))
        links.append(Link(name=joint.child, mass=mass,
                          com=vector(raw.get("com", [0, 0, 0]), 3, src, f"{field}.com"), inertia=inertia))

    dof = len(joints)
    dynamics = mapping(data.get("dynamics", {}), src, "dynamics")
    unknown_keys(dynamics, {"damping", "friction"}, src, "dynamics")
    damping = vector(dynamics.get("damping", [0.1] * dof), dof, src, "dynamics.damping")
    friction = vector(dynamics.get("friction", [0.0] * dof), dof, src, "dynamics.friction")
    for name, values in (("damping", damping), ("friction", friction)):
        for i, v in enumerate(values):
            number(v, src, f"dynamics.{name}[{i}]", non_negative=True)
    home = vector(data.get("home", [0.0] * dof), dof, src, "home")
    for i, (q, joint) in enumerate(zip(home, joints, strict=True)):
        if not joint.lower <= q <= joint.upper:
            raise ConfigError(src, f"home[{i}]",
                              f"{q} is outside the limits of {joint.name} [{joint.lower}, {joint.upper}]")
    base = mapping(data.get("base", {}), src, "base")
    return Arm(
        family=family,
        robot_id=f"{family}-nominal",
        base_link=str(data["base_link"]),
        flange_link=str(data["flange_link"]),
        joints=tuple(joints),
        links=tuple(links),
        base_xyz=vector(base.get("xyz", [0, 0, 0]), 3, src, "base.xyz"),
        base_rpy=vector(base.get("rpy", [0, 0, 0]), 3, src, "base.rpy"),
        flange_xyz=flange_xyz,
        flange_rpy=vector(flange.get("rpy", [0, 0, 0]), 3, src, "flange.rpy"),
        home=home,
        damping=damping,
        friction=friction,
        description=str(data.get("description", family)),
    )
