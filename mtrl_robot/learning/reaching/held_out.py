"""Few-shot reaching error on held-out robots: adapt on K demos, reach the other demos' targets, measure by FK."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtrl_robot.arms.fk import flange_position
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.adapt import adapt_params
from mtrl_robot.learning.reaching.predict import predict_positions
from mtrl_robot.motions.dataset import DemoDataset


def held_out_errors(checkpoint: str | Path, dataset: DemoDataset, k: int, steps: int) -> dict:
    """Per robot and on average: flange-to-target distance in cm without adaptation and after ``k``-shot.

    Each robot is adapted (in memory) on its first ``k`` demos; the targets of its other demos are reached
    from its home posture, and the final posture's flange is placed with the robot's own kinematics.
    """
    state = checkpoints.load(checkpoint)
    per_robot = {}
    for robot_id in dataset.robot_ids:
        demos = dataset.for_robot(robot_id)
        arm, targets = demos.robots[0], demos.targets[k:]
        params = adapt_params(state, demos, k, steps)
        row = {}
        for label, p in (("zero_shot_cm", None), ("adapted_cm", params)):
            final = predict_positions(state, arm, targets, params=p)[:, -1]
            row[label] = float(np.linalg.norm(flange_position(arm, final) - targets, axis=-1).mean() * 100)
        per_robot[robot_id] = row
    mean = {label: float(np.mean([r[label] for r in per_robot.values()])) for label in ("zero_shot_cm", "adapted_cm")}
    return {"k": k, "steps": steps, "mean": mean, "robots": per_robot}
