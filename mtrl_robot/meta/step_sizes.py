"""Inner-loop step sizes of MAML: one fixed rate, or learned ones as in Meta-SGD (Li et al., 2017).

The inner update is θ' = θ − α ⊙ ∇θ L for every adapted parameter tensor θ. ``mode`` says what α is:

- ``"none"``: the fixed ``init`` for every tensor (a plain float);
- ``"per_tensor"``: one rate per tensor, a scalar parameter;
- ``"per_element"``: one rate per element, a parameter of θ's shape.

With ``learn`` the outer loop moves the stored values like any other meta-parameter, without it they stay fixed.
They are the rates themselves, initialised to ``init`` (MAML on reaching), or with ``log_space`` their logarithms,
initialised to log(``init``), so that a rate stays positive and moves by factors (policy-gradient MAML on puck
hitting, whose outer loop takes many more steps). All of them are one flat parameter vector, ``stored``, viewed
per tensor.
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
        dtypes = {p.dtype for p in params.values()}
        if len(dtypes) > 1:
            raise ValueError(f"the adapted parameters must share one dtype, got {sorted(map(str, dtypes))}")
        self.names, self.init, self.mode, self.log_space = list(params), init, mode, log_space
        self.shapes = [p.shape if mode == "per_element" else torch.Size() for p in params.values()]
        if mode != "none":
            size = sum(shape.numel() for shape in self.shapes)
            dtype = dtypes.pop() if dtypes else torch.get_default_dtype()
            self.stored = nn.Parameter(torch.full((size,), math.log(init) if log_space else init, dtype=dtype))
        self.requires_grad_(learn)

    def forward(self) -> dict[str, Tensor | float]:
        """Step size by parameter name: tensors (learned or fixed), or the float ``init`` in mode ``"none"``."""
        if self.mode == "none":
            return dict.fromkeys(self.names, self.init)
        flat = self.stored.exp() if self.log_space else self.stored
        rates = flat.split([shape.numel() for shape in self.shapes])
        return {name: rate.view(shape) for name, rate, shape in zip(self.names, rates, self.shapes, strict=True)}

    def fill_(self, value: float) -> None:
        """Set every rate to ``value`` (e.g. a tuned fixed step size)."""
        if not value > 0:
            raise ValueError(f"the inner step size must be positive, got {value}")
        self.init = value
        if self.mode != "none":
            with torch.no_grad():
                self.stored.fill_(math.log(value) if self.log_space else value)

    def per_tensor(self) -> dict[str, float]:
        """The mean step size of each parameter tensor (a summary for logs)."""
        return {name: torch.as_tensor(rate).mean().item() for name, rate in self().items()}
