"""The deployable reaching model file: what a node loads to act, apart from any training state.

A model file holds the reaching model's weights (target policy, VAE decoder and its offset normaliser), the
architecture they fit (``config``), the joint names in the model's column order, the home posture, the adapted
task latent of the probabilistic variant (or None) and a little provenance (``info``: family, adaptation). It is
written atomically by :func:`save_model_file` and read by :func:`load_model_file` with the checked torch loader;
neither imports training, meta-learning or demo-generation code. Training checkpoints (optimiser state, the
meta-learner, the preset) are a separate format.

================  ==========================================================================================
``format``        ``"mtrl_robot.reaching_model"``; ``version``: ``VERSION``
``config``        ``n_waypoints``, ``dof`` (joint columns), ``latent_dim``, ``vae_hidden``, ``policy_hidden``,
                  ``task_dim``; ``code_dim`` (a family code's width) when the model has one
``joint_names``   the model's joint columns; a robot must match them by name (a model across arms with
                  different joint counts has more columns than this arm's joints: the first ones are its)
``home``          the start posture (rad) the demos started from
``weights``       ``ReachingModel.state_dict()``
``task_latent``   a tensor (``task_dim``,) for an adapted probabilistic model, else None
``kinematics``    an adapted model's robot chain calibrated from the same demos (``Arm.to_dict()`` as plain
                  lists, numbers and strings; :mod:`mtrl_robot.arms.kinematic_calibration`), else None:
                  predictions place their ends on the target through it
                  (:func:`~mtrl_robot.learning.reaching.predict.predict_positions`)
``info``          plain data about where the model comes from
================  ==========================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.torch_files import CheckpointError, first_line, first_non_finite, load_torch_file
from mtrl_robot.models.policy import ReachingModel, TargetPolicy
from mtrl_robot.models.trajectory_vae import OffsetScaler, TrajectoryVAE

FORMAT = "mtrl_robot.reaching_model"
VERSION = 1
CONFIG_KEYS = ("n_waypoints", "dof", "latent_dim", "vae_hidden", "policy_hidden", "task_dim")


@dataclass
class ReachingModelFile:
    """A loaded model file: targets (n, 3) in m → joint offsets (n, T, dof) from the start posture, in rad."""

    model: ReachingModel
    joint_names: tuple[str, ...]
    home: np.ndarray
    config: dict[str, Any]
    task_latent: Tensor | None = None
    info: dict[str, Any] | None = None
    path: Path | None = None
    kinematics: dict[str, Any] | None = None  # plain data of the calibrated robot chain (``Arm.to_dict()``)

    def offsets(self, targets: np.ndarray) -> np.ndarray:
        """(n, 3) targets → (n, T, dof) joint offsets from the start posture."""
        x = torch.as_tensor(np.asarray(targets, dtype=np.float32).reshape(-1, 3))
        with torch.no_grad():
            flat = self.model(self.model.inputs(self.model.condition(x), self.task_latent))
            return self.model.offsets(flat, len(self.joint_names)).double().numpy()


def reaching_model(config: dict[str, Any]) -> ReachingModel:
    """An untrained reaching model of the architecture ``config`` describes (``CONFIG_KEYS``); building it leaves
    the global random state as it was."""
    with torch.random.fork_rng(devices=[]):
        vae = TrajectoryVAE(OffsetScaler(int(config["n_waypoints"]), int(config["dof"])), int(config["latent_dim"]),
                            tuple(config["vae_hidden"]), beta=0.0)
        policy = TargetPolicy(int(config["latent_dim"]), tuple(config["policy_hidden"]), int(config["task_dim"]),
                              int(config.get("code_dim", 0)))
    return ReachingModel(vae, policy)


def save_model_file(path: str | Path, model: ReachingModel, config: dict[str, Any], joint_names: tuple[str, ...],
                    home: np.ndarray, task_latent: Tensor | None = None, info: dict[str, Any] | None = None,
                    kinematics: dict[str, Any] | None = None) -> Path:
    """Write a model file atomically (read back and checked before it replaces any old file)."""
    path = Path(path)
    config = {**{key: config[key] for key in CONFIG_KEYS}, **({"code_dim": config["code_dim"]} if "code_dim" in config
                                                              else {})}
    home = torch.as_tensor(np.asarray(home, dtype=float))
    if home.shape != (len(joint_names),) or config["dof"] < len(joint_names):
        raise ValueError(f"{path}: {len(joint_names)} joint names, a home posture of shape {tuple(home.shape)} "
                         f"and a model of {config['dof']} joints do not fit together")
    payload = {"format": FORMAT, "version": VERSION, "config": config, "joint_names": list(joint_names),
               "home": home, "weights": model.state_dict(),
               "task_latent": None if task_latent is None else task_latent.detach().clone(), "info": info or {},
               "kinematics": kinematics}
    where = first_non_finite(payload)
    if where is not None:
        raise ValueError(f"{path}: refusing to write a model with NaN or inf in {where}")
    return write_atomic(path, lambda f: torch.save(payload, f), verify=lambda tmp: load_model_file(tmp))


def load_model_file(path: str | Path) -> ReachingModelFile:
    """A model file written by :func:`save_model_file`; ``CheckpointError`` naming the file for anything else."""
    path = Path(path)
    payload = load_torch_file(path, "reaching model")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else None
        raise CheckpointError(f"{path}: not a reaching model file (format tag {found!r}; a training checkpoint "
                              "is not a model file)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: model file version {payload.get('version')!r}, this code reads {VERSION}")
    try:
        config, joint_names = payload["config"], tuple(payload["joint_names"])
        model = reaching_model(config)
        model.load_state_dict(payload["weights"])
        home = payload["home"].double().numpy()
        task_latent = payload["task_latent"]
        if home.shape != (len(joint_names),) or int(config["dof"]) < len(joint_names):
            raise ValueError(f"{len(joint_names)} joint names, home of shape {home.shape}, {config['dof']} joints")
        if task_latent is not None and tuple(task_latent.shape) != (int(config["task_dim"]),):
            raise ValueError(f"task_latent of shape {tuple(task_latent.shape)}, the model takes {config['task_dim']}")
        kinematics = payload.get("kinematics")
        if kinematics is not None and tuple(j["name"] for j in kinematics["joints"]) != joint_names:
            raise ValueError(f"calibrated kinematics of the joints {[j['name'] for j in kinematics['joints']]}")
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: does not fit the reaching model it describes: {first_line(e)}") from e
    model.eval()
    model.requires_grad_(False)
    return ReachingModelFile(model, joint_names, home, dict(config), task_latent, dict(payload["info"]), path,
                             kinematics)
