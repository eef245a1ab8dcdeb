"""Few-shot adaptation: a meta-trained checkpoint + K demos of one robot → an adapted checkpoint and model file.

The first ``k`` demos of the robot are the support set; ``steps`` inner-loop gradient steps (the learner's own
rule: its adapted parameters and, with Meta-SGD, its learned step sizes) give the adapted parameters. The
adaptation guard (:mod:`mtrl_robot.meta.guard`) shrinks the step, or keeps the meta-trained initialisation, when the
demos themselves show that adapting would make the model worse; with one demo of plain MAML, also when the kinematics
that demo calibrates do not predict adapting better (:mod:`~mtrl_robot.learning.reaching.single_demo`). The same
demos calibrate the robot's kinematics (:mod:`mtrl_robot.learning.reaching.calibrated_kinematics`): the adapted
model places its paths' ends through them. The result is written into a new checkpoint of the same format
(``adaptation`` records what was done, the guard's decision included; ``kinematics`` the calibrated chain) and into
its deployable model file (``X.model.pt`` beside ``X.pt``, what the policy node loads). Nothing is written until
every check has passed, an existing file is never replaced, and the writes are atomic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.calibrated_kinematics import (
    calibrate_from_demos,
    calibration_summary,
    family_population,
)
from mtrl_robot.learning.reaching.checkpoint import ReachingCheckpoint
from mtrl_robot.learning.reaching.data import to_tensors
from mtrl_robot.learning.reaching.single_demo import CHECK_CONFIDENCE, CHECK_MARGIN_CM, single_demo_judge
from mtrl_robot.meta.guard import GuardDecision, guarded_adapt
from mtrl_robot.meta.probabilistic import LATENT
from mtrl_robot.motions.dataset import DatasetError, DemoDataset
from mtrl_robot.motions.dataset import load as load_demos


def adapt_params(state: ReachingCheckpoint, demos: DemoDataset, k: int, steps: int
                 ) -> tuple[dict[str, torch.Tensor], GuardDecision]:
    """Adapted parameters (and, probabilistic, the task latent under ``LATENT``) from the first ``k`` demos, with
    the adaptation guard's decision (:mod:`mtrl_robot.meta.guard`: the step shrunk, or the initialisation kept,
    when adapting would make the model worse; with one demo of plain MAML, also when too few of the robots the demo
    allows are predicted to reach better with the adapted model, or no robot of the family could have made it,
    :mod:`~mtrl_robot.learning.reaching.single_demo`)."""
    if len(demos.robots) != 1:
        raise DatasetError(None, f"adaptation needs the demos of one robot, got {len(demos.robots)} robots "
                           f"({', '.join(demos.robot_ids[:4])}); select one with DemoDataset.for_robot")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive number of demos, got {k!r}")
    if k > len(demos):
        raise ValueError(f"k = {k} demos asked for, but robot {demos.robot_ids[0]} has only {len(demos)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    data = to_tensors(demos, state.joint_names, int(state.info["n_waypoints"]))
    judged = k == 1 and not getattr(state.learner, "uses_latent", False)
    judge, refused = single_demo_judge(state, demos) if judged else (None, None)
    return guarded_adapt(state.learner, state.model.condition(data.targets[:k]),
                         state.model.normalize(data.offsets[:k]), steps, judge, CHECK_MARGIN_CM, CHECK_CONFIDENCE,
                         refused)


def adapt(checkpoint: str | Path, demos: DemoDataset, k: int, steps: int | None = None,
          out: str | Path | None = None, say: Callable[[str], None] = print) -> Path:
    """Adapt ``checkpoint`` to the one robot of ``demos`` with its first ``k`` demos; returns the new checkpoint
    (its model file is ``model_file_path`` of it).

    ``steps`` defaults to the preset's ``adapt.steps``; ``out`` to ``<checkpoint>-<robot id>-k<k>.pt`` beside
    the checkpoint. What the adaptation guard did goes to ``say`` in one line and into the checkpoint's
    ``adaptation.guard``. Raises ``CheckpointError`` (corrupt, foreign), ``DatasetError`` (another joint set, NaN,
    several robots), ``ValueError`` (bad ``k`` or ``steps``, or adaptation diverged to NaN or inf) or
    ``FileExistsError`` (``out`` or its model file exists).
    """
    started = time.perf_counter()
    checkpoint = Path(checkpoint)
    state = checkpoints.load(checkpoint)
    robot_id = demos.robot_ids[0]
    out = Path(out) if out is not None else checkpoint.with_name(f"{checkpoint.stem}-{robot_id}-k{k}.pt")
    for path in (out, checkpoints.model_file_path(out)):
        if path.exists():
            raise FileExistsError(f"{path} exists; adaptation never overwrites a file, choose another output path")
    steps = state.preset.adapt.steps if steps is None else steps
    params, guard = adapt_params(state, demos, k, steps)
    if guard.diverged is not None:
        raise ValueError(f"adapting {checkpoint} to {robot_id} diverged: {steps} steps on {k} demos gave NaN or inf "
                         f"in {guard.diverged} (the checkpoint's step sizes are too large for these demos); nothing "
                         "written")
    nominal, population = family_population(state.preset, demos.robots[0].family, fallback=state.info["family"])
    calibration = calibrate_from_demos(nominal, population, demos, k, state.preset.adapt.demo_precision)
    latent = params.pop(LATENT, None)
    checkpoints.load_params(state.model, params)
    if calibration.plausible:
        state.info["kinematics"] = json.loads(json.dumps(calibration.arm.to_dict()))  # plain data
    if latent is not None:
        state.info["task_latent"] = latent.clone()
    state.info["adaptation"] = {"robot_id": robot_id, "family": demos.robots[0].family, "k": k, "steps": steps,
                                "source": str(checkpoint), "source_step": state.learner.step,
                                "guard": guard.to_dict(), "seconds": time.perf_counter() - started}
    state.save_model_file(checkpoints.model_file_path(out))
    path = state.save(out)
    say(guard.describe())
    say(calibration_summary(nominal, calibration, demos, k))
    return path


def adapt_cli(checkpoint: str | Path, demos_path: str | Path, robot_id: str | None, k: int,
              out: str | Path | None = None, steps: int | None = None, say: Callable[[str], None] = print) -> Path:
    """``mtrl-robot reaching adapt``: ``checkpoint`` is a checkpoint file or a training run folder (its checkpoint
    for the robot's joint set is used); ``robot_id`` may be None when the dataset holds one robot."""
    demos, checkpoint = robot_demos_and_checkpoint(checkpoint, demos_path, robot_id)
    return adapt(checkpoint, demos, k, steps, out, say)


def robot_demos_and_checkpoint(checkpoint: str | Path, demos_path: str | Path,
                               robot_id: str | None) -> tuple[DemoDataset, Path]:
    """The demos of ``robot_id`` (None: the dataset's only robot) and the checkpoint for its joints: ``checkpoint``
    itself, or a training run folder's checkpoint for the robot's joint set."""
    dataset = load_demos(demos_path)
    if robot_id is None:
        if len(dataset.robots) != 1:
            raise DatasetError(demos_path, f"holds {len(dataset.robots)} robots; name one with --robot")
        robot_id = dataset.robot_ids[0]
    demos = dataset.for_robot(robot_id)
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        checkpoint = checkpoints.find_for_joints(checkpoint, demos.joint_names)
    return demos, checkpoint
