"""The table-top scene template (``sim/scenes/*.yaml``): table, puck, goal marker, overhead camera, paddle."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mtrl_robot.core.config import load_yaml, mapping, number, unknown_keys, vector
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.paths import data_dir
from mtrl_robot.randomization import ARM_PARAMETERS

FRICTION_PARAMETERS = ("slide_x", "slide_y", "torsional", "roll_x", "roll_y")
PADDLE_STICK_RADIUS = 0.01  # m, radius of the stick that holds the paddle ball


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
