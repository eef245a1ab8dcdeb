"""The arm model: a serial chain of revolute joints from a base frame to a flange frame.

Every joint follows the URDF convention
``T = Trans(xyz) · Rz(yaw) · Ry(pitch) · Rx(roll) · Rot(axis, q + zero_offset)``.
``zero_offset`` is a calibration error: the angle the encoder reports is ``q``, the true one is
``q + zero_offset``. Every backend and both FK implementations use :meth:`Arm.joint_origin`, so
they agree by construction on what a robot is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import cached_property

import numpy as np

from mtrl_robot.core.errors import JointVectorError


def rpy_to_matrix(rpy: np.ndarray) -> np.ndarray:
    """URDF fixed-axis roll-pitch-yaw: R = Rz(yaw) · Ry(pitch) · Rx(roll)."""
    r, p, y = rpy
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def axis_angle_to_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation by ``angle`` about the unit vector ``axis`` (Rodrigues)."""
    x, y, z = axis
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def transform(xyz: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """4×4 homogeneous transform from a translation and a 3×3 rotation."""
    t = np.eye(4)
    t[:3, :3] = rotation
    t[:3, 3] = xyz
    return t


@dataclass(frozen=True)
class Joint:
    """A revolute joint and its origin in the parent link's frame."""

    name: str
    parent: str
    child: str
    xyz: tuple[float, float, float]
    rpy: tuple[float, float, float]
    axis: tuple[float, float, float]
    lower: float
    upper: float
    velocity: float
    effort: float
    acceleration: float = 10.0
    zero_offset: float = 0.0
    jerk: float | None = None  # rad/s³, where the arm's maker publishes one; None: none published


@dataclass(frozen=True)
class Link:
    """A rigid link: mass (kg), centre of mass and principal inertia in the link frame."""

    name: str
    mass: float
    com: tuple[float, float, float] = (0.0, 0.0, 0.0)
    inertia: tuple[float, float, float] = (1e-3, 1e-3, 1e-3)


@dataclass(frozen=True)
class Arm:
    """One robot: an arm family's nominal parameters or a perturbed member of a population."""

    family: str
    robot_id: str
    base_link: str
    flange_link: str
    joints: tuple[Joint, ...]
    links: tuple[Link, ...]
    base_xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    base_rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    flange_xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    flange_rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    home: tuple[float, ...] = ()
    damping: tuple[float, ...] = ()
    friction: tuple[float, ...] = ()
    description: str = ""
    parameters: dict[str, float] = field(default_factory=dict)

    @property
    def dof(self) -> int:
        return len(self.joints)

    @cached_property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    @cached_property
    def _joint_arrays(self) -> dict[str, np.ndarray]:
        """The per-joint arrays, built once: the properties below hand out copies (planning a target reads them
        several times)."""
        return {"lower": np.array([j.lower for j in self.joints]), "upper": np.array([j.upper for j in self.joints]),
                "velocity": np.array([j.velocity for j in self.joints]),
                "home": np.array(self.home, dtype=float) if self.home else np.zeros(self.dof)}

    @property
    def lower(self) -> np.ndarray:
        return self._joint_arrays["lower"].copy()

    @property
    def upper(self) -> np.ndarray:
        return self._joint_arrays["upper"].copy()

    @property
    def velocity_limits(self) -> np.ndarray:
        return self._joint_arrays["velocity"].copy()

    @property
    def home_q(self) -> np.ndarray:
        return self._joint_arrays["home"].copy()

    def base_transform(self) -> np.ndarray:
        return transform(np.array(self.base_xyz), rpy_to_matrix(np.array(self.base_rpy)))

    def flange_transform(self) -> np.ndarray:
        """Last joint's child link → flange."""
        return transform(np.array(self.flange_xyz), rpy_to_matrix(np.array(self.flange_rpy)))

    def joint_origin(self, i: int) -> np.ndarray:
        """Parent link → joint frame at q = 0, including the joint's zero offset."""
        j = self.joints[i]
        axis = np.asarray(j.axis, dtype=float)
        rotation = rpy_to_matrix(np.array(j.rpy)) @ axis_angle_to_matrix(axis, j.zero_offset)
        return transform(np.array(j.xyz), rotation)

    def check_q(self, q: np.ndarray, what: str = "joint vector") -> np.ndarray:
        """Return ``q`` as floats with shape (..., dof), or raise naming the problem."""
        q = np.asarray(q, dtype=float)
        if q.ndim == 0 or q.shape[-1] != self.dof:
            raise JointVectorError(
                f"{what} for {self.robot_id} must have {self.dof} values "
                f"({', '.join(self.joint_names)}), got shape {q.shape}"
            )
        if not np.all(np.isfinite(q)):
            bad = sorted({self.joint_names[i] for i in np.argwhere(~np.isfinite(q))[:, -1]})
            raise JointVectorError(f"{what} for {self.robot_id} has NaN or inf at {', '.join(bad)}")
        return q

    def with_changes(self, **changes) -> Arm:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict) -> Arm:
        def tup(v):
            return tuple(v) if isinstance(v, list) else v

        joints = tuple(Joint(**{k: tup(v) for k, v in j.items()}) for j in data["joints"])
        links = tuple(Link(**{k: tup(v) for k, v in ln.items()}) for ln in data["links"])
        rest = {k: tup(v) for k, v in data.items() if k not in ("joints", "links")}
        return Arm(joints=joints, links=links, **rest)
