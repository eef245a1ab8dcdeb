"""The one place a simulated backend is built by engine name; the engines are imported only when chosen."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mtrl_robot.arms.chain import Arm
from mtrl_robot.backends.interface import SimBackend
from mtrl_robot.core.errors import ConfigError

if TYPE_CHECKING:
    from mtrl_robot.scenes.puck_table import Scene

BACKENDS = ("mujoco", "pybullet")


def make_backend(name: str, arm: Arm, scene: Scene | None = None, *, control_dt: float | None = None,
                 timestep: float | None = None) -> SimBackend:
    """The simulator ``name`` (one of ``BACKENDS``) with ``arm``, on ``scene`` if given.

    ``control_dt`` (s) is the step of :meth:`SimBackend.step`; ``timestep`` (s) is MuJoCo's physics step (PyBullet
    steps physics once per control step, so it has none). Each engine's default where not given.
    """
    if name == "mujoco":
        os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering; must precede the first mujoco import
        from mtrl_robot.backends.mujoco_backend import MujocoBackend

        return MujocoBackend(arm, scene, control_dt=control_dt,
                             **({} if timestep is None else {"timestep": timestep}))
    if name == "pybullet":
        from mtrl_robot.backends.pybullet_backend import PybulletBackend

        return PybulletBackend(arm, scene, **({} if control_dt is None else {"control_dt": control_dt}))
    raise ConfigError(None, "backend", f"unknown backend '{name}' (use {' or '.join(BACKENDS)})")
