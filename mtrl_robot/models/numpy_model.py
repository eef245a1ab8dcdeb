"""A reaching model file's targets → joint offsets in numpy, for planning one target at a time.

:class:`NumpyReachingModel` computes what :meth:`ReachingModelFile.offsets
<mtrl_robot.models.model_file.ReachingModelFile.offsets>` computes with the same weights, in float64, from layers
folded once when it is built: the target normaliser and the constant inputs (a family code, an adapted task
latent) into the first layer, the policy's head into the decoder's first layer (two linear maps in a row), the
offset normaliser and the choice of the robot's joint columns into the last layer. What is left is one matrix
product per hidden layer, each followed by SiLU. On one target, PyTorch's cost per operation is most of the time
such a small model takes; here it is a few numpy calls.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from mtrl_robot.arms.chain import Arm
from mtrl_robot.models.model_file import ReachingModelFile


def _linear_layers(sequence: nn.Sequential) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """(weight transposed, bias, followed by SiLU) for each linear layer of an MLP of linear layers and SiLUs."""
    layers: list[tuple[np.ndarray, np.ndarray, bool]] = []
    for module in sequence:
        if isinstance(module, nn.Linear):
            layers.append((module.weight.detach().double().numpy().T, module.bias.detach().double().numpy(), False))
        elif isinstance(module, nn.SiLU) and layers and not layers[-1][2]:
            layers[-1] = (*layers[-1][:2], True)
        else:
            raise TypeError(f"a {type(module).__name__} layer has no numpy counterpart here (linear layers and SiLU)")
    return layers


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


class NumpyReachingModel:
    """Targets (n, 3) in m → joint offsets (n, T, dof) from the start posture in rad, as the model file computes
    them (to float32 round-off), for the joints it names."""

    def __init__(self, model_file: ReachingModelFile):
        model, policy = model_file.model, model_file.model.policy
        self.joint_names = model_file.joint_names
        self.kinematics = None if model_file.kinematics is None else Arm.from_dict(model_file.kinematics)
        layers = [*_linear_layers(policy.body), *_linear_layers(nn.Sequential(policy.head)),
                  *_linear_layers(model.decoder)]
        # the first layer takes the raw target: the normaliser and the constant inputs become weights and bias
        weight, bias, silu = layers[0]
        mean, scale = (t.detach().double().numpy() for t in (policy.target_mean, policy.target_scale))
        constant = [policy.code.detach().double().numpy()] if policy.code_dim else []
        if policy.task_dim:
            task = model_file.task_latent
            constant.append(np.zeros(policy.task_dim) if task is None else task.detach().double().numpy())
        target_weight = weight[:3] / scale[:, None]
        bias = bias - mean @ target_weight + (np.concatenate(constant) @ weight[3:] if constant else 0.0)
        layers[0] = (target_weight, bias, silu)
        # a linear layer without an activation and the next one are one linear map
        folded = [layers[0]]
        for weight, bias, silu in layers[1:]:
            previous_weight, previous_bias, previous_silu = folded[-1]
            if previous_silu:
                folded.append((weight, bias, silu))
            else:
                folded[-1] = (previous_weight @ weight, previous_bias @ weight + bias, silu)
        # the last layer gives offsets in rad, for the robot's joints only (the first columns of each waypoint)
        scaler = model.scaler
        self.n_waypoints, dof = scaler.n_waypoints, len(self.joint_names)
        columns = (np.arange(self.n_waypoints)[:, None] * scaler.dof + np.arange(dof)).ravel()
        weight, bias, _ = folded[-1]
        scale, mean = (t.detach().double().numpy().ravel() for t in (scaler.scale, scaler.mean))
        folded[-1] = (weight[:, columns] * scale[columns], bias[columns] * scale[columns] + mean[columns], False)
        self._layers = folded

    def offsets(self, targets: np.ndarray) -> np.ndarray:
        """(n, 3) targets → (n, T, dof) joint offsets from the start posture."""
        x = np.asarray(targets, dtype=float).reshape(-1, 3)
        for weight, bias, silu in self._layers:
            x = x @ weight + bias
            if silu:
                x = _silu(x)
        return x.reshape(len(x), self.n_waypoints, len(self.joint_names))
