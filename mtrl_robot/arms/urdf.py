"""URDF export of any :class:`Arm`, and import of a serial chain from any URDF (bring your own arm).

Export writes ``world → base_link`` (``base_xyz``/``base_rpy``), one revolute joint per arm joint whose
origin is :meth:`Arm.joint_origin` (so zero offsets are baked in), and a fixed joint to the flange link.

Import reads the chain from a base link to a flange link. Fixed joints inside the chain are folded into
the next joint's origin (or into the flange transform after the last joint); links rigidly attached to a
moving link by fixed joints add their mass to it. Links beyond joints that are off the chain are ignored.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtrl_robot.arms.chain import Arm, Joint, Link, rpy_to_matrix, transform
from mtrl_robot.arms.home import default_home
from mtrl_robot.core.errors import ConfigError

GEOMETRY_RADIUS = 0.04  # m, radius of the exported visual and collision cylinders
_MOVABLE = ("revolute", "continuous")

# Bounds on what a URDF may say about an arm: far beyond any real arm, short of what breaks the arithmetic.
MAX_POSITION_LIMIT = 4 * math.pi  # rad, |lower| and |upper| of a revolute joint (two turns either way)
MAX_VELOCITY = 100.0  # rad/s, a joint's velocity limit (the fastest published wrists turn at ~17 rad/s)
MAX_EFFORT = 1e6  # N·m, a joint's effort limit (the largest industrial arms need ~1e5 at the shoulder)
MAX_DAMPING = 1e5  # N·m·s/rad, viscous damping of a joint
MAX_FRICTION = 1e5  # N·m, Coulomb friction of a joint
MAX_MASS = 1e4  # kg, mass of one link
MAX_INERTIA = 1e5  # kg·m², any element of a link's inertia tensor
MAX_OFFSET = 100.0  # m, any coordinate of a joint's or an inertial's origin
MIN_MOMENT = 1e-12  # kg·m², each moment of inertia of a moving link (MuJoCo refuses bodies below 1e-15)
# Limits identical on every joint with a velocity above this look like a file's placeholders, not an arm's data
# (real arms have slower shoulders than wrists and far more shoulder torque; no published arm turns every joint
# a full turn per second).
PLACEHOLDER_VELOCITY = 2 * math.pi  # rad/s

_log = logging.getLogger(__name__)


def matrix_to_rpy(rotation: np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`rpy_to_matrix`, exact to round-off also at pitch = ±π/2."""
    yaw = math.atan2(rotation[1, 0], rotation[0, 0])
    c, s = math.cos(yaw), math.sin(yaw)
    m = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]) @ rotation  # = Ry(pitch) · Rx(roll)
    return math.atan2(-m[1, 2], m[1, 1]), math.atan2(-m[2, 0], m[0, 0]), yaw


def _text(values: Iterable[float]) -> str:
    return " ".join(repr(float(v) + 0.0) for v in values)  # + 0.0 turns -0.0 into 0.0


def _origin(parent: ET.Element, pose: np.ndarray) -> None:
    ET.SubElement(parent, "origin", xyz=_text(pose[:3, 3]), rpy=_text(matrix_to_rpy(pose[:3, :3])))


def _geometry(link: ET.Element, end: np.ndarray) -> None:
    """A cylinder from the link frame's origin to ``end`` (a sphere if they coincide)."""
    length = float(np.linalg.norm(end))
    if length < 1e-6:
        pose, shape = np.eye(4), {"tag": "sphere", "radius": repr(GEOMETRY_RADIUS)}
    else:
        z = end / length
        helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        x = np.cross(helper, z)
        x /= np.linalg.norm(x)
        pose = transform(end / 2, np.column_stack([x, np.cross(z, x), z]))
        shape = {"tag": "cylinder", "radius": repr(GEOMETRY_RADIUS), "length": repr(length)}
    for kind in ("visual", "collision"):
        element = ET.SubElement(link, kind)
        _origin(element, pose)
        ET.SubElement(ET.SubElement(element, "geometry"), shape["tag"],
                      {k: v for k, v in shape.items() if k != "tag"})


def _inertial(element: ET.Element, link: Link) -> None:
    inertial = ET.SubElement(element, "inertial")
    ET.SubElement(inertial, "origin", xyz=_text(link.com), rpy="0 0 0")
    ET.SubElement(inertial, "mass", value=repr(float(link.mass)))
    ixx, iyy, izz = (repr(float(v)) for v in link.inertia)
    ET.SubElement(inertial, "inertia", ixx=ixx, ixy="0", ixz="0", iyy=iyy, iyz="0", izz=izz)


def _fixed_joint(robot: ET.Element, name: str, parent: str, child: str, pose: np.ndarray) -> None:
    joint = ET.SubElement(robot, "joint", name=name, type="fixed")
    _origin(joint, pose)
    ET.SubElement(joint, "parent", link=parent)
    ET.SubElement(joint, "child", link=child)


def root_link(arm: Arm) -> str:
    """The name of the fixed root link :func:`arm_to_urdf` puts under the base: ``world``, or ``world_root`` if the
    arm has a link named ``world``."""
    taken = {arm.base_link, arm.flange_link, *(ln.name for ln in arm.links)}
    return "world" if "world" not in taken else "world_root"


def arm_to_urdf(arm: Arm) -> str:
    """A URDF document of ``arm``: a fixed ``world`` root, the revolute chain and the flange link.

    Base and flange links (and a root not named ``world``) get an explicit zero-mass inertial (PyBullet gives
    1 kg to a link without one).
    """
    root_name = root_link(arm)
    robot = ET.Element("robot", name=arm.robot_id)
    root = ET.SubElement(robot, "link", name=root_name)
    if root_name != "world":  # PyBullet knows "world" as the ground; any other link without an inertial gets 1 kg
        _inertial(root, Link(root_name, 0.0, inertia=(0.0, 0.0, 0.0)))
    base = ET.SubElement(robot, "link", name=arm.base_link)
    _inertial(base, Link(arm.base_link, 0.0, inertia=(0.0, 0.0, 0.0)))
    _geometry(base, arm.joint_origin(0)[:3, 3])
    _fixed_joint(robot, f"{root_name}_to_{arm.base_link}", root_name, arm.base_link, arm.base_transform())
    for i, (joint, link) in enumerate(zip(arm.joints, arm.links, strict=True)):
        element = ET.SubElement(robot, "link", name=link.name)
        _inertial(element, link)
        end = arm.joint_origin(i + 1) if i + 1 < arm.dof else arm.flange_transform()
        _geometry(element, end[:3, 3])
        urdf_joint = ET.SubElement(robot, "joint", name=joint.name, type="revolute")
        _origin(urdf_joint, arm.joint_origin(i))
        ET.SubElement(urdf_joint, "parent", link=joint.parent)
        ET.SubElement(urdf_joint, "child", link=joint.child)
        ET.SubElement(urdf_joint, "axis", xyz=_text(joint.axis))
        ET.SubElement(urdf_joint, "limit", lower=repr(joint.lower), upper=repr(joint.upper),
                      effort=repr(joint.effort), velocity=repr(joint.velocity))
        damping = arm.damping[i] if arm.damping else 0.0
        friction = arm.friction[i] if arm.friction else 0.0
        ET.SubElement(urdf_joint, "dynamics", damping=repr(float(damping)), friction=repr(float(friction)))
    _inertial(ET.SubElement(robot, "link", name=arm.flange_link), Link(arm.flange_link, 0.0, inertia=(0.0, 0.0, 0.0)))
    _fixed_joint(robot, f"{arm.flange_link}_fixed", arm.joints[-1].child, arm.flange_link, arm.flange_transform())
    ET.indent(robot)
    return ET.tostring(robot, encoding="unicode") + "\n"


# ---------------------------------------------------------------------------------------------- import


class _Reader:
    """Typed access to URDF attributes with errors naming the file and the element."""

    def __init__(self, source: Path):
        self.source = source

    def floats(self, element: ET.Element | None, attribute: str, field: str, count: int,
               default: tuple[float, ...] | None = None) -> tuple[float, ...]:
        text = None if element is None else element.get(attribute)
        if text is None:
            if default is None:
                raise ConfigError(self.source, field, "required attribute is missing")
            return default
        try:
            values = tuple(float(v) for v in text.split())
        except ValueError:
            values = ()
        if len(values) != count or not all(math.isfinite(v) for v in values):
            raise ConfigError(self.source, field, f"expected {count} finite number(s), got {text!r}")
        return values

    def number(self, element: ET.Element | None, attribute: str, field: str, default: float | None = None) -> float:
        return self.floats(element, attribute, field, 1, None if default is None else (default,))[0]

    def bounded(self, element: ET.Element | None, attribute: str, field: str, low: float, high: float,
                unit: str, default: float | None = None, low_open: bool = False) -> float:
        """A number in [low, high] (``(low, high]`` if ``low_open``), or an error naming the field and the bound."""
        value = self.number(element, attribute, field, default)
        if value < low or (low_open and value == low):
            bound = "above" if low_open else "at least"
            raise ConfigError(self.source, field, f"must be {bound} {low:g}, got {value:g}")
        if value > high:
            raise ConfigError(self.source, field, f"{value:g} {unit} is beyond any real arm (at most {high:g} {unit})")
        return value

    def pose(self, element: ET.Element, field: str) -> np.ndarray:
        origin = element.find("origin")
        xyz = self.floats(origin, "xyz", f"{field}/origin/@xyz", 3, (0.0, 0.0, 0.0))
        if max(abs(v) for v in xyz) > MAX_OFFSET:
            raise ConfigError(self.source, f"{field}/origin/@xyz",
                              f"an offset of {max(abs(v) for v in xyz):g} m is beyond any real arm (at most "
                              f"{MAX_OFFSET:g} m)")
        rpy = self.floats(origin, "rpy", f"{field}/origin/@rpy", 3, (0.0, 0.0, 0.0))
        return transform(np.array(xyz), rpy_to_matrix(np.array(rpy)))


def _parse(path: Path) -> ET.Element:
    if not path.is_file():
        raise ConfigError(path, None, "file not found")
    try:
        robot = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ConfigError(path, None, f"malformed XML: {exc}") from None
    if robot.tag != "robot":
        raise ConfigError(path, None, f"the root element is <{robot.tag}>, not <robot>")
    return robot


def _link_list(names: list[str], limit: int = 8) -> str:
    more = f", … ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _inertia(element: ET.Element | None, field: str, read: _Reader) -> np.ndarray:
    """The 3×3 inertia tensor of an ``<inertia>``, refused unless a body could have it (moments not negative,
    each principal moment at most the sum of the other two)."""
    i = {k: read.number(element, k, f"{field}/@{k}", 0.0) for k in ("ixx", "ixy", "ixz", "iyy", "iyz", "izz")}
    for key, value in i.items():
        if key in ("ixx", "iyy", "izz") and value < 0:
            raise ConfigError(read.source, f"{field}/@{key}",
                              f"a moment of inertia must not be negative, got {value:g}")
        if abs(value) > MAX_INERTIA:
            raise ConfigError(read.source, f"{field}/@{key}",
                              f"{value:g} kg·m² is beyond any real arm (at most {MAX_INERTIA:g} kg·m²)")
    tensor = np.array([[i["ixx"], i["ixy"], i["ixz"]], [i["ixy"], i["iyy"], i["iyz"]], [i["ixz"], i["iyz"], i["izz"]]])
    moments = np.linalg.eigvalsh(tensor)
    tolerance = 1e-9 * max(moments[-1], 0.0)
    if moments[0] < -tolerance or moments[0] + moments[1] < moments[2] - tolerance:
        raise ConfigError(read.source, field, "not the inertia of a body: its principal moments "
                          f"({', '.join(f'{m:.6g}' for m in moments)} kg·m²) must not be negative and none may "
                          "exceed the sum of the other two")
    return tensor


def _rigid_body(name: str, links: dict[str, ET.Element], joints_by_parent: dict[str, list[ET.Element]],
                read: _Reader) -> tuple[float, np.ndarray, np.ndarray]:
    """Mass, centre of mass and 3×3 inertia (about that centre, in ``name``'s frame) of ``name`` and of the
    links fixed to it downstream."""
    parts = []
    stack = [(name, np.eye(4))]
    while stack:
        link_name, pose = stack.pop()
        inertial = links[link_name].find("inertial")
        if inertial is not None:
            field = f"link[@name='{link_name}']/inertial"
            mass = read.bounded(inertial.find("mass"), "value", f"{field}/mass/@value", 0.0, MAX_MASS, "kg")
            frame = pose @ read.pose(inertial, field)
            tensor = _inertia(inertial.find("inertia"), f"{field}/inertia", read)
            parts.append((mass, frame[:3, 3], frame[:3, :3] @ tensor @ frame[:3, :3].T))
        for joint in joints_by_parent.get(link_name, []):
            if joint.get("type") == "fixed":
                child = joint.find("child").get("link")
                stack.append((child, pose @ read.pose(joint, f"joint[@name='{joint.get('name')}']")))
    mass = sum(m for m, _, _ in parts)
    if mass <= 0:
        return 0.0, np.zeros(3), np.zeros((3, 3))
    com = sum(m * c for m, c, _ in parts) / mass
    inertia = sum(t + m * (np.dot(c - com, c - com) * np.eye(3) - np.outer(c - com, c - com)) for m, c, t in parts)
    return mass, com, inertia


def _tree(robot: ET.Element, source: Path) -> tuple[dict[str, ET.Element], dict[str, ET.Element]]:
    """Links by name and joints by child link, refused unless they form one tree: every link named once, one
    root, every other link with exactly one parent joint, no cycle."""
    links: dict[str, ET.Element] = {}
    for link in robot.findall("link"):
        name = link.get("name")
        if not name:
            raise ConfigError(source, "link", "a <link> has no name")
        if name in links:
            raise ConfigError(source, f"link[@name='{name}']", "two links have this name")
        links[name] = link
    if not links:
        raise ConfigError(source, None, "the URDF has no <link>")
    by_child: dict[str, ET.Element] = {}
    order: dict[str, int] = {}  # joint name → position in the file
    for joint in robot.findall("joint"):
        name = joint.get("name")
        field = f"joint[@name='{name}']"
        if not name:
            raise ConfigError(source, "joint", "a <joint> has no name")
        if name in order:
            raise ConfigError(source, field, "two joints have this name")
        order[name] = len(order)
        ends = [joint.find(tag) for tag in ("parent", "child")]
        if any(e is None or e.get("link") not in links for e in ends):
            raise ConfigError(source, field, "parent and child must name links of this URDF")
        child = ends[1].get("link")
        if child in by_child:
            raise ConfigError(source, field, f"link '{child}' has two parent joints ('{by_child[child].get('name')}' "
                              f"and '{name}'); a URDF must be a tree")
        by_child[child] = joint
    # Each link has at most one parent now, so following parents from a link either reaches a root or runs in a cycle.
    rooted: set[str] = set()
    for start in links:
        path: list[str] = []
        on_path: set[str] = set()
        link = start
        while link not in rooted and link in by_child:
            if link in on_path:
                cycle = path[path.index(link):][::-1]  # links from parent to child
                joints = [by_child[n].get("name") for n in cycle[1:] + cycle[:1]]  # the joint into each next link
                first = min(range(len(joints)), key=lambda k: order[joints[k]])  # start at the first in the file
                cycle, joints = cycle[first:] + cycle[:first], joints[first:] + joints[:first]
                raise ConfigError(source, f"joint[@name='{joints[0]}']",
                                  f"the joints {', '.join(map(repr, joints))} form a cycle "
                                  f"({' → '.join([*cycle, cycle[0]])}); a URDF must be a tree")
            path.append(link)
            on_path.add(link)
            link = by_child[link].find("parent").get("link")
        rooted.update(path)
        rooted.add(link)
    roots = [n for n in links if n not in by_child]
    if len(roots) > 1:
        raise ConfigError(source, None, f"the links form {len(roots)} separate trees, rooted at {_link_list(roots)}; "
                          "a URDF must be one tree (join them with fixed joints)")
    return links, by_child


def _chain(robot: ET.Element, source: Path, base_link: str | None,
           flange_link: str) -> tuple[dict[str, ET.Element], dict[str, list[ET.Element]], list[ET.Element], str]:
    """Links by name, joints by parent link, and the joints from the base link to the flange link."""
    links, by_child = _tree(robot, source)
    by_parent: dict[str, list[ET.Element]] = {}
    for joint in by_child.values():
        by_parent.setdefault(joint.find("parent").get("link"), []).append(joint)
    names = list(links)
    if flange_link not in links:
        raise ConfigError(source, "flange_link", f"no link '{flange_link}' in the URDF (links: {_link_list(names)})")
    if base_link is None:
        base_link = next(n for n in names if n not in by_child)
    elif base_link not in links:
        raise ConfigError(source, "base_link", f"no link '{base_link}' in the URDF (links: {_link_list(names)})")
    path, link = [], flange_link
    while link != base_link:
        if link not in by_child:
            raise ConfigError(source, "base_link", f"no chain from '{base_link}' to '{flange_link}': "
                              f"'{flange_link}' descends from root '{link}' without passing '{base_link}'")
        path.append(by_child[link])
        link = by_child[link].find("parent").get("link")
    return links, by_parent, path[::-1], base_link


@dataclass(frozen=True)
class LimitOverride:
    """Limits of one joint that replace (or complete) its URDF's, with where they come from."""

    source: str
    velocity: float | None = None  # rad/s
    acceleration: float | None = None  # rad/s²
    jerk: float | None = None  # rad/s³
    effort: float | None = None  # N·m
    lower: float | None = None  # rad
    upper: float | None = None  # rad


def _joint(element: ET.Element, parent: str, origin: np.ndarray, read: _Reader,
           override: LimitOverride | None) -> Joint:
    """An :class:`Arm` joint from a revolute or continuous URDF joint, its fixed predecessors in ``origin``, with
    ``override``'s limits in place of the URDF's."""
    name, kind = element.get("name"), element.get("type")
    field = f"joint[@name='{name}']"
    given = override or LimitOverride(source="")
    if element.find("mimic") is not None:
        raise ConfigError(read.source, f"{field}/mimic", "mimic joints are not supported on the arm's chain: "
                          "every joint between base and flange must be driven independently")
    axis = np.array(read.floats(element.find("axis"), "xyz", f"{field}/axis/@xyz", 3, (1.0, 0.0, 0.0)))
    length = math.hypot(*axis)  # no overflow for huge components
    if length < 1e-9:
        raise ConfigError(read.source, f"{field}/axis/@xyz", "axis must not be zero")
    limit = element.find("limit")
    if limit is None and kind == "revolute":
        raise ConfigError(read.source, f"{field}/limit", "a revolute joint needs <limit lower=... upper=... "
                          "effort=... velocity=...>")
    if kind == "continuous":
        if given.lower is None or given.upper is None:
            raise ConfigError(read.source, f"{field}/@type", "a continuous joint has no position limits: give its "
                              f"range as limits.{name}.lower and .upper in a family file (mtrl-robot arm init)")
        lower, upper = given.lower, given.upper
    else:
        lower, upper = (read.number(limit, end, f"{field}/limit/@{end}", 0.0) for end in ("lower", "upper"))
        for end, value in (("lower", lower), ("upper", upper)):
            if abs(value) > MAX_POSITION_LIMIT:
                raise ConfigError(read.source, f"{field}/limit/@{end}",
                                  f"{value:g} rad is more than two turns (at most ±{MAX_POSITION_LIMIT:.6g} rad); "
                                  "a joint without stops is type=\"continuous\"")
        lower = lower if given.lower is None else given.lower
        upper = upper if given.upper is None else given.upper
    if lower >= upper:
        raise ConfigError(read.source, f"{field}/limit/@lower", f"lower limit {lower} is not below upper limit {upper}")
    velocity, effort = (read.bounded(limit, end, f"{field}/limit/@{end}", 0.0, bound, unit, default=0.0)
                        for end, bound, unit in (("velocity", MAX_VELOCITY, "rad/s"), ("effort", MAX_EFFORT, "N·m")))
    velocity = velocity if given.velocity is None else given.velocity
    effort = effort if given.effort is None else given.effort
    if velocity == 0.0:
        raise ConfigError(read.source, f"{field}/limit/@velocity", "no velocity limit (missing or zero): no limit, "
                          f"no demo; give the arm's published one as limits.{name}.velocity in a family file")
    if effort == 0.0:
        raise ConfigError(read.source, f"{field}/limit/@effort", "no effort limit (missing or zero): a simulator "
                          f"needs the torque bound; give the arm's published one as limits.{name}.effort in a "
                          "family file")
    optional = {k: getattr(given, k) for k in ("acceleration", "jerk") if getattr(given, k) is not None}
    return Joint(name=name, parent=parent, child=element.find("child").get("link"),
                 xyz=tuple(float(v) for v in origin[:3, 3]), rpy=matrix_to_rpy(origin[:3, :3]),
                 axis=tuple(float(a) for a in axis / length),
                 lower=lower, upper=upper, velocity=velocity, effort=effort, **optional)


def placeholder_limits(urdf_limits: Mapping[str, tuple[float, float]],
                       overrides: Mapping[str, LimitOverride]) -> dict[str, list[str]]:
    """Joint name → which of its URDF limits (``velocity``, ``effort``; joint name → the pair) look like
    placeholders, not an arm's data: one effort on every joint (real arms have far more shoulder than wrist torque),
    or one velocity on every joint that is above :data:`PLACEHOLDER_VELOCITY` or comes with one effort. Limits an
    override gives are not named."""
    if len(urdf_limits) < 2:
        return {}
    velocities, efforts = ({pair[k] for pair in urdf_limits.values()} for k in (0, 1))
    suspects = []
    if len(velocities) == 1 and (len(efforts) == 1 or next(iter(velocities)) > PLACEHOLDER_VELOCITY):
        suspects.append("velocity")
    if len(efforts) == 1:
        suspects.append("effort")
    found: dict[str, list[str]] = {}
    for name in urdf_limits:
        given = overrides.get(name)
        kinds = [k for k in suspects if given is None or getattr(given, k) is None]
        if kinds:
            found[name] = kinds
    return found


def _warn_of_placeholder_limits(source: Path, chain: Mapping[str, ET.Element],
                                overrides: Mapping[str, LimitOverride]) -> None:
    """One warning naming each joint whose URDF limits look like placeholders (see :func:`placeholder_limits`)."""
    given = _urdf_limits(chain)  # already read and checked by _joint
    found = placeholder_limits(given, overrides)
    if not found:
        return
    index = {"velocity": 0, "effort": 1}
    described = "; ".join(f"{name} ({', '.join(f'{k} {given[name][index[k]]:g}' for k in kinds)})"
                          for name, kinds in found.items())
    _log.warning("%s: limits that look like placeholders, not the arm's data (the same on every joint): %s; the "
                 "controller, the demos and the safety checks use them as given, so put the arm's published limits "
                 "in its family file (limits.<joint>)", source, described)


def chain_joint_types(path: str | Path, flange_link: str, base_link: str | None = None) -> dict[str, str]:
    """Name → type of the joints from ``base_link`` (default: the root link) to ``flange_link``, fixed ones too."""
    source = Path(path)
    return {j.get("name"): j.get("type") for j in _chain(_parse(source), source, base_link, flange_link)[2]}


def urdf_limits(path: str | Path, flange_link: str, base_link: str | None = None) -> dict[str, tuple[float, float]]:
    """Name → (velocity, effort) limits as the URDF gives them (0 where missing) of the chain's moving joints."""
    source = Path(path)
    chain = _chain(_parse(source), source, base_link, flange_link)[2]
    return _urdf_limits({j.get("name"): j for j in chain if j.get("type") in _MOVABLE})


def _urdf_limits(chain: Mapping[str, ET.Element]) -> dict[str, tuple[float, float]]:
    limits = {name: element.find("limit") for name, element in chain.items()}
    return {name: tuple(0.0 if limit is None else float(limit.get(k, 0.0)) for k in ("velocity", "effort"))
            for name, limit in limits.items()}


def load_urdf_arm(path: str | Path, flange_link: str, base_link: str | None = None,
                  family: str | None = None, overrides: Mapping[str, LimitOverride] | None = None) -> Arm:
    """The serial chain from ``base_link`` (default: the root link) to ``flange_link`` of a URDF as an Arm.

    Revolute and continuous joints become arm joints; ``overrides`` (joint name → :class:`LimitOverride`, from a
    family file) replace the URDF's limits. A continuous joint needs its range from ``overrides``; every joint needs
    a velocity and an effort limit from one or the other (missing or zero is refused). Prismatic, floating, planar
    and mimic joints on the chain are refused. ``home`` is :func:`~mtrl_robot.arms.home.default_home`;
    damping and friction come from ``<dynamics>`` (0 where absent). A moving link's inertia is the diagonal
    of the inertia of it and its fixed attachments, about their common centre of mass, in the link frame.
    ``family`` defaults to the file's stem.

    The links and joints must form one tree; numbers beyond any real arm (the ``MAX_*`` bounds) and inertias no
    body can have are refused, and limits that look like placeholders are logged as a warning.
    """
    source = Path(path)
    read = _Reader(source)
    robot = _parse(source)
    overrides = overrides or {}
    links, by_parent, chain, base_link = _chain(robot, source, base_link, flange_link)
    joints, arm_links, damping, friction = [], [], [], []
    pending = np.eye(4)  # fixed transforms since the last moving joint
    for element in chain:
        field = f"joint[@name='{element.get('name')}']"
        kind = element.get("type")
        origin = read.pose(element, field)
        if kind == "fixed":
            pending = pending @ origin
            continue
        if kind not in _MOVABLE:
            raise ConfigError(source, f"{field}/@type", f"'{kind}' joints are not supported on the arm's chain "
                              "(only revolute, continuous and fixed)")
        joint = _joint(element, joints[-1].child if joints else base_link, pending @ origin, read,
                       overrides.get(element.get("name")))
        mass, com, inertia = _rigid_body(joint.child, links, by_parent, read)
        if mass <= 0:
            raise ConfigError(source, f"link[@name='{joint.child}']/inertial",
                              f"the link moved by {joint.name} and its fixed attachments have no mass")
        if np.diag(inertia).min() < MIN_MOMENT:
            raise ConfigError(source, f"link[@name='{joint.child}']/inertial/inertia",
                              f"the link moved by {joint.name} and its fixed attachments have moments of inertia "
                              f"{', '.join(f'{v:.3g}' for v in np.diag(inertia))} kg·m² about x, y, z; a simulator "
                              f"needs each at least {MIN_MOMENT:g} kg·m²")
        arm_links.append(Link(name=joint.child, mass=mass, com=tuple(float(c) for c in com),
                              inertia=tuple(float(v) for v in np.diag(inertia))))
        dynamics = element.find("dynamics")
        damping.append(read.bounded(dynamics, "damping", f"{field}/dynamics/@damping", 0.0, MAX_DAMPING,
                                    "N·m·s/rad", 0.0))
        friction.append(read.bounded(dynamics, "friction", f"{field}/dynamics/@friction", 0.0, MAX_FRICTION,
                                     "N·m", 0.0))
        joints.append(joint)
        pending = np.eye(4)
    if not joints:
        raise ConfigError(source, "flange_link", f"no revolute or continuous joint between '{base_link}' and "
                          f"'{flange_link}'")
    _warn_of_placeholder_limits(source, {e.get("name"): e for e in chain if e.get("type") in _MOVABLE}, overrides)
    family = family or source.stem
    arm = Arm(family=family, robot_id=f"{family}-nominal", base_link=base_link, flange_link=flange_link,
              joints=tuple(joints), links=tuple(arm_links),
              flange_xyz=tuple(float(v) for v in pending[:3, 3]), flange_rpy=matrix_to_rpy(pending[:3, :3]),
              damping=tuple(damping), friction=tuple(friction), description=robot.get("name", family))
    return arm.with_changes(home=tuple(float(v) for v in default_home(arm)))
