"""The deployable model file: the checkpoint's predictions exactly, refused when bad, loaded without training code."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mtrl_robot.arms.families import load_family
from mtrl_robot.core.torch_files import CheckpointError
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.predict import predict, predict_positions
from mtrl_robot.learning.reaching.presets import load_preset
from mtrl_robot.learning.reaching.pretrain import build_model
from mtrl_robot.models.model_file import load_model_file, reaching_model
from mtrl_robot.models.numpy_model import NumpyReachingModel
from mtrl_robot.models.onnx_export import TOLERANCE

N_WAYPOINTS = 12


def _checkpoint(tmp_path: Path, variant: str) -> checkpoints.ReachingCheckpoint:
    """A reaching checkpoint of the small preset's architecture with statistics of plausible targets, saved and
    loaded back (what a training run leaves)."""
    preset = load_preset("small", [f"meta.variant={variant}", "meta.adapt_only=[]"])
    arm = load_family("panda")
    _, model = build_model(preset.model, N_WAYPOINTS, len(arm.joint_names), checkpoints.task_dim(preset.meta), 3)
    generator = torch.Generator().manual_seed(0)
    model.policy.set_statistics(torch.rand(50, 3, generator=generator) * 0.4 + torch.tensor([0.3, -0.2, 0.2]))
    model.scaler.set_statistics(torch.randn(50, N_WAYPOINTS, len(arm.joint_names), generator=generator) * 0.3)
    info = {"family": "panda", "joint_names": list(arm.joint_names), "n_waypoints": N_WAYPOINTS,
            "home": arm.home_q.tolist(), "robot_ids": [], "held_out": [], "preset": preset.to_dict()}
    state = checkpoints.new_checkpoint(model, preset, info)
    if variant == "probabilistic":
        state.info["task_latent"] = torch.tensor([0.5, -1.0, 0.25, 2.0])
    return checkpoints.load(state.save(tmp_path / f"{variant}.pt"))


@pytest.mark.parametrize("variant", ["maml", "probabilistic"])
def test_model_file_predicts_exactly_what_the_checkpoint_predicts(tmp_path, variant):
    state = _checkpoint(tmp_path, variant)
    path = state.save_model_file(checkpoints.model_file_path(state.path))
    assert path == tmp_path / f"{variant}.model.pt"
    model = load_model_file(path)
    arm = load_family("panda")
    assert model.joint_names == arm.joint_names and np.array_equal(model.home, arm.home_q)
    assert (model.task_latent is not None) == (variant == "probabilistic")
    assert model.info["family"] == "panda" and not any(p.requires_grad for p in model.model.parameters())
    targets = np.random.default_rng(1).uniform([0.3, -0.3, 0.2], [0.6, 0.3, 0.6], (6, 3))
    np.testing.assert_array_equal(model.offsets(targets), state.offsets(targets))
    np.testing.assert_array_equal(predict_positions(model, arm, targets), predict_positions(state, arm, targets))
    for a, b in zip(predict(path, arm, targets[:2]), predict(state, arm, targets[:2]), strict=True):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.times, b.times)


@pytest.mark.parametrize("variant", ["maml", "probabilistic"])
def test_the_numpy_model_predicts_what_pytorch_predicts(tmp_path, variant):
    """Within the ONNX export's tolerance, for the model file as saved and for one across families with fewer
    joints than columns (a family code, padded joint columns) and its adapted task latent, if any."""
    state = _checkpoint(tmp_path, variant)
    model = load_model_file(state.save_model_file(checkpoints.model_file_path(state.path)))
    config = {**model.config, "code_dim": 3, "dof": 9}
    across = reaching_model(config).eval()
    with torch.no_grad():
        across.policy.code.copy_(torch.tensor([0.0, 1.0, 0.0]))
        across.scaler.mean.normal_(generator=torch.Generator().manual_seed(1))
        across.scaler.scale.uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(2))
    targets = np.random.default_rng(1).uniform([0.3, -0.3, 0.2], [0.6, 0.3, 0.6], (6, 3))
    for file in (model, replace(model, model=across, config=config)):
        assert np.abs(NumpyReachingModel(file).offsets(targets) - file.offsets(targets)).max() <= TOLERANCE
        assert NumpyReachingModel(file).joint_names == file.joint_names


def test_bad_model_files_are_refused_naming_the_file(tmp_path):
    state = _checkpoint(tmp_path, "maml")
    with pytest.raises(CheckpointError, match="not a reaching model file .*a training checkpoint is not a model file"):
        load_model_file(state.path)
    with pytest.raises(CheckpointError, match="no such reaching model file"):
        load_model_file(tmp_path / "missing.model.pt")
    good = state.save_model_file(tmp_path / "good.model.pt")
    truncated = tmp_path / "truncated.model.pt"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="truncated.model.pt: not a readable torch reaching model"):
        load_model_file(truncated)
    payload = torch.load(good, weights_only=True)
    torch.save({**payload, "joint_names": payload["joint_names"][:6]}, tmp_path / "six.model.pt")
    with pytest.raises(CheckpointError, match="six.model.pt: does not fit the reaching model it describes"):
        load_model_file(tmp_path / "six.model.pt")
    torch.save({**payload, "version": 99}, tmp_path / "future.model.pt")
    with pytest.raises(CheckpointError, match="model file version 99"):
        load_model_file(tmp_path / "future.model.pt")
    with torch.no_grad():
        state.model.policy.head.bias[0] = float("nan")
    with pytest.raises(ValueError, match="refusing to write a model with NaN or inf in weights.policy.head.bias"):
        state.save_model_file(tmp_path / "nan.model.pt")
    assert not (tmp_path / "nan.model.pt").exists()


def test_loading_a_model_file_imports_no_training_code():
    """The import tree of the model file reader: plain model code, no learning, meta-learning, demos or ROS."""
    code = ("import sys, mtrl_robot.models.model_file; "
            "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('mtrl_robot'))))")
    modules = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    assert "mtrl_robot.models.model_file" in modules
    forbidden = ("mtrl_robot.learning", "mtrl_robot.meta", "mtrl_robot.motions", "mtrl_robot.arms", "mtrl_robot.ros",
                 "mtrl_robot.backends")
    assert [m for m in modules if m.startswith(forbidden)] == []
