"""The PyBullet backend: the arm from its generated URDF, optionally on the table-top puck scene (whose puck
physics are ``table``, a :class:`~mtrl_robot.scenes.puck_table.PybulletPuckTable`).

Each backend owns a PyBullet client in DIRECT mode, so several can coexist in one process. Joints are
driven by POSITION_CONTROL motors whose force limit is the joint's effort limit; one control step is one
physics step. With a scene, the arm's base stands at ``table_top + scene.mount_height(family)`` and
:meth:`PybulletBackend.flange_position` is in that world frame. A scene's paddle is a massless ``paddle``
link fixed to the flange (a thin stick along the flange z axis ending in a ball, as in MuJoCo); like every
arm geom in MuJoCo, it touches the puck but not the table.

Domain randomization maps onto PyBullet as follows. The table has lateral friction 1 and no rolling or
spinning friction; Bullet multiplies lateral coefficients and combines rolling and spinning ones as
``a.rolling · b.lateral + b.rolling · a.lateral``, so puck–table contacts get the puck's own values.
Unlike MuJoCo's single contact, Bullet touches the puck at several points of its rim, so lateral friction
alone already resists spinning; ``spinningFriction`` adds to that.

=========================  ===================================================  ===============================
parameter                  PyBullet (``changeDynamics`` on the puck or arm)     returned value
=========================  ===================================================  ===============================
puck.friction.slide_x      ``lateralFriction``                                  read back (``getDynamicsInfo``)
puck.friction.slide_y      ``anisotropicFriction = [1, slide_y / slide_x, 1]``  slide_x read back × the applied
                           (one lateral coefficient scaled per direction of     ratio: anisotropic friction
                           the puck's own frame, which turns as the puck spins) cannot be read back
puck.friction.torsional    ``spinningFriction``                                 read back
puck.friction.roll_x       ``rollingFriction = (roll_x + roll_y) / 2`` (one     read back: both report the
puck.friction.roll_y       rolling coefficient for every axis)                  engine's single coefficient
puck.mass                  ``mass`` and the cylinder's inertia                  read back
puck.offset_x, offset_y    the puck's start position, now and at every reset    read back from its position
arm.damping_scale          ``jointDamping`` of every arm joint                  read back (``getJointInfo``)
arm.mass_scale             ``mass`` and ``localInertiaDiagonal`` of every link  read back
arm.friction_scale         not modelled: PyBullet ignores URDF joint friction   nan (nothing to act on)
=========================  ===================================================  ===============================
"""

from __future__ import annotations

import math
import shutil
import tempfile
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pybullet as p

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.urdf import arm_to_urdf
from mtrl_robot.backends.interface import ExecutionResult, SimBackend
from mtrl_robot.backends.trajectory import GoalTolerance, JointLimits, JointState, JointTrajectory, start_from
from mtrl_robot.randomization import check_sample
from mtrl_robot.scenes.puck_table import PADDLE_STICK_RADIUS, PybulletPuckTable, Scene, world_nominal_parameters

GRAVITY = 9.81  # m/s²
POSITION_GAIN = 0.3  # PyBullet position-motor gain: fraction of the position error corrected per step


def _with_paddle(urdf: str, arm: Arm, scene: Scene) -> str:
    """``urdf`` plus the scene's paddle as a massless link fixed to the flange (unchanged without a paddle)."""
    if scene.paddle_radius <= 0:
        return urdf
    robot = ET.fromstring(urdf)
    link = ET.SubElement(robot, "link", name="paddle")
    inertial = ET.SubElement(link, "inertial")
    ET.SubElement(inertial, "mass", value="0")
    ET.SubElement(inertial, "inertia", ixx="0", ixy="0", ixz="0", iyy="0", iyz="0", izz="0")
    length = scene.paddle_length
    for z, shape in ((length / 2, {"tag": "cylinder", "radius": PADDLE_STICK_RADIUS, "length": length}),
                     (length, {"tag": "sphere", "radius": scene.paddle_radius})):
        for kind in ("visual", "collision"):
            element = ET.SubElement(link, kind)
            ET.SubElement(element, "origin", xyz=f"0 0 {z!r}", rpy="0 0 0")
            ET.SubElement(ET.SubElement(element, "geometry"), shape["tag"],
                          {k: repr(v) for k, v in shape.items() if k != "tag"})
    joint = ET.SubElement(robot, "joint", name="paddle_fixed", type="fixed")
    ET.SubElement(joint, "parent", link=arm.flange_link)
    ET.SubElement(joint, "child", link="paddle")
    return ET.tostring(robot, encoding="unicode") + "\n"


def _release(client: int, folder: str) -> None:
    if p.isConnected(physicsClientId=client):
        p.disconnect(physicsClientId=client)
    shutil.rmtree(folder, ignore_errors=True)


class PybulletBackend(SimBackend):
    """One arm (and optionally the puck scene) simulated in its own PyBullet client."""

    def __init__(self, arm: Arm, scene: Scene | None = None, control_dt: float = 1.0 / 240.0):
        self.arm, self.scene, self.control_dt = arm, scene, float(control_dt)
        self._limits = JointLimits(arm.joint_names, arm.lower, arm.upper, arm.velocity_limits,
                                   np.array([j.effort for j in arm.joints]),
                                   np.array([j.acceleration for j in arm.joints]))
        folder = tempfile.mkdtemp(prefix="mtrl_pybullet_")
        self.urdf_path = Path(folder) / f"{arm.robot_id}.urdf"
        self.urdf_path.write_text(arm_to_urdf(arm) if scene is None else _with_paddle(arm_to_urdf(arm), arm, scene))
        self.client = p.connect(p.DIRECT)
        self._closer = weakref.finalize(self, _release, self.client, folder)
        self._steps = 0
        self._trajectory: JointTrajectory | None = None
        self._start = 0.0
        self._result: ExecutionResult | None = None
        self.table: PybulletPuckTable | None = None
        self._settled = GoalTolerance.default(arm.dof)
        self._build()
        self.apply_randomization({})
        self.reset()

    # ---------------------------------------------------------------------------------------- building

    def _call(self, function, *args, **kwargs):
        return function(*args, physicsClientId=self.client, **kwargs)

    def _build(self) -> None:
        self._call(p.setTimeStep, self.control_dt)
        self._call(p.setGravity, 0.0, 0.0, -GRAVITY)
        mount = self.scene.table_top + self.scene.mount_height(self.arm.family) if self.scene else 0.0
        self.robot = self._call(p.loadURDF, str(self.urdf_path), basePosition=[0.0, 0.0, mount],
                                useFixedBase=True, flags=p.URDF_USE_INERTIA_FROM_FILE)
        names = {}
        for index in range(self._call(p.getNumJoints, self.robot)):
            info = self._call(p.getJointInfo, self.robot, index)
            names[info[1].decode()] = index
            if info[12].decode() == self.arm.flange_link:
                self._flange_index = index
            if info[12].decode() == "paddle":
                self._paddle_index = index
            self._call(p.changeDynamics, self.robot, index, linearDamping=0.0, angularDamping=0.0)
        self._joints = [names[n] for n in self.arm.joint_names]
        self._link_mass = np.array([self._call(p.getDynamicsInfo, self.robot, i)[0] for i in self._joints])
        self._link_inertia = np.array([self._call(p.getDynamicsInfo, self.robot, i)[2] for i in self._joints])
        self._damping = np.array(self.arm.damping or [0.0] * self.arm.dof, dtype=float)
        self._forces = self._limits.effort.tolist()
        if self.scene:
            self._build_scene(self.scene)

    def _build_scene(self, scene: Scene) -> None:
        half = [scene.table_size[0] / 2, scene.table_size[1] / 2, scene.table_thickness / 2]
        table_center = [*scene.table_center, scene.table_top - scene.table_thickness / 2]
        self.table = self._call(p.createMultiBody, 0.0, self._call(p.createCollisionShape, p.GEOM_BOX,
                                                                   halfExtents=half),
                                self._call(p.createVisualShape, p.GEOM_BOX, halfExtents=half,
                                           rgbaColor=[0.6, 0.45, 0.3, 1]), table_center)
        self._call(p.changeDynamics, self.table, -1, lateralFriction=1.0, rollingFriction=0.0, spinningFriction=0.0)
        if scene.paddle_radius > 0:
            self._call(p.setCollisionFilterPair, self.robot, self.table, self._paddle_index, -1, 0)
        shape = self._call(p.createCollisionShape, p.GEOM_CYLINDER, radius=scene.puck_radius, height=scene.puck_height)
        visual = self._call(p.createVisualShape, p.GEOM_CYLINDER, radius=scene.puck_radius, length=scene.puck_height,
                            rgbaColor=[0.1, 0.1, 0.1, 1])
        start = [*scene.puck_start, scene.table_top + scene.puck_height / 2]
        self.puck = self._call(p.createMultiBody, scene.puck_mass, shape, visual, start)
        self._call(p.changeDynamics, self.puck, -1, linearDamping=0.0, angularDamping=0.0)
        goal = self._call(p.createVisualShape, p.GEOM_CYLINDER, radius=scene.goal_radius, length=0.002,
                          rgbaColor=[0.1, 0.8, 0.1, 0.6])
        self.goal = self._call(p.createMultiBody, 0.0, -1, goal, [*scene.goal_position, scene.table_top + 0.001])
        self.table = PybulletPuckTable(self)

    # --------------------------------------------------------------------------------------- interface

    @property
    def limits(self) -> JointLimits:
        return self._limits

    @property
    def time(self) -> float:
        return self._steps * self.control_dt

    def _measured(self) -> tuple[np.ndarray, np.ndarray]:
        states = self._call(p.getJointStates, self.robot, self._joints)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def read_state(self) -> JointState:
        q, dq = self._measured()
        return JointState(self.arm.joint_names, q, dq, self.time)

    def _command(self, q: np.ndarray, dq: np.ndarray) -> None:
        self._call(p.setJointMotorControlArray, self.robot, self._joints, p.POSITION_CONTROL,
                   targetPositions=q.tolist(), targetVelocities=dq.tolist(), forces=self._forces,
                   positionGains=[POSITION_GAIN] * self.arm.dof)

    def send_trajectory(self, trajectory: JointTrajectory) -> None:
        """Validate and start; a first point after time 0 is reached from the current position (as ros2_control)."""
        traj = start_from(trajectory, self._limits, self._measured()[0])
        self._trajectory, self._start, self._result = traj, self.time, None
        # Set points for every control step, sampled once (vectorized) rather than per step.
        steps = math.ceil(traj.duration / self.control_dt - 1e-9) + 1
        self._plan = traj.sample(self.control_dt * np.arange(1, steps + 1))
        self._plan_step = 0

    def is_executing(self) -> bool:
        return self._trajectory is not None

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            if self._trajectory is not None:
                k = min(self._plan_step, len(self._plan[0]) - 1)
                self._command(self._plan[0][k], self._plan[1][k])
                self._plan_step += 1
            self._call(p.stepSimulation)
            self._steps += 1
            if self._trajectory is not None:
                self._check_goal()

    def _finish(self, success: bool, message: str) -> None:
        error = self._measured()[0] - self._trajectory.positions[-1]
        self._result = ExecutionResult(success, message, error, self.time - self._start)
        self._trajectory = None

    def _check_goal(self) -> None:
        late = self.time - self._start - self._trajectory.duration
        if late < -1e-9:
            return
        error = self._measured()[0] - self._trajectory.positions[-1]
        verdict = self._settled.verdict(self.arm.joint_names, late, error)
        if verdict is not None:
            self._finish(*verdict)

    def wait(self, timeout: float | None = None) -> ExecutionResult:
        """Also returns, once, the result of a trajectory that ended or was stopped since the last wait."""
        if self._trajectory is None:
            result, self._result = self._result, None
            return result or ExecutionResult(True, "no trajectory to wait for", np.zeros(self.arm.dof), 0.0)
        end = None if timeout is None else self._steps + round(timeout / self.control_dt)
        while self._trajectory is not None and (end is None or self._steps < end):
            self.step()
        if self._trajectory is not None:
            error = self._measured()[0] - self._trajectory.positions[-1]
            return ExecutionResult(False, f"timed out after {timeout} s, still executing", error,
                                   self.time - self._start)
        result, self._result = self._result, None
        return result

    def stop(self) -> None:
        if self._trajectory is not None:
            self._finish(False, "stopped")
        self._command(self._measured()[0], np.zeros(self.arm.dof))

    def reset(self, q: np.ndarray | None = None) -> JointState:
        q = self.arm.home_q if q is None else self.arm.check_q(q, "reset position")
        outside = np.flatnonzero((q < self.arm.lower) | (q > self.arm.upper))
        if outside.size:
            j = self.arm.joints[outside[0]]
            raise ValueError(f"reset position of {j.name} {q[outside[0]]:.4f} is outside [{j.lower}, {j.upper}]")
        for index, value in zip(self._joints, q, strict=True):
            self._call(p.resetJointState, self.robot, index, float(value), 0.0)
        self._command(q, np.zeros(self.arm.dof))
        self._trajectory, self._result = None, None
        if self.table is not None:
            self.table.reset()
        return self.read_state()

    def flange_position(self) -> np.ndarray:
        return np.array(self._call(p.getLinkState, self.robot, self._flange_index, computeForwardKinematics=True)[4])

    def close(self) -> None:
        self._closer()

    # ------------------------------------------------------------------------------------ randomization

    def nominal_parameters(self) -> dict[str, float]:
        """Nominal value of every randomizable parameter of this world."""
        return world_nominal_parameters(self.scene)

    def apply_randomization(self, sample: Mapping[str, float]) -> dict[str, float]:
        nominal = self.nominal_parameters()
        check_sample(sample, nominal)
        values = {**nominal, **sample}
        if self.scene and values["puck.friction.slide_x"] <= 0 < values["puck.friction.slide_y"]:
            raise ValueError("PyBullet scales y friction from x friction: slide_y > 0 needs slide_x > 0")
        self._apply_arm(values)
        readback = self._read_arm()
        if self.table is not None:
            readback.update(self.table.apply(values))
        return readback

    def _apply_arm(self, values: Mapping[str, float]) -> None:
        scale = values["arm.mass_scale"]
        for k, index in enumerate(self._joints):
            self._call(p.changeDynamics, self.robot, index, mass=float(self._link_mass[k] * scale),
                       localInertiaDiagonal=(self._link_inertia[k] * scale).tolist(),
                       jointDamping=float(self._damping[k] * values["arm.damping_scale"]))

    def _read_arm(self) -> dict[str, float]:
        self._call(p.syncBodyInfo)  # getJointInfo is cached on the client until synced
        mass = sum(self._call(p.getDynamicsInfo, self.robot, i)[0] for i in self._joints)
        damping = sum(self._call(p.getJointInfo, self.robot, i)[6] for i in self._joints)
        nominal_damping = float(self._damping.sum())
        return {"arm.mass_scale": mass / float(self._link_mass.sum()), "arm.friction_scale": math.nan,
                "arm.damping_scale": damping / nominal_damping if nominal_damping > 0 else math.nan}
