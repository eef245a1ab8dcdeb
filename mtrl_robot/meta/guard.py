"""Adaptation that does not end worse than the meta-trained initialisation it starts from.

A few demos can pull a meta-trained model the wrong way: the learned step sizes suit the support-set size and the
number of inner steps they were meta-trained for, and one or two demos can make the inner steps overshoot, or fit the
demos at the cost of every other target. :func:`guarded_adapt` adapts with the learner's own rule, then checks the
result on the demos alone, trying the step sizes ×1, ×½, ×¼, … in turn and keeping the first that passes both checks:

1. **the demos are fitted**: the loss on the K demos must fall, and halving the step must not fit them better. A
   step that raises the loss on the very demos it descends on overshoots; so does one that ends above half of it,
   even if below the start: its inner steps oscillate instead of settling;
2. **held-out demos** (K ≥ 2): leave one out — adapt on the other K − 1 demos and measure the one left out, for
   each demo in turn, against the initialisation's loss on that demo (what the initialisation, which sees no demo,
   scores when it is measured the same way). The ratio of the two must be below 1 in the geometric mean over the
   demos: every demo weighs the same, whatever its loss, so one demo the initialisation already misses badly
   cannot outvote the others (a step that fits the demos but not a demo it has not seen makes the other targets
   worse).

When no step size passes, the initialisation is kept (``learner.unadapted()``: for the probabilistic variant the
prior's latent). With one demo only the first check is possible: a single demo that the steps fit without
overshooting is trusted, even if it is another robot's. A meta-trained step that gives NaN or inf is not shrunk: the
step sizes themselves are broken, and the decision names the parameter (``diverged``) for the caller to refuse.
Every decision is returned as a :class:`GuardDecision` and said in one line (:meth:`GuardDecision.describe`).
Adapting is deterministic (no latent draws), so the guard draws no random numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from mtrl_robot.core.torch_files import first_non_finite
from mtrl_robot.meta.maml import MAML, Params

STEP_SCALES = (1.0, 0.5, 0.25, 0.125, 0.0625)  # tried in turn; after the last, the initialisation is kept
LOSS_FLOOR = 1e-12  # per-demo losses below it count as it in the leave-one-out ratio (a perfect fit is no division)


@dataclass(frozen=True)
class GuardDecision:
    """What the guard did with one adaptation: ``step_scale`` 1 (as meta-trained), < 1 (shrunk) or 0 (fell back to
    the initialisation); losses are the learner's loss, before → after adapting with the kept step."""

    k: int
    step_scale: float
    demo_loss: tuple[float, float]  # on the K demos, before → after
    held_out_ratio: float | None  # leave-one-out loss over the initialisation's, geometric mean over demos (K ≥ 2)
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
                    f"{self.demo_loss[0]:.3g} → {self.demo_loss[1]:.3g}"
                    + (f", leave-one-out ×{self.held_out_ratio:.3g}" if self.held_out_ratio is not None else ""))
        return (f"adaptation guard: fell back to the meta-trained initialisation, no step size down to "
                f"×{STEP_SCALES[-1]:g} passed ({self.full_step})")

    def to_dict(self) -> dict:
        return {**asdict(self), "outcome": self.outcome}


def guarded_adapt(learner: MAML, support_x: Tensor, support_y: Tensor, steps: int | None = None
                  ) -> tuple[Params, GuardDecision]:
    """``learner.adapt`` on one task's support set, kept only as far as the checks above allow; returns the
    parameters (for ``learner.predict``) and the decision. Runs without building a graph."""
    k = len(support_x)
    fitted: dict[float, tuple[Params, float]] = {}  # step scale → adapted parameters, their loss on the demos

    def adapted(scale: float) -> tuple[Params, float]:
        if scale not in fitted:
            params = learner.adapt(support_x, support_y, steps, step_scale=scale)
            fitted[scale] = params, _loss(learner, params, support_x, support_y)
        return fitted[scale]

    with torch.no_grad():
        initial = learner.unadapted()
        before = _loss(learner, initial, support_x, support_y)
        why = ""
        for scale in STEP_SCALES:
            params, after = adapted(scale)
            diverged = first_non_finite(params) if scale == 1.0 else None
            if diverged is not None:
                return initial, GuardDecision(k, 0.0, (before, before), None, f"NaN or inf in {diverged}", diverged)
            halved = adapted(scale / 2)[1]
            fits = after < before and after <= halved  # False for NaN
            ratio = _leave_one_out_ratio(learner, initial, support_x, support_y, steps, scale) \
                if k > 1 and fits else None
            generalises = ratio is None or ratio < 1.0
            if scale == 1.0:
                why = _reason(k, before, after, halved, ratio, fits, generalises)
            if fits and generalises:
                return params, GuardDecision(k, scale, (before, after), ratio, why)
        return initial, GuardDecision(k, 0.0, (before, before), None, why)


def _loss(learner: MAML, params: Params, x: Tensor, y: Tensor) -> float:
    return float(learner.loss_fn(learner.predict(params, x), y))


def _leave_one_out_ratio(learner: MAML, initial: Params, x: Tensor, y: Tensor, steps: int | None,
                         scale: float) -> float:
    """Geometric mean over the demos of the loss on each after adapting on the others, over the initialisation's
    loss on it."""
    logs = []
    for i in range(len(x)):
        others = torch.arange(len(x)) != i
        params = learner.adapt(x[others], y[others], steps, step_scale=scale)
        left_out, init = (max(_loss(learner, p, x[i:i + 1], y[i:i + 1]), LOSS_FLOOR) for p in (params, initial))
        logs.append(math.log(left_out / init) if math.isfinite(left_out) else math.inf)
    return math.exp(sum(logs) / len(logs))


def _reason(k: int, before: float, after: float, halved: float, ratio: float | None, fits: bool,
            generalises: bool) -> str:
    """Why the meta-trained step passed or failed, with its numbers."""
    demos = f"loss on the {k} demo{'s' if k > 1 else ''} {before:.3g} → {after:.3g}"
    if not fits:
        overshoots = after < before and not after <= halved
        return f"with it, {demos}" + (f", ×½ fits them better ({halved:.3g})" if overshoots else "")
    if not generalises:
        return f"with it, {demos} but leave-one-out ×{ratio:.3g} of the initialisation's loss"
    return demos + (f", leave-one-out ×{ratio:.3g} of the initialisation's loss" if ratio is not None else "")
