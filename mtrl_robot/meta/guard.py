"""Adaptation that does not end worse than the meta-trained initialisation it starts from.

A few demos can pull a meta-trained model the wrong way: the learned step sizes suit the support-set size they were
meta-trained for, and one or two demos can make the inner steps overshoot, or fit the demos at the cost of every
other target. :func:`guarded_adapt` adapts with the learner's own rule, then checks the result on the demos alone,
trying the step sizes ×1, ×½, ×¼, … in turn and keeping the first that passes both checks:

1. **the demos**: the loss on the K demos must fall (steps that raise the loss on the very demos they descend on
   overshoot: they are too large);
2. **held-out demos** (K ≥ 2): leave one out — adapt on the other K − 1 demos and measure the one left out, for
   each demo in turn; the mean must be below the initialisation's loss on the same demos (a step that fits the
   demos but not a demo it has not seen makes the other targets worse).

When no step size passes, the initialisation is kept (``learner.unadapted()``: for the probabilistic variant the
prior's latent). With one demo only the first check is possible: a single demo that the steps fit without
overshooting is trusted, even if it is another robot's. A meta-trained step that gives NaN or inf is not shrunk: the
step sizes themselves are broken, and the decision names the parameter (``diverged``) for the caller to refuse.
Every decision is returned as a :class:`GuardDecision` and said in one line (:meth:`GuardDecision.describe`).
Adapting is deterministic (no latent draws), so the guard draws no random numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from mtrl_robot.core.torch_files import first_non_finite
from mtrl_robot.meta.maml import MAML, Params

STEP_SCALES = (1.0, 0.5, 0.25, 0.125, 0.0625)  # tried in turn; after the last, the initialisation is kept


@dataclass(frozen=True)
class GuardDecision:
    """What the guard did with one adaptation: ``step_scale`` 1 (as meta-trained), < 1 (shrunk) or 0 (fell back to
    the initialisation); losses are the learner's loss, before → after adapting with the kept step."""

    k: int
    step_scale: float
    demo_loss: tuple[float, float]  # on the K demos, before → after
    held_out_loss: tuple[float, float] | None  # leave-one-out, before → after (K ≥ 2)
    full_step: str  # why the meta-trained step was kept or refused
    diverged: str | None = None  # the first parameter the meta-trained step made NaN or inf

    @property
    def outcome(self) -> str:
        return "adapted" if self.step_scale == 1.0 else "shrunk" if self.step_scale > 0 else "fell back"

    def describe(self) -> str:
        """One line: what was done and why."""
        demos = f"{self.k} demo{'s' if self.k > 1 else ''}"
        if self.step_scale == 1.0:
            return f"adaptation guard: meta-trained step kept ({self.full_step})"
        if self.step_scale > 0:
            return (f"adaptation guard: step shrunk to ×{self.step_scale:g} ({self.full_step}); loss on the {demos} "
                    f"{self.demo_loss[0]:.3g} → {self.demo_loss[1]:.3g}")
        return (f"adaptation guard: fell back to the meta-trained initialisation, no step size down to "
                f"×{STEP_SCALES[-1]:g} passed ({self.full_step})")

    def to_dict(self) -> dict:
        return {**asdict(self), "outcome": self.outcome}


def guarded_adapt(learner: MAML, support_x: Tensor, support_y: Tensor, steps: int | None = None
                  ) -> tuple[Params, GuardDecision]:
    """``learner.adapt`` on one task's support set, kept only as far as the checks above allow; returns the
    parameters (for ``learner.predict``) and the decision. Runs without building a graph."""
    k = len(support_x)
    with torch.no_grad():
        initial = learner.unadapted()
        before = _loss(learner, initial, support_x, support_y)  # also the mean leave-one-out loss of the init
        why = ""
        for scale in STEP_SCALES:
            params = learner.adapt(support_x, support_y, steps, step_scale=scale)
            diverged = first_non_finite(params) if scale == 1.0 else None
            if diverged is not None:
                return initial, GuardDecision(k, 0.0, (before, before), None, f"NaN or inf in {diverged}", diverged)
            after = _loss(learner, params, support_x, support_y)
            fits = after < before  # False for NaN
            held_out = _leave_one_out(learner, support_x, support_y, steps, scale) if k > 1 and fits else None
            generalises = held_out is None or held_out < before
            if scale == 1.0:
                why = _reason(k, before, after, held_out, fits, generalises)
            if fits and generalises:
                return params, GuardDecision(k, scale, (before, after),
                                             None if held_out is None else (before, held_out), why)
        return initial, GuardDecision(k, 0.0, (before, before), None if k == 1 else (before, before), why)


def _loss(learner: MAML, params: Params, x: Tensor, y: Tensor) -> float:
    return float(learner.loss_fn(learner.predict(params, x), y))


def _leave_one_out(learner: MAML, x: Tensor, y: Tensor, steps: int | None, scale: float) -> float:
    """Mean loss on each demo after adapting on the others."""
    losses = []
    for i in range(len(x)):
        others = torch.arange(len(x)) != i
        params = learner.adapt(x[others], y[others], steps, step_scale=scale)
        losses.append(_loss(learner, params, x[i:i + 1], y[i:i + 1]))
    return sum(losses) / len(losses)


def _reason(k: int, before: float, after: float, held_out: float | None, fits: bool, generalises: bool) -> str:
    """Why the meta-trained step passed or failed, with its numbers."""
    demos = f"loss on the {k} demo{'s' if k > 1 else ''} {before:.3g} → {after:.3g}"
    if not fits:
        return f"with it, {demos}"
    if not generalises:
        return f"with it, {demos} but leave-one-out {before:.3g} → {held_out:.3g}"
    return demos + (f", leave-one-out {before:.3g} → {held_out:.3g}" if held_out is not None else "")
