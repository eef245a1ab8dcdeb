"""Hardware presets (``config/hardware/*.yaml``): how one real arm is reached and how far it may go.

A preset names the vendor driver's controller, action and topics, the joints in hardware order with a map to
the family model's joint names, and conservative limits that may never be wider than the family's published
ones (and must give a jerk limit for every joint whose family publishes one). :meth:`HardwarePreset.safety_limits`
turns it into the safety layer's :class:`SafetyLimits`. The file's fields are :class:`HardwarePresetFile`'s, read
by :func:`mtrl_robot.core.config.load_config` (``base: <preset>`` takes the fields a file does not set from
another preset of the folder); :func:`load_preset` then checks them
against the arm family and builds the :class:`HardwarePreset`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtrl_robot.arms.chain import Arm, Joint
from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.family_file import is_family_file
from mtrl_robot.backends.trajectory import JointState, JointTrajectory
from mtrl_robot.core.config import Limit, load_config, setting
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.paths import data_dir
from mtrl_robot.hardware.safety import SafetyLimits, Workspace

_SLACK = 1e-9  # a preset value equal to the family's, up to round-off, is not wider
RATE = Limit(10_000.0, "no driver publishes joint states faster")
WATCHDOG = Limit(5.0, "a longer silence must stop the arm")
START_DEVIATION = Limit(0.5, "a start farther from the measured state is a jump, not a start")


@dataclass(frozen=True)
class JointLimits:
    """One joint's limits in a preset file; never wider than the family's published ones."""

    lower: float = setting(doc="rad")
    upper: float = setting(doc="rad")
    velocity: float = setting(doc="rad/s", above=0)
    acceleration: float = setting(doc="rad/s²", above=0)
    jerk: float | None = setting(None, "rad/s³; null: not checked (no published value)", above=0)

    def __post_init__(self) -> None:
        if self.lower >= self.upper:
            raise ConfigError(None, "lower", f"lower limit {self.lower} is not below upper limit {self.upper}")


@dataclass(frozen=True)
class WorkspaceBox:
    """The flange's box in the arm's base frame, m."""

    min: tuple[float, float, float] = setting(doc="x, y, z of the lowest corner")
    max: tuple[float, float, float] = setting(doc="x, y, z of the highest corner")


@dataclass(frozen=True)
class HardwarePresetFile:
    """A hardware preset as written in ``config/hardware/<name>.yaml``."""

    family: str = setting(doc="arm family of the model: a built-in name, or a family file (relative to this preset)")
    driver: str = setting(doc="the vendor's ROS 2 driver")
    controller: str = setting(doc="the driver's joint trajectory controller")
    action: str = setting(doc="its FollowJointTrajectory action (absolute ROS name)")
    trajectory_topic: str | None = setting(doc="its JointTrajectory topic (absolute ROS name), or null")
    joint_states_topic: str = setting(doc="absolute ROS name")
    joint_states_rate: float = setting(doc="Hz, as the driver is configured to publish", above=0, maximum=RATE)
    control_rate: float = setting(doc="Hz, the controller's update rate: a step at a waypoint happens within one "
                                      "period", above=0, maximum=RATE)
    watchdog_timeout: float = setting(doc="s without a joint state before the arm is stopped", above=0,
                                      maximum=WATCHDOG)
    max_start_deviation: float = setting(doc="rad between a trajectory's start and the measured state", minimum=0,
                                         maximum=START_DEVIATION)
    position_margin: float = setting(doc="rad kept inside the position limits", minimum=0)
    workspace: WorkspaceBox = setting(doc="the flange's box")
    dry_run: bool = setting(doc="check and log motions without sending them")
    joint_names: tuple[str, ...] = setting(doc="the hardware's joints, in its order")
    joint_map: dict[str, str] = setting(doc="hardware joint name → family model joint name")
    limits: dict[str, JointLimits] = setting(doc="per hardware joint: rad, rad/s, rad/s², rad/s³")
    simulated: bool = setting(False, "the arm is this package's simulated arm node: a node that moves it may "
                                     "activate itself (a real arm waits for a person to activate it)")

    def __post_init__(self) -> None:
        for key in ("action", "trajectory_topic", "joint_states_topic"):
            value = getattr(self, key)
            if value is not None and not value.startswith("/"):
                raise ConfigError(None, key, f"'{value}' must be an absolute ROS name (starting with '/')")


@dataclass(frozen=True)
class HardwarePreset:
    """One arm as its driver exposes it; arrays are in hardware joint order."""

    name: str
    family: str  # a built-in name, or the family file's path
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
    simulated: bool = False  # this package's simulated arm node, not a real arm

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(self.joint_map[n] for n in self.joint_names)

    @property
    def model_to_hardware(self) -> dict[str, str]:
        """Family model joint name → hardware joint name: ``joint_map`` the other way round."""
        return {model: hardware for hardware, model in self.joint_map.items()}

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
        names = list(state.names)
        index = [names.index(n) for n in self.joint_names]
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


def _parse(src: Path) -> HardwarePreset:
    """The preset of file ``src``, checked against its arm family."""
    data = load_config(HardwarePresetFile, src)
    family = str(src.parent / data.family) if is_family_file(data.family) else data.family  # relative to the preset
    try:
        arm = load_family(family)
    except ConfigError as exc:
        if exc.source is not None:  # a family file's own error names that file
            raise
        raise ConfigError(src, "family", exc.problem) from None
    names = list(data.joint_names)
    if len(set(names)) != len(names):
        raise ConfigError(src, "joint_names", f"joint names repeat: {names}")
    if len(names) != arm.dof:
        raise ConfigError(src, "joint_names", f"{len(names)} joints, but the {arm.family} family has {arm.dof} "
                                              f"({', '.join(arm.joint_names)})")
    joint_map = _joint_map(data.joint_map, names, arm, src)
    if set(data.limits) != set(names):
        raise ConfigError(src, "limits", f"needs exactly the joints {names}, got {list(data.limits)}")
    family_joints = {j.name: j for j in arm.joints}
    table = np.array([_joint_limits(data.limits[n], family_joints[joint_map[n]], arm.family, src, f"limits.{n}")
                      for n in names])
    if data.watchdog_timeout < 2.0 / data.joint_states_rate:
        raise ConfigError(src, "watchdog_timeout", f"{data.watchdog_timeout} s is shorter than two joint-state "
                                                   f"periods at {data.joint_states_rate} Hz "
                                                   f"({2.0 / data.joint_states_rate} s)")
    try:
        workspace = Workspace(np.array(data.workspace.min), np.array(data.workspace.max))
    except ValueError as exc:
        raise ConfigError(src, "workspace", str(exc)) from None
    preset = HardwarePreset(
        name=src.stem,
        family=family,
        driver=data.driver,
        controller=data.controller,
        action=data.action,
        trajectory_topic=data.trajectory_topic,
        joint_states_topic=data.joint_states_topic,
        joint_states_rate=data.joint_states_rate,
        control_rate=data.control_rate,
        watchdog_timeout=data.watchdog_timeout,
        max_start_deviation=data.max_start_deviation,
        position_margin=data.position_margin,
        workspace=workspace,
        dry_run=data.dry_run,
        joint_names=tuple(names),
        joint_map=joint_map,
        lower=table[:, 0], upper=table[:, 1], velocity=table[:, 2], acceleration=table[:, 3], jerk=table[:, 4],
        simulated=data.simulated,
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


def _joint_limits(limits: JointLimits, joint: Joint, family: str, src: Path, field: str) -> list[float]:
    """One joint's [lower, upper, velocity, acceleration, jerk (inf if the family publishes none)], refused if
    wider than the family's or without the jerk limit the family publishes."""
    lower, upper, velocity, acceleration = limits.lower, limits.upper, limits.velocity, limits.acceleration
    jerk = np.inf if limits.jerk is None else limits.jerk
    published = f"the {family} family's published limit for {joint.name}"
    if lower < joint.lower - _SLACK:
        raise ConfigError(src, f"{field}.lower", f"{lower} is wider than {published} ({joint.lower})")
    if upper > joint.upper + _SLACK:
        raise ConfigError(src, f"{field}.upper", f"{upper} is wider than {published} ({joint.upper})")
    if velocity > joint.velocity + _SLACK:
        raise ConfigError(src, f"{field}.velocity", f"{velocity} rad/s exceeds {published} ({joint.velocity})")
    if acceleration > joint.acceleration + _SLACK:
        raise ConfigError(src, f"{field}.acceleration",
                          f"{acceleration} rad/s² exceeds {published} ({joint.acceleration})")
    if joint.jerk is not None and limits.jerk is None:
        raise ConfigError(src, f"{field}.jerk", f"missing: the {family} family publishes a jerk limit for "
                                                f"{joint.name} ({joint.jerk} rad/s³)")
    if joint.jerk is not None and jerk > joint.jerk + _SLACK:
        raise ConfigError(src, f"{field}.jerk", f"{jerk} rad/s³ exceeds {published} ({joint.jerk})")
    return [lower, upper, velocity, acceleration, jerk]
