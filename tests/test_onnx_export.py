"""ONNX export of a reaching model file: onnxruntime equals PyTorch, runs without this package, bad input refused."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_model_file import _checkpoint

from mtrl_robot.arms.families import load_family
from mtrl_robot.cli.main import main
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.predict import predict_positions
from mtrl_robot.models.model_file import load_model_file
from mtrl_robot.models.onnx_export import TOLERANCE, run_onnx

TARGETS = np.random.default_rng(3).uniform([0.3, -0.3, 0.2], [0.6, 0.3, 0.6], (5, 3))

# Runs an exported file with onnxruntime alone: importing torch or this package would fail.
STANDALONE = """
import json, sys
sys.modules["torch"] = None
sys.modules["mtrl_robot"] = None
import numpy as np, onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
positions = session.run(["positions"], {"target": np.array(json.loads(sys.argv[2]), dtype=np.float32)})[0]
print(json.dumps({"joint_names": json.loads(meta["joint_names"]), "positions": positions.tolist()}))
"""


@pytest.mark.parametrize("variant", ["maml", "probabilistic"])
def test_exported_model_predicts_what_pytorch_predicts(tmp_path, variant, capsys):
    state = _checkpoint(tmp_path, variant)
    model_path = state.save_model_file(checkpoints.model_file_path(state.path))
    out = tmp_path / "policy.onnx"
    assert main(["reaching", "export", str(state.path), "-o", str(out)]) == 0  # a checkpoint: its model file
    assert "wrote" in capsys.readouterr().out
    model = load_model_file(model_path)
    arm = load_family("panda")
    expected = predict_positions(model, arm, TARGETS)
    for n in (1, 5):  # any batch size
        got = run_onnx(out, TARGETS[:n])
        assert got.shape == (n, 12, 7)
        assert np.abs(np.clip(got, arm.lower, arm.upper) - expected[:n]).max() <= TOLERANCE
    assert np.array_equal(got[:, 0], np.broadcast_to(model.home.astype(np.float32), (5, 7)))

    run = subprocess.run([sys.executable, "-c", STANDALONE, str(out), json.dumps(TARGETS.tolist())],
                         capture_output=True, text=True, check=True)
    standalone = json.loads(run.stdout)
    assert tuple(standalone["joint_names"]) == arm.joint_names
    np.testing.assert_allclose(standalone["positions"], got, rtol=0, atol=1e-6)


def test_bad_exports_are_refused_in_one_line(tmp_path, capsys):
    state = _checkpoint(tmp_path, "maml")
    out = tmp_path / "policy.onnx"
    assert main(["reaching", "export", str(state.path), "-o", str(out)]) == 2  # no model file beside it yet
    assert "maml.model.pt: no such reaching model file" in capsys.readouterr().err
    state.save_model_file(checkpoints.model_file_path(state.path))
    assert main(["reaching", "export", str(tmp_path), "-o", str(out)]) == 2
    assert "a folder; name one model file" in capsys.readouterr().err
    out.write_text("keep me")
    assert main(["reaching", "export", str(state.path), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "keep me"
    assert not list(tmp_path.glob(".*.tmp"))
