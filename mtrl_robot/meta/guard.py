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
prior's latent). With one demo leave-one-out is impossible, and the demos alone can only show overshoot; a caller
that can predict how well a model does on the task beyond the demo may add a third check:

3. **predicted better** (K = 1, with a ``judge``: parameters → the errors they are predicted to have, in cm, on each
   of several plausible models of the task): the step kept by the first check must be predicted better than the
   initialisation by at least ``margin`` on at least the share ``confidence`` of those models; otherwise the
   initialisation is kept (``judged``: the two mean predictions; ``judged_share``: the share that predicts it).

A caller that can tell that a single demo cannot be trusted at all (e.g. no robot of the task's family could have
made it) says why in ``refused``: the initialisation is then kept without adapting. Without a judge or a refusal, a
single demo that the steps fit without overshooting is trusted, even if it is another robot's. A
meta-trained step that gives NaN or inf is not shrunk: the step sizes themselves are broken, and the decision names
the parameter (``diverged``) for the caller to refuse.
Every decision is returned as a :class:`GuardDecision` and said in one line (:meth:`GuardDecision.describe`).
Adapting is deterministic (no latent draws), so the guard draws no random numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
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
    judged: tuple[float, float] | None = None  # K = 1 with a judge: mean predicted error (cm), initialisation → step
    judged_share: float | None = None  # K = 1 with a judge: the share of the judge's models predicting the step better
    refused: str | None = None  # K = 1: why the demo was not adapted to at all

    @property
    def outcome(self) -> str:
        return "adapted" if self.step_scale == 1.0 else "shrunk" if self.step_scale > 0 else "fell back"

    def describe(self) -> str:
        """One line: what was done and why."""
        demos = f"{self.k} demo{'s' if self.k > 1 else ''}"
        predicted = (f"; predicted error {self.judged[1]:.2f} cm, {self.judged[0]:.2f} cm without adapting, better "
                     f"on {self.judged_share:.0%} of the robots the demo allows" if self.judged is not None else "")
        if self.step_scale == 1.0:
            return f"adaptation guard: meta-trained step kept ({self.full_step}){predicted}"
        if self.step_scale > 0:
            return (f"adaptation guard: step shrunk to ×{self.step_scale:g} ({self.full_step}); loss on the {demos} "
                    f"{self.demo_loss[0]:.3g} → {self.demo_loss[1]:.3g}"
                    + (f", leave-one-out ×{self.held_out_ratio:.3g}" if self.held_out_ratio is not None else "")
                    + predicted)
        if self.judged is not None or self.refused is not None:
            return f"adaptation guard: kept the meta-trained initialisation ({self.full_step})"
        return (f"adaptation guard: fell back to the meta-trained initialisation, no step size down to "
                f"×{STEP_SCALES[-1]:g} passed ({self.full_step})")

    def to_dict(self) -> dict:
        return {**asdict(self), "outcome": self.outcome}


def guarded_adapt(learner: MAML, support_x: Tensor, support_y: Tensor, steps: int | None = None,
                  judge: Callable[[Params], np.ndarray] | None = None, margin: float = 0.0, confidence: float = 1.0,
                  refused: str | None = None) -> tuple[Params, GuardDecision]:
    """``learner.adapt`` on one task's support set, kept only as far as the checks above allow; returns the
    parameters (for ``learner.predict``) and the decision. ``judge``, ``margin`` (cm) and ``confidence`` are check
    3's, used with one demo only, as is ``refused``. Runs without building a graph."""
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
        if k == 1 and refused is not None:
            return initial, GuardDecision(k, 0.0, (before, before), None, refused, refused=refused)
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
                return _judged(params, initial, GuardDecision(k, scale, (before, after), ratio, why), judge, margin,
                               confidence)
        return initial, GuardDecision(k, 0.0, (before, before), None, why)


def _judged(params: Params, initial: Params, decision: GuardDecision, judge: Callable[[Params], np.ndarray] | None,
            margin: float, confidence: float) -> tuple[Params, GuardDecision]:
    """Check 3: with one demo and a judge, the kept step only if the share ``confidence`` of the judge's models
    predicts it better than the initialisation by ``margin``."""
    if decision.k != 1 or judge is None:
        return params, decision
    without, adapted = np.asarray(judge(initial), dtype=float), np.asarray(judge(params), dtype=float)
    share = better_share(without, adapted, margin)
    judged = replace(decision, judged=(float(without.mean()), float(adapted.mean())), judged_share=share)
    if share >= confidence:
        return params, judged
    why = (f"adapted with the step ×{decision.step_scale:g}, loss on the 1 demo {decision.demo_loss[0]:.3g} → "
           f"{decision.demo_loss[1]:.3g}, it is predicted to miss by {adapted.mean():.2f} cm against "
           f"{without.mean():.2f} cm without adapting, {margin:g} cm better on {share:.0%} of the robots the demo "
           f"allows: not {confidence:.0%}")
    return initial, replace(judged, step_scale=0.0, demo_loss=(decision.demo_loss[0],) * 2, full_step=why)


def better_share(without: np.ndarray, adapted: np.ndarray, margin: float) -> float:
    """The share of a judge's models on which the adapted parameters are predicted ``margin`` better than the
    initialisation (``without`` and ``adapted``: their predicted errors on each)."""
    return float(np.mean(np.subtract(without, adapted) >= margin))


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
