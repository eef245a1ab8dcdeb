"""MuJoCo models built programmatically (``mujoco.MjSpec``) from any :class:`Arm`, optionally on the puck table.

Names in the compiled model: bodies are the arm's link names (a base link named ``world``, the usual root of a
URDF, is MuJoCo's world body itself), hinge joints and position actuators the arm's joint names, the flange site
is ``flange``; the scene adds geoms ``table``, ``puck``, ``goal``, body and free joint ``puck``, contact pair
``puck_table``, camera ``overhead`` and, if it has one, the paddle on the arm's last link (geoms ``paddle_stick``
and ``paddle``, massless). ``prefix`` is prepended to every arm name so several arms can share one model.

Collisions: arm geoms touch only the puck (no self-collision, no arm–table contact); the puck touches the
table only through the explicit condim-6 pair, whose five friction coefficients are randomized.
"""

from __future__ import annotations

import mujoco
import numpy as np

from mtrl_robot.arms.chain import Arm
from mtrl_robot.scenes.puck_table import FRICTION_PARAMETERS, PADDLE_STICK_RADIUS, PAIR_FRICTION_ORDER, Scene

TIMESTEP = 0.002  # s
ARMATURE = 0.1  # kg·m², rotor inertia on every joint; keeps light wrists stable
SATURATION_ERROR = 0.02  # rad; the position gain is chosen so this error commands the joint's full effort
DAMPING_RATIO = 1.0  # position actuator damping, relative to critical at the model's reference posture
LINK_RADIUS = 0.035  # m, radius of the link capsules (drawn, and what touches the puck)
OFFSCREEN_SIZE = (1920, 1080)  # minimum offscreen framebuffer, pixels

# Collision bits: arm geoms collide with the puck only; puck–table contact comes from the explicit pair.
_ARM_CONTYPE, _ARM_CONAFFINITY = 1, 0
_PUCK_CONTYPE, _PUCK_CONAFFINITY = 0, 1


def _quat(rotation: np.ndarray) -> np.ndarray:
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rotation, dtype=float).ravel())
    return quat


def new_spec(name: str = "mtrl_robot", timestep: float = TIMESTEP) -> mujoco.MjSpec:
    """An empty spec with the project's simulation and rendering options."""
    if not timestep > 0:
        raise ValueError(f"the physics timestep must be positive, got {timestep} s")
    spec = mujoco.MjSpec()
    spec.modelname = name
    spec.compiler.degree = False  # joint ranges in radians
    spec.option.timestep = timestep
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC  # pyramidal cones bend a sliding puck towards their edges
    spec.visual.quality.shadowsize = 0
    spec.visual.global_.offwidth = OFFSCREEN_SIZE[0]
    spec.visual.global_.offheight = OFFSCREEN_SIZE[1]
    return spec


def add_arm(spec: mujoco.MjSpec, arm: Arm, mount: np.ndarray | None = None, prefix: str = "",
            rgba: tuple[float, float, float, float] = (0.85, 0.55, 0.2, 1.0)) -> None:
    """Add ``arm`` (bodies, hinges, actuators, flange site) to the world, its base at ``mount`` (4×4)."""
    base_pose = (np.eye(4) if mount is None else mount) @ arm.base_transform()
    placement = dict(pos=base_pose[:3, 3], quat=_quat(base_pose[:3, :3]))
    if prefix + arm.base_link == spec.worldbody.name:  # a URDF's "world" root is MuJoCo's world body itself
        body = spec.worldbody.add_frame(**placement)
    else:
        body = spec.worldbody.add_body(name=prefix + arm.base_link, **placement)
    for i, joint in enumerate(arm.joints):
        origin = arm.joint_origin(i)
        _add_segment(body, origin[:3, 3], rgba)
        link = arm.links[i]
        body = body.add_body(name=prefix + link.name, pos=origin[:3, 3], quat=_quat(origin[:3, :3]),
                             mass=link.mass, ipos=link.com, inertia=link.inertia, gravcomp=1.0)
        body.explicitinertial = True
        body.add_joint(name=prefix + joint.name, type=mujoco.mjtJoint.mjJNT_HINGE, axis=joint.axis,
                       range=(joint.lower, joint.upper), limited=mujoco.mjtLimited.mjLIMITED_TRUE,
                       damping=arm.damping[i], frictionloss=arm.friction[i], armature=ARMATURE)
        kp = joint.effort / SATURATION_ERROR
        actuator = spec.add_actuator(name=prefix + joint.name, target=prefix + joint.name,
                                     trntype=mujoco.mjtTrn.mjTRN_JOINT, ctrlrange=(joint.lower, joint.upper),
                                     ctrllimited=mujoco.mjtLimited.mjLIMITED_TRUE,
                                     forcerange=(-joint.effort, joint.effort),
                                     forcelimited=mujoco.mjtLimited.mjLIMITED_TRUE)
        actuator.set_to_position(kp=kp, dampratio=DAMPING_RATIO)
    flange = arm.flange_transform()
    _add_segment(body, flange[:3, 3], rgba)
    body.add_site(name=prefix + "flange", pos=flange[:3, 3], quat=_quat(flange[:3, :3]), size=(0.01, 0.01, 0.01),
                  rgba=(0.1, 0.8, 0.1, 1.0))


def _add_segment(body: mujoco.MjsBody | mujoco.MjsFrame, end: np.ndarray, rgba) -> None:
    """A capsule from the body's origin to ``end`` (a sphere when they coincide)."""
    common = dict(contype=_ARM_CONTYPE, conaffinity=_ARM_CONAFFINITY, rgba=rgba, mass=0.0)
    if np.linalg.norm(end) < 1e-6:
        body.add_geom(type=mujoco.mjtGeom.mjGEOM_SPHERE, size=(LINK_RADIUS, 0, 0), **common)
    else:
        body.add_geom(type=mujoco.mjtGeom.mjGEOM_CAPSULE, size=(LINK_RADIUS, 0, 0),
                      fromto=np.concatenate([np.zeros(3), end]), **common)


def add_paddle(spec: mujoco.MjSpec, arm: Arm, length: float, radius: float, prefix: str = "") -> None:
    """A massless stick from the flange along its z axis, ending in a ball of ``radius``; both touch the puck."""
    flange = arm.flange_transform()
    tip = flange[:3, 3] + length * flange[:3, 2]
    body = spec.body(prefix + arm.links[-1].name)
    common = dict(contype=_ARM_CONTYPE, conaffinity=_ARM_CONAFFINITY, rgba=(0.85, 0.85, 0.85, 1.0), mass=0.0)
    body.add_geom(name=prefix + "paddle_stick", type=mujoco.mjtGeom.mjGEOM_CAPSULE, size=(PADDLE_STICK_RADIUS, 0, 0),
                  fromto=np.concatenate([flange[:3, 3], tip]), **common)
    body.add_geom(name=prefix + "paddle", type=mujoco.mjtGeom.mjGEOM_SPHERE, size=(radius, 0, 0), pos=tip, **common)


def add_lights(spec: mujoco.MjSpec) -> None:
    """A key light from above and a soft fill light, no shadows."""
    spec.worldbody.add_light(name="key", pos=(0, 0, 4), dir=(0.3, 0.2, -1), diffuse=(0.7, 0.7, 0.7),
                             specular=(0.2, 0.2, 0.2), castshadow=False,
                             type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)
    spec.worldbody.add_light(name="fill", pos=(0, 0, 4), dir=(-0.4, -0.6, -0.5), diffuse=(0.3, 0.3, 0.3),
                             specular=(0, 0, 0), castshadow=False, type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)


def add_scene(spec: mujoco.MjSpec, scene: Scene) -> None:
    """Table, free puck, goal marker, overhead camera and the puck–table contact pair."""
    world = spec.worldbody
    cx, cy = scene.table_center
    top = scene.table_top
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX, pos=(cx, cy, top - scene.table_thickness / 2),
                   size=(scene.table_size[0] / 2, scene.table_size[1] / 2, scene.table_thickness / 2),
                   contype=0, conaffinity=0, rgba=(0.55, 0.42, 0.3, 1.0))
    world.add_geom(name="goal", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=(scene.goal_radius, 0.0005, 0),
                   pos=(*scene.goal_position, top + 0.0005), contype=0, conaffinity=0, rgba=(0.1, 0.8, 0.2, 0.6))
    r, h, m = scene.puck_radius, scene.puck_height, scene.puck_mass
    puck = world.add_body(name="puck", pos=(*scene.puck_start, top + h / 2), mass=m, ipos=(0, 0, 0),
                          inertia=(m * (3 * r**2 + h**2) / 12, m * (3 * r**2 + h**2) / 12, m * r**2 / 2))
    puck.explicitinertial = True
    puck.add_freejoint(name="puck")
    puck.add_geom(name="puck", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=(r, h / 2, 0), contype=_PUCK_CONTYPE,
                  conaffinity=_PUCK_CONAFFINITY, rgba=(0.15, 0.15, 0.8, 1.0), mass=0.0)
    nominal = dict(zip(FRICTION_PARAMETERS, scene.puck_friction, strict=True))
    spec.add_pair(name="puck_table", geomname1="puck", geomname2="table", condim=6,
                  friction=[nominal[name] for name in PAIR_FRICTION_ORDER])
    camera = world.add_camera(name="overhead", pos=scene.camera_position, quat=(1, 0, 0, 0), fovy=scene.camera_fovy)
    camera.resolution = scene.camera_size


def build_spec(arm: Arm, scene: Scene | None = None, timestep: float = TIMESTEP) -> mujoco.MjSpec:
    """One arm, optionally mounted at its family's height above the table of ``scene``."""
    spec = new_spec(arm.robot_id, timestep)
    add_lights(spec)
    mount = np.eye(4)
    if scene is not None:
        mount[2, 3] = scene.table_top + scene.mount_height(arm.family)
    add_arm(spec, arm, mount)
    if scene is not None:
        add_scene(spec, scene)
        if scene.paddle_radius > 0:
            add_paddle(spec, arm, scene.paddle_length, scene.paddle_radius)
    return spec


def build_model(arm: Arm, scene: Scene | None = None, timestep: float = TIMESTEP) -> mujoco.MjModel:
    return build_spec(arm, scene, timestep).compile()


def build_puck_model(scene: Scene, timestep: float) -> mujoco.MjModel:
    """The scene without any arm: the puck alone on the table."""
    spec = new_spec("puck", timestep)
    add_scene(spec, scene)
    return spec.compile()
