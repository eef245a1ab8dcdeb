"""Inner-loop step sizes of MAML: one fixed rate, or learned ones as in Meta-SGD (Li et al., 2017).

The inner update is θ' = θ − α ⊙ ∇θ L for every adapted parameter tensor θ. ``mode`` says what α is:

- ``"none"``: the fixed ``init`` for every tensor (a plain float);
- ``"per_tensor"``: one rate per tensor, a scalar parameter;
- ``"per_element"``: one rate per element, a parameter of θ's shape.

With ``learn`` the outer loop moves the stored values like any other meta-parameter, without it they stay fixed.
They are the rates themselves, initialised to ``init`` (MAML on reaching), or with ``log_space`` their logarithms,
initialised to log(``init``), so that a rate stays positive and moves by factors (policy-gradient MAML on puck
hitting, whose outer loop takes many more steps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

STEP_SIZE_MODES = ("none", "per_tensor", "per_element")


class StepSizes(nn.Module):
    """The inner step size of each adapted parameter tensor, by name (see the module docstring)."""

    def __init__(self, params: Mapping[str, Tensor], init: float, mode: str = "per_element", learn: bool = True,
                 log_space: bool = False):
        super().__init__()
        if mode not in STEP_SIZE_MODES:
            raise ValueError(f"step size mode must be one of {STEP_SIZE_MODES}, got {mode!r}")
        if not init > 0:
            raise ValueError(f"the inner step size must be positive, got {init}")
        self.names, self.init, self.mode, self.log_space = list(params), init, mode, log_space
        self.stored = nn.ParameterList()
        if mode != "none":
            for p in params.values():
                shape = p.shape if mode == "per_element" else ()
                self.stored.append(torch.full(shape, math.log(init) if log_space else init, dtype=p.dtype))
        self.requires_grad_(learn)

    def forward(self) -> dict[str, Tensor | float]:
        """Step size by parameter name: tensors (learned or fixed), or the float ``init`` in mode ``"none"``."""
        if self.mode == "none":
            return dict.fromkeys(self.names, self.init)
        rates = [value.exp() for value in self.stored] if self.log_space else list(self.stored)
        return dict(zip(self.names, rates, strict=True))

    def fill_(self, value: float) -> None:
        """Set every rate to ``value`` (e.g. a tuned fixed step size)."""
        if not value > 0:
            raise ValueError(f"the inner step size must be positive, got {value}")
        self.init = value
        with torch.no_grad():
            for stored in self.stored:
                stored.fill_(math.log(value) if self.log_space else value)

    def per_tensor(self) -> dict[str, float]:
        """The mean step size of each parameter tensor (a summary for logs)."""
        return {name: torch.as_tensor(rate).mean().item() for name, rate in self().items()}
