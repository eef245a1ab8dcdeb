"""The multilayer perceptron every model of the package is built from."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.SiLU, final_activation: bool = False) -> nn.Sequential:
    """Linear layers of the given sizes, created in order, with ``activation`` between them (and after the last
    one with ``final_activation``). SiLU by default: smooth, so second-order MAML sees curvature."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(activation())
    return nn.Sequential(*layers)
