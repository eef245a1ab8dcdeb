"""Meta-training's query loss with a flange-space term: the training robots' kinematics are known.

The joint-space loss on a demo counts every joint's error alike, though only where the flange ends up matters for
reaching, and a redundant arm can reach one target in many postures. For the robots it trains on, meta-training knows
the kinematics, so the query (outer) loss of a task adds ``weight`` times the mean squared distance, in cm², from the
flange at each predicted final waypoint (the robot's start posture plus the predicted final offset, through
:class:`~mtrl_robot.arms.fk_torch.StackedFK`, every robot of a meta-batch in one call) to the demo's target:

    query loss = joint-space loss + weight · mean ‖FK_robot(home_robot + offset_final) − target‖² (cm²)

The inner loop keeps the joint-space loss on the support demos: an adapted robot's kinematics are unknown, and
adaptation sees only its demos. Meta-training thus learns an initialisation whose joint-space adaptation lands the
flange on the target.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.func import vmap

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.fk_torch import StackedFK
from mtrl_robot.meta.maml import LossFn
from mtrl_robot.models.policy import ReachingModel

CM_PER_M = 100.0


class FlangeQueryLoss:
    """Each task's query loss: ``joint_loss`` on the normalised trajectories plus ``weight`` times the mean squared
    flange-to-target distance (cm²) of its query demos; task id i is robot ``arms[i]`` (the robots in the order of the
    task sampler's robots). Joint columns an arm does not have (padding) are left out."""

    def __init__(self, model: ReachingModel, arms: Sequence[Arm], joint_loss: LossFn, weight: float):
        self.model, self.joint_loss, self.weight = model, joint_loss, weight
        self.fk = StackedFK(arms, dtype=torch.float32)
        self.home = torch.tensor(np.stack([np.pad(arm.home_q, (0, self.fk.dof - arm.dof)) for arm in arms]),
                                 dtype=torch.float32)

    def squared_distances(self, predictions: Tensor, query_x: Tensor, task_ids: Tensor) -> Tensor:
        """(tasks, points, features) normalised predictions → (tasks, points) squared flange-to-target distances,
        cm²."""
        final = self.model.offsets(predictions)[..., -1, :]  # (tasks, points, columns) rad from the start posture
        flange = self.fk.position(self.home[task_ids, None, :] + final[..., :self.fk.dof], task_ids)
        return (CM_PER_M * (flange - query_x[..., :3])).square().sum(dim=-1)

    def __call__(self, predictions: Tensor, query_x: Tensor, query_y: Tensor, task_ids: Tensor | None) -> Tensor:
        if task_ids is None:
            raise ValueError("the flange query loss needs the task ids of the meta-batch (TaskBatch.task_ids)")
        joint = vmap(self.joint_loss)(predictions, query_y)
        return joint + self.weight * self.squared_distances(predictions, query_x, task_ids).mean(dim=-1)
