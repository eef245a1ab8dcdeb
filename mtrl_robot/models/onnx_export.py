"""A reaching model file as ONNX: flange targets → joint waypoints, runnable without this package or PyTorch.

The graph takes ``target`` (n, 3) float32 in m, in the model's base frame, and returns ``positions``
(n, T, dof) float32 in rad: the home posture followed by home + the model's joint offsets (the first waypoint is
the home posture exactly, as in :func:`~mtrl_robot.learning.reaching.predict.predict_positions`). The policy's
target normaliser, the decoder, the offset normaliser and an adapted task latent (probabilistic variant) are all
inside the graph. The waypoints are a path, not yet a timed trajectory: clip them into the arm's joint limits
and time them within its velocity and acceleration limits (the controller or a time-parameterisation library
does), as ``predict`` does here.

The ONNX metadata (``custom_metadata_map`` in onnxruntime) holds, as JSON: ``joint_names`` (the columns of
``positions``), ``home``, ``n_waypoints``, the model file's ``info`` and ``format``/``version``, and for an adapted
model its robot chain calibrated from the demos (``kinematics``, ``Arm.to_dict()``): the graph does not place the
path's end through it, as ``predict`` does here; an IK step on that chain does. The file is
written atomically and only after onnxruntime's predictions on probe targets equal PyTorch's to ``TOLERANCE``.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.models.model_file import ReachingModelFile

FORMAT = "mtrl_robot.reaching_onnx"
VERSION = 1
OPSET = 18
TOLERANCE = 1e-5  # rad, the most onnxruntime's waypoints may differ from PyTorch's
PROBES = 64  # targets compared before the file is written


class _TargetToWaypoints(nn.Module):
    """Target (n, 3) → joint waypoints (n, T, dof): the whole deployable computation as one module."""

    def __init__(self, model_file: ReachingModelFile):
        super().__init__()
        self.model = model_file.model
        self.register_buffer("home", torch.as_tensor(model_file.home, dtype=torch.float32))
        task = model_file.task_latent
        self.register_buffer("task", None if task is None else task.detach().float())

    def forward(self, target: Tensor) -> Tensor:
        flat = self.model(self.model.inputs(self.model.condition(target), self.task))
        offsets = self.model.offsets(flat, self.home.shape[0])
        start = self.home.expand(target.shape[0], 1, -1)
        return torch.cat([start, self.home + offsets[:, 1:]], dim=1)


def _probe_targets(model_file: ReachingModelFile) -> np.ndarray:
    """Targets spread around the policy's training targets (its normaliser's mean ± 2 spreads), seeded."""
    policy = model_file.model.policy
    mean, scale = policy.target_mean.double().numpy(), policy.target_scale.double().numpy()
    return (mean + scale * np.random.default_rng(0).uniform(-2.0, 2.0, (PROBES, 3))).astype(np.float32)


def run_onnx(path: str | Path, targets: np.ndarray) -> np.ndarray:
    """Waypoints (n, T, dof) from an exported file with onnxruntime, for targets (n, 3)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["positions"], {"target": np.asarray(targets, dtype=np.float32).reshape(-1, 3)})[0]


def export_onnx(model_file: ReachingModelFile, path: str | Path) -> Path:
    """Write ``model_file`` as ONNX to ``path`` (atomically; checked against PyTorch first); returns the path."""
    import onnx

    module = _TargetToWaypoints(model_file).eval()
    probes = _probe_targets(model_file)
    with torch.no_grad():
        expected = module(torch.from_numpy(probes)).numpy()
    batch = torch.export.Dim("batch", min=1)
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)  # it names every torchvision operator it skips (torchvision is absent)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.onnx.export(module, (torch.from_numpy(probes[:2]),), input_names=["target"],
                                        output_names=["positions"], dynamic_shapes={"target": {0: batch}},
                                        opset_version=OPSET, dynamo=True, verbose=False)
    finally:
        registration.setLevel(level)
    proto = program.model_proto
    metadata = {"format": FORMAT, "version": VERSION, "joint_names": list(model_file.joint_names),
                "home": [float(q) for q in model_file.home], "n_waypoints": int(model_file.config["n_waypoints"]),
                "info": model_file.info or {}, "kinematics": model_file.kinematics}
    onnx.helper.set_model_props(proto, {key: json.dumps(value) for key, value in metadata.items()})
    buffer = io.BytesIO()
    onnx.save_model(proto, buffer)

    def same_as_torch(tmp: Path) -> None:
        error = float(np.abs(run_onnx(tmp, probes) - expected).max())
        if not error <= TOLERANCE:
            raise ValueError(f"{path}: onnxruntime's waypoints differ from PyTorch's by {error:.2e} rad "
                             f"(more than {TOLERANCE:.0e}); nothing written")

    return write_atomic(path, buffer.getvalue(), verify=same_as_torch)
