"""Reaching-model checkpoints: a ``mtrl_robot.meta`` learner checkpoint plus what the model is for.

The learner's ``extra`` holds (all plain data, so ``weights_only=True`` loads it):

=================  ==========================================================================================
``kind``           ``"mtrl_robot.reaching"`` (anything else is a foreign checkpoint)
``family``         arm family the model was trained on
``joint_names``    the joint set, in the model's column order: demos and robots must match it by name
``n_waypoints``    waypoints per trajectory
``home``           the family's start posture, rad (the default start when predicting)
``robot_ids``      robots meta-trained on; ``held_out``: robots of the family kept out for evaluation
``preset``         the whole training preset (``Preset.to_dict()``)
``adaptation``     ``None``, or for an adapted model: robot id, K, steps, the source checkpoint and its step
``task_latent``    probabilistic variant, adapted: the task variable z (a tensor); otherwise absent
``kinematics``     adapted: the robot's chain calibrated from the same demos (plain data of ``Arm.to_dict()``;
                   :mod:`mtrl_robot.learning.reaching.calibrated_kinematics`); otherwise absent
``code_dim``       a model across families with a family code (``model.family_code``): the code's width (the
                   family's code is in the weights, ``policy.code``); otherwise absent
``columns``        a model across arms with different joint counts: its joint columns (the most joints of
                   its arms; :mod:`~mtrl_robot.models.joint_padding`); otherwise absent (one per joint)
``spread_``        probabilistic variant, once ``mtrl-robot reaching calibrate`` has fitted it: the
``calibration``    :class:`~mtrl_robot.meta.probabilistic.SpreadCalibration` (``to_dict()``) and the meta-training
                   ``step`` it was fitted at; loading sets it on the learner, unless the learner has trained on
                   since (another step): then the draws stay raw
=================  ==========================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mtrl_robot.arms.chain import Arm
from mtrl_robot.core.torch_files import CheckpointError
from mtrl_robot.learning.reaching.presets import MetaConfig, Preset, preset_from_dict
from mtrl_robot.learning.reaching.pretrain import build_model
from mtrl_robot.meta import MAML, MAMLConfig, make_meta_learner, read_checkpoint
from mtrl_robot.meta.maml import LossFn
from mtrl_robot.meta.probabilistic import SpreadCalibration
from mtrl_robot.models.joint_padding import masked_mse
from mtrl_robot.models.model_file import save_model_file
from mtrl_robot.models.policy import ReachingModel

KIND = "mtrl_robot.reaching"
MODEL_FILE_SUFFIX = ".model.pt"  # the deployable model file of checkpoint X.pt is X.model.pt beside it
_REQUIRED = ("family", "joint_names", "n_waypoints", "home", "robot_ids", "held_out", "preset")


@dataclass
class ReachingCheckpoint:
    """A loaded checkpoint: the learner (its model holds the weights), the preset and the metadata."""

    learner: MAML
    preset: Preset
    info: dict[str, Any]
    path: Path | None = None

    @property
    def model(self) -> ReachingModel:
        return self.learner.model  # type: ignore[return-value]

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(self.info["joint_names"])

    @property
    def task_latent(self) -> Tensor | None:
        return self.info.get("task_latent")

    @property
    def kinematics(self) -> Arm | None:
        """An adapted model's calibrated robot chain (predictions place their ends through it), else None."""
        data = self.info.get("kinematics")
        return None if data is None else Arm.from_dict(data)

    def save(self, path: str | Path) -> Path:
        """Write atomically (see ``MAML.save_checkpoint``)."""
        return self.learner.save_checkpoint(path, extra=self.info)

    def save_model_file(self, path: str | Path) -> Path:
        """Write the deployable model file of this checkpoint's model (see :mod:`mtrl_robot.models.model_file`)."""
        model = self.preset.model
        config = {"n_waypoints": int(self.info["n_waypoints"]), "dof": self.model.scaler.dof,
                  "latent_dim": model.latent_dim, "vae_hidden": list(model.vae_hidden),
                  "policy_hidden": list(model.policy_hidden), "task_dim": task_dim(self.preset.meta),
                  **({"code_dim": self.model.policy.code_dim} if self.model.policy.code_dim else {})}
        info = {key: self.info.get(key) for key in ("family", "adaptation", "pooled")}
        return save_model_file(path, self.model, config, self.joint_names, np.asarray(self.info["home"]),
                               self.task_latent, {**info, "checkpoint_step": self.learner.step},
                               self.info.get("kinematics"))

    def offsets(self, targets: np.ndarray, params: dict[str, Tensor] | None = None) -> np.ndarray:
        """(n, 3) targets → (n, T, dof) joint offsets from the start posture; ``params`` from ``learner.adapt``."""
        x = self.model.condition(torch.as_tensor(np.asarray(targets, dtype=np.float32).reshape(-1, 3)))
        with torch.no_grad():
            if params is not None:
                flat = self.learner.predict(params, x)
            else:
                flat = self.model(self.model.inputs(x, self.task_latent))
            return self.model.offsets(flat, len(self.joint_names)).double().numpy()


def task_dim(config: MetaConfig) -> int:
    """Width of the latent task variable the model takes beside the target (probabilistic variant only)."""
    return config.task_latent_dim if config.variant == "probabilistic" else 0


def make_learner(model: ReachingModel, config: MetaConfig, padded: bool = False) -> MAML:
    """The meta-learner the preset's ``meta`` section describes, around ``model``; ``padded``: its demos may have
    padded joints, which the loss leaves out."""
    maml_config = MAMLConfig(
        inner_steps=config.inner_steps, inner_lr=config.inner_lr, first_order=config.variant == "first_order",
        learn_inner_lr=config.learn_inner_lr, outer_lr=config.outer_lr, meta_batch_size=config.meta_batch_size,
        seed=config.seed, latent_dim=task_dim(config), kl_weight=config.kl_weight,
        adapt_only=config.adapt_only)
    n_out = model.scaler.n_waypoints * model.scaler.dof
    loss = masked_mse if padded else F.mse_loss
    if config.final_weight > 0:
        loss = partial(final_weighted, loss, model.scaler.dof, config.final_weight)
    return make_meta_learner(model, maml_config, loss, x_dim=3 + model.policy.code_dim, y_dim=n_out)


def final_weighted(loss: LossFn, columns: int, weight: float, prediction: Tensor, target: Tensor) -> Tensor:
    """``loss`` on normalised flat trajectories plus ``weight`` times ``loss`` on their final waypoint (the last
    ``columns`` features)."""
    return loss(prediction, target) + weight * loss(prediction[..., -columns:], target[..., -columns:])


def new_checkpoint(model: ReachingModel, preset: Preset, info: dict[str, Any]) -> ReachingCheckpoint:
    """A learner around a freshly pretrained model, with its metadata."""
    missing = [key for key in _REQUIRED if key not in info]
    if missing:
        raise ValueError(f"checkpoint metadata lacks {missing}")
    learner = make_learner(model, preset.meta, padded="columns" in info)
    return ReachingCheckpoint(learner, preset, {"kind": KIND, "adaptation": None, **info})


def load(path: str | Path) -> ReachingCheckpoint:
    """Read a reaching checkpoint; ``CheckpointError`` for a missing, corrupt, foreign or inconsistent file."""
    path = Path(path)
    state = read_checkpoint(path)  # format tag, version, weights_only
    info = state.get("extra")
    if not isinstance(info, dict) or info.get("kind") != KIND:
        found = info.get("kind") if isinstance(info, dict) else None
        raise CheckpointError(f"{path}: a meta-learning checkpoint, but not of a reaching model (kind {found!r})")
    missing = [key for key in _REQUIRED if key not in info]
    if missing:
        raise CheckpointError(f"{path}: reaching checkpoint without {missing}")
    try:
        preset = preset_from_dict(info["preset"], str(path))
        columns = int(info.get("columns", len(info["joint_names"])))
        model = build_model(preset.model, int(info["n_waypoints"]), columns, task_dim(preset.meta),
                            code_dim=int(info.get("code_dim", 0)))[1]
        learner = make_learner(model, preset.meta, padded="columns" in info)
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: cannot rebuild the model it describes: {e}") from e
    learner.load_state_dict(state, source=str(path))
    if "task_latent" in info and not isinstance(info["task_latent"], Tensor):
        raise CheckpointError(f"{path}: task_latent is not a tensor")
    calibration = info.get("spread_calibration")
    if calibration is not None and learner.uses_latent:
        try:
            fitted = SpreadCalibration.from_dict(calibration)
            step = int(calibration["step"])
        except (ValueError, TypeError, KeyError) as e:
            raise CheckpointError(f"{path}: spread_calibration: {e}") from e
        if step == learner.step:
            learner.spread_calibration = fitted
    return ReachingCheckpoint(learner, preset, info, path)


def model_file_path(checkpoint: str | Path) -> Path:
    """Where the deployable model file of ``checkpoint`` goes: ``X.model.pt`` beside ``X.pt``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(".pt") + MODEL_FILE_SUFFIX)


def find_for_joints(run_dir: str | Path, joint_names: tuple[str, ...]) -> Path:
    """The meta-trained (not adapted) checkpoint in a run's ``checkpoints/`` whose joint set is ``joint_names``."""
    folder = Path(run_dir) / "checkpoints"
    candidates = sorted(p for p in folder.glob("*.pt") if not p.name.endswith(MODEL_FILE_SUFFIX))
    for candidate in candidates:
        info = read_checkpoint(candidate).get("extra", {})
        if isinstance(info, dict) and info.get("kind") == KIND and info.get("adaptation") is None \
                and tuple(info.get("joint_names", ())) == tuple(joint_names):
            return candidate
    raise CheckpointError(f"{run_dir}: no checkpoint for the joints {list(joint_names)} among "
                          f"{[c.name for c in candidates] or 'no checkpoints'}")


def load_params(model: ReachingModel, params: dict[str, Tensor]) -> None:
    """Copy (adapted) parameters into the model in place."""
    with torch.no_grad():
        for name, value in params.items():
            model.get_parameter(name).copy_(value)
