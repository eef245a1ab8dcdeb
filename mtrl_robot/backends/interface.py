"""The one robot interface every backend implements: MuJoCo, PyBullet and ROS 2 hardware.

Code above this layer (tasks, demos, evaluation, nodes) only uses these methods and never asks which
backend it holds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mtrl_robot.backends.trajectory import JointLimits, JointState, JointTrajectory

if TYPE_CHECKING:
    from mtrl_robot.scenes.puck_table import PuckTable


@dataclass(frozen=True)
class ExecutionResult:
    success: bool
    message: str
    final_error: np.ndarray  # rad per joint, measured minus commanded final point
    duration: float  # seconds the execution took on the backend's clock


class RobotBackend(ABC):
    """A robot that takes time-stamped joint trajectories."""

    @property
    @abstractmethod
    def limits(self) -> JointLimits: ...

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.limits.names

    @abstractmethod
    def read_state(self) -> JointState: ...

    @abstractmethod
    def send_trajectory(self, trajectory: JointTrajectory) -> None:
        """Validate (raise ``TrajectoryError`` naming joint and limit) and start executing."""

    @abstractmethod
    def is_executing(self) -> bool: ...

    @abstractmethod
    def wait(self, timeout: float | None = None) -> ExecutionResult:
        """Block until the current trajectory ends (or ``timeout`` seconds of backend time pass)."""

    @abstractmethod
    def stop(self) -> None:
        """Abandon the current trajectory and hold the measured position."""

    def execute(self, trajectory: JointTrajectory, timeout: float | None = None) -> ExecutionResult:
        self.send_trajectory(trajectory)
        return self.wait(timeout)

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing to release
        """Release engine or connection resources."""


class SimBackend(RobotBackend):
    """A simulated robot: adds stepping, reset and domain randomization.

    A simulated world with a scene also holds the scene's own physics as ``table`` (None for an arm alone):
    the puck table's (:class:`~mtrl_robot.scenes.puck_table.PuckTable`), whose parameters it randomizes too.
    """

    table: PuckTable | None

    @property
    @abstractmethod
    def time(self) -> float: ...

    @abstractmethod
    def step(self, n: int = 1) -> None:
        """Advance physics by ``n`` control steps, following the active trajectory if any."""

    @abstractmethod
    def reset(self, q: np.ndarray | None = None) -> JointState:
        """Put the arm at ``q`` (default: home) at rest, clear any trajectory, reset the scene."""

    @abstractmethod
    def apply_randomization(self, sample: Mapping[str, float]) -> dict[str, float]:
        """Restore nominal values, apply ``sample``, and return the values read back from the engine."""

    @abstractmethod
    def flange_position(self) -> np.ndarray:
        """World position of the flange as the engine computes it."""
