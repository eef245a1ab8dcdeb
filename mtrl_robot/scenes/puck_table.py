"""The puck table: its template (``sim/scenes/*.yaml``: table, puck, goal marker, overhead camera, paddle) and the
puck's physics in MuJoCo and PyBullet (:class:`PuckTable`), beside the generic simulated arm.

The backends build the scene's bodies with the rest of their model and hold a :class:`PuckTable` over them; the
puck's parameters, its state and its sliding to rest live here, not in the robot interface.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mtrl_robot.core.config import load_yaml, mapping, number, unknown_keys, vector
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.paths import data_dir
from mtrl_robot.randomization import ARM_PARAMETERS

if TYPE_CHECKING:
    import mujoco

    from mtrl_robot.backends.mujoco_backend import MujocoBackend
    from mtrl_robot.backends.pybullet_backend import PybulletBackend

FRICTION_PARAMETERS = ("slide_x", "slide_y", "torsional", "roll_x", "roll_y")
PADDLE_STICK_RADIUS = 0.01  # m, radius of the stick that holds the paddle ball
# MuJoCo's contact frame for the puck on the flat table: normal −z, first tangent world y, second world x.
# The pair's five coefficients are [slide t1, slide t2, torsional, roll about t1, roll about t2], so the
# scene's x/y coefficients go in this order to act along world x and y.
PAIR_FRICTION_ORDER = ("slide_y", "slide_x", "torsional", "roll_y", "roll_x")


@dataclass(frozen=True)
class Scene:
    table_center: tuple[float, float]
    table_size: tuple[float, float]
    table_top: float
    table_thickness: float
    puck_radius: float
    puck_height: float
    puck_mass: float
    puck_start: tuple[float, float]
    puck_friction: tuple[float, float, float, float, float]
    goal_position: tuple[float, float]
    goal_radius: float
    camera_position: tuple[float, float, float]
    camera_fovy: float
    camera_size: tuple[int, int]  # width, height
    mount_heights: dict[str, float]
    paddle_length: float = 0.0  # flange to the paddle ball's centre along the flange z axis; 0: no paddle
    paddle_radius: float = 0.0  # radius of the paddle ball

    def mount_height(self, family: str) -> float:
        return self.mount_heights.get(family, self.mount_heights.get("default", 0.0))

    def nominal_parameters(self) -> dict[str, float]:
        """Nominal values of every randomizable parameter (see ``mtrl_robot.randomization``)."""
        values = {f"puck.friction.{n}": v for n, v in zip(FRICTION_PARAMETERS, self.puck_friction, strict=True)}
        values.update({"puck.mass": self.puck_mass, "puck.offset_x": 0.0, "puck.offset_y": 0.0})
        return {**values, **arm_nominal_parameters()}


def arm_nominal_parameters() -> dict[str, float]:
    """The arm's randomizable parameters are scale factors, nominally 1."""
    return dict.fromkeys(ARM_PARAMETERS, 1.0)


def world_nominal_parameters(scene: Scene | None) -> dict[str, float]:
    """Nominal values of everything randomizable in a world: the arm's, plus the scene's if there is one."""
    return scene.nominal_parameters() if scene is not None else arm_nominal_parameters()


def load_scene(name_or_path: str | Path = "puck_table") -> Scene:
    path = Path(name_or_path)
    if not path.suffix:
        path = data_dir("sim") / "scenes" / f"{name_or_path}.yaml"
    src = path
    data = mapping(load_yaml(path), src, "")
    unknown_keys(data, {"table", "puck", "goal", "camera", "arm_mount_height", "paddle"}, src, "")
    table = mapping(data.get("table"), src, "table")
    puck = mapping(data.get("puck"), src, "puck")
    goal = mapping(data.get("goal"), src, "goal")
    camera = mapping(data.get("camera"), src, "camera")
    friction = vector(puck.get("friction"), 5, src, "puck.friction")
    for i, f in enumerate(friction):
        if f < 0:
            raise ConfigError(src, f"puck.friction[{i}]", f"friction must not be negative, got {f}")
    mounts = mapping(data.get("arm_mount_height", {}), src, "arm_mount_height")
    paddle = mapping(data.get("paddle", {"length": 0.0, "radius": 0.0}), src, "paddle")
    unknown_keys(paddle, {"length", "radius"}, src, "paddle")
    return Scene(
        table_center=vector(table.get("center"), 2, src, "table.center"),
        table_size=tuple(number(v, src, "table.size", positive=True)
                         for v in vector(table.get("size"), 2, src, "table.size")),
        table_top=number(table.get("top_height", 0.0), src, "table.top_height"),
        table_thickness=number(table.get("thickness", 0.04), src, "table.thickness", positive=True),
        puck_radius=number(puck.get("radius"), src, "puck.radius", positive=True),
        puck_height=number(puck.get("height"), src, "puck.height", positive=True),
        puck_mass=number(puck.get("mass"), src, "puck.mass", positive=True),
        puck_start=vector(puck.get("start"), 2, src, "puck.start"),
        puck_friction=friction,
        goal_position=vector(goal.get("position"), 2, src, "goal.position"),
        goal_radius=number(goal.get("radius"), src, "goal.radius", positive=True),
        camera_position=vector(camera.get("position"), 3, src, "camera.position"),
        camera_fovy=number(camera.get("fovy"), src, "camera.fovy", positive=True),
        camera_size=(int(number(camera.get("width"), src, "camera.width", positive=True)),
                     int(number(camera.get("height"), src, "camera.height", positive=True))),
        mount_heights={str(k): number(v, src, f"arm_mount_height.{k}") for k, v in mounts.items()},
        paddle_length=number(paddle.get("length"), src, "paddle.length", non_negative=True),
        paddle_radius=number(paddle.get("radius"), src, "paddle.radius", non_negative=True),
    )


# ------------------------------------------------------------------------------------------ the puck's physics

PUCK_TIMESTEP = 0.01  # s, physics step of MuJoCo's arm-free puck model (sliding needs no finer step)
_PUCK_CHECK = 0.02  # s of puck-only simulation between rest checks


class PuckTable(ABC):
    """The puck scene's physics in one simulator, beside the arm's: puck parameters, state and sliding to rest.

    The backend that built the scene's bodies holds one (``backend.table``) and hands it the puck parameters of
    every randomization sample; tasks read the puck and let it slide to rest through it.
    """

    def __init__(self, scene: Scene):
        self.scene = scene

    @abstractmethod
    def apply(self, values: Mapping[str, float]) -> dict[str, float]:
        """Set the puck's parameters (every ``puck.*`` parameter) and return them as the engine now holds
        them; the start offset puts the puck there at every reset."""

    @abstractmethod
    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """World position (x, y, z) and linear velocity of the puck."""

    @abstractmethod
    def settle(self, max_time: float, rest_speed: float) -> float:
        """Hold the arm still and simulate until the puck's horizontal speed is below ``rest_speed`` (m/s), it
        drops below the table top, or ``max_time`` s pass; return the time simulated."""

    def sliding(self, position: np.ndarray, velocity: np.ndarray, rest_speed: float) -> bool:
        """Is the puck still moving on (or above) the table?"""
        return math.hypot(velocity[0], velocity[1]) >= rest_speed and position[2] >= self.scene.table_top


class MujocoPuckTable(PuckTable):
    """The puck in a MuJoCo backend's model (``puck`` body and free joint, ``puck_table`` contact pair).

    :meth:`settle` freezes the arm and simulates the puck alone, in an arm-free copy of the scene stepped at
    ``PUCK_TIMESTEP``, then writes the puck's state back: call it once the arm can no longer touch the puck.
    """

    def __init__(self, backend: MujocoBackend, solo: mujoco.MjModel):
        import mujoco  # here, not at the top: the scene's template is read where no simulator is needed

        super().__init__(backend.scene)
        self._mj = mujoco
        m = backend.model
        self._backend, self._model, self._data = backend, m, backend.data
        self._pair, self._puck = m.pair("puck_table").id, m.body("puck").id
        self._qadr, self._dof = int(m.jnt_qposadr[m.joint("puck").id]), int(m.jnt_dofadr[m.joint("puck").id])
        self._friction_names = [f"puck.friction.{n}" for n in PAIR_FRICTION_ORDER]
        self._nominal = {"friction": m.pair_friction[self._pair].copy(), "mass": m.body_mass[self._puck].copy(),
                         "inertia": m.body_inertia[self._puck].copy(),
                         "start": m.qpos0[self._qadr:self._qadr + 2].copy()}
        self._solo, self._solo_data = solo, self._mj.MjData(solo)
        self._solo_puck = solo.body("puck").id

    def apply(self, values: Mapping[str, float]) -> dict[str, float]:
        m, nominal, pair, puck, a = self._model, self._nominal, self._pair, self._puck, self._qadr
        m.pair_friction[pair] = nominal["friction"]
        m.pair_friction[pair, :5] = [values[n] for n in self._friction_names]
        mass_ratio = values["puck.mass"] / self.scene.puck_mass
        m.body_mass[puck] = nominal["mass"] * mass_ratio
        m.body_inertia[puck] = nominal["inertia"] * mass_ratio
        m.qpos0[a:a + 2] = nominal["start"] + (values["puck.offset_x"], values["puck.offset_y"])
        solo = self._solo
        solo.pair_friction[0] = m.pair_friction[pair]
        solo.body_mass[self._solo_puck], solo.body_inertia[self._solo_puck] = m.body_mass[puck], m.body_inertia[puck]
        self._mj.mj_setConst(solo, self._solo_data)  # constraint scaling depends on the mass
        values = dict(zip(self._friction_names, m.pair_friction[self._pair, :5].tolist(), strict=True))
        values["puck.mass"] = float(m.body_mass[self._puck])
        values["puck.offset_x"], values["puck.offset_y"] = (m.qpos0[a:a + 2] - self._nominal["start"]).tolist()
        return values

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        d, a, v = self._data, self._qadr, self._dof
        return d.qpos[a:a + 3].copy(), d.qvel[v:v + 3].copy()

    def settle(self, max_time: float, rest_speed: float) -> float:
        self._backend.stop()
        m, d, solo, sd = self._model, self._data, self._solo, self._solo_data
        a, v = self._qadr, self._dof
        self._mj.mj_resetData(solo, sd)
        sd.qpos[:], sd.qvel[:] = d.qpos[a:a + 7], d.qvel[v:v + 6]
        steps = math.ceil(max_time / solo.opt.timestep - 1e-9)
        chunk = max(1, round(_PUCK_CHECK / solo.opt.timestep))
        done = 0
        while done < steps and self.sliding(sd.qpos, sd.qvel, rest_speed):
            self._mj.mj_step(solo, sd, min(chunk, steps - done))
            done += min(chunk, steps - done)
        d.qvel[:] = 0.0  # the arm, frozen
        d.qpos[a:a + 7], d.qvel[v:v + 6] = sd.qpos, sd.qvel
        d.time += sd.time
        self._mj.mj_forward(m, d)
        return float(sd.time)


class PybulletPuckTable(PuckTable):
    """The puck body of a PyBullet backend; the puck–table contact gets the puck's own coefficients (see
    :mod:`mtrl_robot.backends.pybullet_backend` for how each parameter maps onto PyBullet)."""

    def __init__(self, backend: PybulletBackend):
        import pybullet  # here, not at the top: importing it prints a banner, and only a PyBullet world needs it

        super().__init__(backend.scene)
        self._backend, self._p = backend, pybullet
        self._client, self._puck = backend.client, backend.puck
        self._offset = np.zeros(2)

    def _call(self, function, *args, **kwargs):
        return function(*args, physicsClientId=self._client, **kwargs)

    def start(self) -> list[float]:
        """The puck's start position (x, y, z): the scene's plus the sampled offset."""
        scene = self.scene
        return [*(np.array(scene.puck_start) + self._offset), scene.table_top + scene.puck_height / 2]

    def reset(self) -> None:
        """The puck at its start, at rest."""
        self._call(self._p.resetBasePositionAndOrientation, self._puck, self.start(), [0, 0, 0, 1])
        self._call(self._p.resetBaseVelocity, self._puck, [0, 0, 0], [0, 0, 0])

    def apply(self, values: Mapping[str, float]) -> dict[str, float]:
        slide_x, slide_y = values["puck.friction.slide_x"], values["puck.friction.slide_y"]
        ratio = slide_y / slide_x if slide_x > 0 else 1.0
        mass, radius, height = values["puck.mass"], self.scene.puck_radius, self.scene.puck_height
        transverse = mass * (3 * radius**2 + height**2) / 12
        self._call(self._p.changeDynamics, self._puck, -1, lateralFriction=slide_x,
                   anisotropicFriction=[1.0, ratio, 1.0], spinningFriction=values["puck.friction.torsional"],
                   rollingFriction=(values["puck.friction.roll_x"] + values["puck.friction.roll_y"]) / 2,
                   mass=mass, localInertiaDiagonal=[transverse, transverse, mass * radius**2 / 2])
        self._offset = np.array([values["puck.offset_x"], values["puck.offset_y"]])
        self.reset()
        info = self._call(self._p.getDynamicsInfo, self._puck, -1)  # anisotropic friction cannot be read back
        x, y = self._call(self._p.getBasePositionAndOrientation, self._puck)[0][:2]
        return {"puck.friction.slide_x": info[1], "puck.friction.slide_y": info[1] * ratio,
                "puck.friction.torsional": info[7], "puck.friction.roll_x": info[6],
                "puck.friction.roll_y": info[6], "puck.mass": info[0],
                "puck.offset_x": x - self.scene.puck_start[0], "puck.offset_y": y - self.scene.puck_start[1]}

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        position = self._call(self._p.getBasePositionAndOrientation, self._puck)[0]
        return np.array(position), np.array(self._call(self._p.getBaseVelocity, self._puck)[0])

    def settle(self, max_time: float, rest_speed: float) -> float:
        backend = self._backend
        backend.stop()
        steps = math.ceil(max_time / backend.control_dt - 1e-9)
        position, velocity = self.state()
        done = 0
        while done < steps and self.sliding(position, velocity, rest_speed):
            backend.step()
            done += 1
            position, velocity = self.state()
        return done * backend.control_dt
