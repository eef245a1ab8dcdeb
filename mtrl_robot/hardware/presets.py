"""Hardware presets (``config/hardware/*.yaml``): how one real arm is reached and how far it may go.

A preset names the vendor driver's controller, action and topics, the joints in hardware order with a map to
the family model's joint names, and conservative limits that may never be wider than the family's published
ones. :meth:`HardwarePreset.safety_limits` turns it into the safety layer's :class:`SafetyLimits`.

The one exception is a preset marked ``simulation_only: true`` (optional, default false): it drives the
simulated arm node, whose position actuators follow any acceleration, and its acceleration limits may exceed
the published ones (positions and velocities may not). Such a preset says so in its name and driver and must
never be pointed at a real arm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtrl_robot.arms.chain import Arm, Joint
from mtrl_robot.arms.families import load_family
from mtrl_robot.backends.trajectory import JointState, JointTrajectory
from mtrl_robot.core.config import load_yaml, mapping, number, unknown_keys, vector
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.paths import data_dir
from mtrl_robot.hardware.safety import SafetyLimits, Workspace

_FIELDS = {"family", "driver", "controller", "action", "trajectory_topic", "joint_states_topic",
           "joint_states_rate", "control_rate", "watchdog_timeout", "max_start_deviation", "position_margin",
           "workspace", "dry_run", "joint_names", "joint_map", "limits"}
_OPTIONAL = {"simulation_only": False}
_LIMIT_FIELDS = ("lower", "upper", "velocity", "acceleration")
_OPTIONAL_LIMIT_FIELDS = ("jerk",)  # absent: not checked (no published value)
_SLACK = 1e-9  # a preset value equal to the family's, up to round-off, is not wider


@dataclass(frozen=True)
class HardwarePreset:
    """One arm as its driver exposes it; arrays are in hardware joint order."""

    name: str
    family: str
    driver: str
    controller: str
    action: str
    trajectory_topic: str | None
    joint_states_topic: str
    joint_states_rate: float  # Hz, as the driver is configured to publish
    control_rate: float  # Hz, the controller's update rate: a step at a waypoint happens within one period
    watchdog_timeout: float  # s
    max_start_deviation: float  # rad
    position_margin: float  # rad
    workspace: Workspace
    dry_run: bool
    joint_names: tuple[str, ...]
    joint_map: dict[str, str]  # hardware name → family model name
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray
    jerk: np.ndarray  # rad/s³, inf where no limit is published
    simulation_only: bool = False  # drives the simulated arm node only; acceleration limits may exceed published

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(self.joint_map[n] for n in self.joint_names)

    def safety_limits(self, arm: Arm | None = None) -> SafetyLimits:
        """Limits over the hardware joint names; FK uses ``arm`` (default: the family's nominal robot)."""
        return SafetyLimits(self.joint_names, self.lower, self.upper, self.velocity, self.acceleration,
                            self.position_margin, self.max_start_deviation, self.workspace,
                            arm if arm is not None else load_family(self.family), self.model_names,
                            jerk=self.jerk, control_period=1.0 / self.control_rate)

    def to_hardware(self, trajectory: JointTrajectory) -> JointTrajectory:
        """A trajectory over model joint names, renamed and reordered to the hardware's joints."""
        ordered = trajectory.reordered(self.model_names)
        return JointTrajectory(self.joint_names, ordered.times, ordered.positions, ordered.velocities)

    def to_model(self, state: JointState) -> JointState:
        """A hardware joint state (possibly with more joints) as the model's joints, in the model's order."""
        index = [list(state.names).index(n) for n in self.joint_names]
        velocities = np.asarray(state.velocities, dtype=float)
        return JointState(self.model_names, np.asarray(state.positions, dtype=float)[index],
                          velocities[index] if velocities.size else np.zeros(len(index)), state.stamp)


def hardware_dir() -> Path:
    return data_dir("config") / "hardware"


def preset_names() -> list[str]:
    return sorted(p.stem for p in hardware_dir().glob("*.yaml"))


def load_preset(preset: str | Path) -> HardwarePreset:
    """A preset by name (``franka_fr3``) or by path to a YAML file."""
    path = Path(preset)
    if path.suffix not in (".yaml", ".yml"):
        path = hardware_dir() / f"{preset}.yaml"
        if not path.is_file():
            known = ", ".join(preset_names())
            raise ConfigError(None, "preset", f"unknown hardware preset '{preset}' (known: {known})")
    return _parse(path)


def _text(data: dict, key: str, src: Path, *, absolute: bool = False) -> str:
    value = data[key]
    if not isinstance(value, str) or not value:
        raise ConfigError(src, key, f"expected a non-empty string, got {value!r}")
    if absolute and not value.startswith("/"):
        raise ConfigError(src, key, f"'{value}' must be an absolute ROS name (starting with '/')")
    return value


def _parse(src: Path) -> HardwarePreset:
    data = mapping(load_yaml(src), src, "")
    unknown_keys(data, _FIELDS | set(_OPTIONAL), src, "")
    simulation_only = data.get("simulation_only", _OPTIONAL["simulation_only"])
    if not isinstance(simulation_only, bool):
        raise ConfigError(src, "simulation_only", f"expected true or false, got {simulation_only!r}")
    for key in sorted(_FIELDS):
        if key not in data:
            raise ConfigError(src, key, "required field is missing")
    try:
        arm = load_family(_text(data, "family", src))
    except ConfigError as exc:
        raise ConfigError(src, "family", exc.problem) from None

    names = data["joint_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(src, "joint_names", f"expected a list of joint names, got {names!r}")
    if len(set(names)) != len(names):
        raise ConfigError(src, "joint_names", f"joint names repeat: {names}")
    if len(names) != arm.dof:
        raise ConfigError(src, "joint_names", f"{len(names)} joints, but the {arm.family} family has {arm.dof} "
                                              f"({', '.join(arm.joint_names)})")
    joint_map = _joint_map(mapping(data["joint_map"], src, "joint_map"), names, arm, src)
    limits = mapping(data["limits"], src, "limits")
    if set(limits) != set(names):
        raise ConfigError(src, "limits", f"needs exactly the joints {names}, got {list(limits)}")
    family_joints = {j.name: j for j in arm.joints}
    table = np.array([_joint_limits(limits[n], family_joints[joint_map[n]], arm.family, src, f"limits.{n}",
                                    simulation_only) for n in names])

    rate = number(data["joint_states_rate"], src, "joint_states_rate", positive=True)
    control_rate = number(data["control_rate"], src, "control_rate", positive=True)
    timeout = number(data["watchdog_timeout"], src, "watchdog_timeout", positive=True)
    if timeout < 2.0 / rate:
        raise ConfigError(src, "watchdog_timeout", f"{timeout} s is shorter than two joint-state periods at "
                                                   f"{rate} Hz ({2.0 / rate} s)")
    box = mapping(data["workspace"], src, "workspace")
    unknown_keys(box, {"min", "max"}, src, "workspace")
    low, high = vector(box.get("min"), 3, src, "workspace.min"), vector(box.get("max"), 3, src, "workspace.max")
    try:
        workspace = Workspace(np.array(low), np.array(high))
    except ValueError as exc:
        raise ConfigError(src, "workspace", str(exc)) from None
    if not isinstance(data["dry_run"], bool):
        raise ConfigError(src, "dry_run", f"expected true or false, got {data['dry_run']!r}")
    topic = data["trajectory_topic"]
    preset = HardwarePreset(
        name=src.stem,
        family=arm.family,
        driver=_text(data, "driver", src),
        controller=_text(data, "controller", src),
        action=_text(data, "action", src, absolute=True),
        trajectory_topic=None if topic is None else _text(data, "trajectory_topic", src, absolute=True),
        joint_states_topic=_text(data, "joint_states_topic", src, absolute=True),
        joint_states_rate=rate,
        control_rate=control_rate,
        watchdog_timeout=timeout,
        max_start_deviation=number(data["max_start_deviation"], src, "max_start_deviation", non_negative=True),
        position_margin=number(data["position_margin"], src, "position_margin", non_negative=True),
        workspace=workspace,
        dry_run=data["dry_run"],
        joint_names=tuple(names),
        joint_map=joint_map,
        lower=table[:, 0], upper=table[:, 1], velocity=table[:, 2], acceleration=table[:, 3], jerk=table[:, 4],
        simulation_only=simulation_only,
    )
    try:
        preset.safety_limits(arm)
    except ValueError as exc:
        raise ConfigError(src, "limits", str(exc)) from None
    return preset


def _joint_map(raw: dict, names: list[str], arm: Arm, src: Path) -> dict[str, str]:
    """Hardware → model names: every hardware joint once, onto every family joint once."""
    if set(raw) != set(names):
        raise ConfigError(src, "joint_map", f"needs exactly the joints {names}, got {list(raw)}")
    for hardware, model in raw.items():
        if model not in arm.joint_names:
            raise ConfigError(src, f"joint_map.{hardware}", f"'{model}' is not a joint of the {arm.family} family "
                                                            f"({', '.join(arm.joint_names)})")
    targets = list(raw.values())
    repeated = sorted({m for m in targets if targets.count(m) > 1})
    if repeated:
        raise ConfigError(src, "joint_map", f"model joints {repeated} are mapped more than once")
    return {n: raw[n] for n in names}


def _joint_limits(raw: object, joint: Joint, family: str, src: Path, field: str,
                  simulation_only: bool = False) -> list[float]:
    """One joint's [lower, upper, velocity, acceleration, jerk (inf if not given)], refused if wider than the
    family's (acceleration may be for a ``simulation_only`` preset)."""
    raw = mapping(raw, src, field)
    unknown_keys(raw, set(_LIMIT_FIELDS + _OPTIONAL_LIMIT_FIELDS), src, field)
    for key in _LIMIT_FIELDS:
        if key not in raw:
            raise ConfigError(src, f"{field}.{key}", "required field is missing")
    lower, upper = number(raw["lower"], src, f"{field}.lower"), number(raw["upper"], src, f"{field}.upper")
    if lower >= upper:
        raise ConfigError(src, f"{field}.lower", f"lower limit {lower} is not below upper limit {upper}")
    velocity = number(raw["velocity"], src, f"{field}.velocity", positive=True)
    acceleration = number(raw["acceleration"], src, f"{field}.acceleration", positive=True)
    jerk = number(raw["jerk"], src, f"{field}.jerk", positive=True) if "jerk" in raw else np.inf
    published = f"the {family} family's published limit for {joint.name}"
    if lower < joint.lower - _SLACK:
        raise ConfigError(src, f"{field}.lower", f"{lower} is wider than {published} ({joint.lower})")
    if upper > joint.upper + _SLACK:
        raise ConfigError(src, f"{field}.upper", f"{upper} is wider than {published} ({joint.upper})")
    if velocity > joint.velocity + _SLACK:
        raise ConfigError(src, f"{field}.velocity", f"{velocity} rad/s exceeds {published} ({joint.velocity})")
    if acceleration > joint.acceleration + _SLACK and not simulation_only:
        raise ConfigError(src, f"{field}.acceleration",
                          f"{acceleration} rad/s² exceeds {published} ({joint.acceleration})")
    return [lower, upper, velocity, acceleration, jerk]
