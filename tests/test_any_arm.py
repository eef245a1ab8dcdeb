"""One model across arms with six and seven joints, and leaving one family out, on tiny presets (seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_threads import one_thread  # noqa: F401

from mtrl_robot.core.errors import ConfigError
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.adapt import adapt
from mtrl_robot.learning.reaching.data import run_demos
from mtrl_robot.learning.reaching.lofo import leave_one_family_out
from mtrl_robot.learning.reaching.predict import predict
from mtrl_robot.learning.reaching.presets import load_preset
from mtrl_robot.learning.reaching.train import train_from_preset
from mtrl_robot.models.joint_padding import masked_mse, pad_joints
from mtrl_robot.models.model_file import load_model_file

TINY = ["data.robots_per_family=5", "data.held_out_per_family=1", "data.demos_per_robot=14", "meta.k_query=6",
        "meta.meta_batch_size=2", "meta.meta_steps=6", "meta.checkpoint_every=6", "pretrain.nominal_demos=40",
        "pretrain.vae_steps=10", "pretrain.policy_steps=20", "adapt.steps=3"]


def test_padding_is_left_out_of_the_loss_and_changes_nothing_without_it():
    prediction, target = torch.randn(4, 7), torch.randn(4, 6)
    padded = pad_joints(target, 7)
    assert padded.shape == (4, 7) and padded[:, 6].isnan().all() and torch.equal(padded[:, :6], target)
    assert torch.allclose(masked_mse(prediction, padded), F.mse_loss(prediction[:, :6], target))
    full = torch.randn(4, 7)
    assert torch.allclose(masked_mse(prediction, full), F.mse_loss(prediction, full))
    with pytest.raises(ValueError, match="8 joints do not fit a model of 7 joint columns"):
        pad_joints(torch.zeros(2, 8), 7)


@pytest.mark.parametrize("code", [False, True])
def test_six_and_seven_joints_train_one_model_and_adapt_to_either(tmp_path: Path, code: bool):
    preset = load_preset("small", [*TINY, "data.families=[panda,ur5e]", "data.pooled=true",
                                   f"model.family_code={str(code).lower()}"])
    out = train_from_preset(preset, tmp_path / "run", progress=False)
    demos = run_demos(out)
    assert {ds.dof for ds in demos.values()} == {6, 7}  # one demos file per joint count
    master = checkpoints.load(out / "checkpoints" / "pooled" / "all.pt")
    assert master.model.scaler.dof == 7 and master.info["columns"] == 7
    report = json.loads((out / "report.json").read_text())
    assert all(np.isfinite(report[f]["held_out"]["errors_cm"]["maml"]).all() for f in ("panda", "ur5e"))
    for family, dof in (("ur5e", 6), ("panda", 7)):
        view = checkpoints.load(out / "checkpoints" / f"{family}.pt")
        robot = view.info["held_out"][0]
        adapted = adapt(out / "checkpoints" / f"{family}.pt", demos[family].for_robot(robot), k=5,
                        out=tmp_path / f"{family}-adapted.pt")
        model = load_model_file(checkpoints.model_file_path(adapted))
        assert model.joint_names == view.joint_names and len(model.joint_names) == dof
        arm = demos[family].arm(robot)
        trajectories = predict(model, arm, demos[family].for_robot(robot).targets[:2])
        assert all(t.positions.shape == (32, dof) and np.isfinite(t.positions).all() for t in trajectories)
        if code:  # each family's view carries its own one-hot code
            assert view.model.policy.code.tolist() == ([1.0, 0.0] if family == "panda" else [0.0, 1.0])


def test_a_family_code_is_refused_outside_a_pooled_maml_run():
    for overrides in (["model.family_code=true"],
                      ["model.family_code=true", "data.pooled=true", "meta.variant=probabilistic"]):
        with pytest.raises(ConfigError, match="model.family_code"):
            load_preset("small", overrides)


def test_a_lofo_fold_never_trains_on_the_family_it_is_tested_on(tmp_path: Path):
    preset = load_preset("small", [*TINY, "data.families=[panda,gen3,ur5e]"])
    table, _, data = leave_one_family_out(preset, tmp_path, ks=(2, 5), families=["ur5e"], finetune_lrs=(1e-3, 1e-2),
                                          targets_per_robot=2, validation_robots=1, validation_targets=2,
                                          progress=False)
    fold = tmp_path / "without-ur5e"
    fold_demos = run_demos(fold)
    assert set(fold_demos) == {"panda", "gen3"}  # the fold's population and demos hold no UR5e at all
    assert all(r.family != "ur5e" for ds in fold_demos.values() for r in ds.robots)
    pooled = checkpoints.load(fold / "checkpoints" / "pooled" / "all.pt")
    assert pooled.info["robot_ids"] and not any(r.startswith("ur5e") for r in pooled.info["robot_ids"])
    results = json.loads(data.read_text())
    tested = results["folds"]["ur5e"]["test_robots"]
    assert tested and all(r.startswith("ur5e") for r in tested)
    assert set(results["folds"]["ur5e"]["finetune_lr"]) == {"2", "5"}
    summary = results["summary"]["ur5e"]
    assert set(summary) == {"no_adaptation", "maml", "finetune", "own", "ik_oracle"}
    assert all(np.isfinite(summary[m][k]["mean"]) for m in summary for k in ("2", "5"))
    assert "fine-tune multi-task model (tuned step size)" in table.read_text()
    assert (fold / "finetune_sweep.md").is_file()
