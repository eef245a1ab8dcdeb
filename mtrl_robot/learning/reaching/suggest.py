"""Which demonstration next: the target in the reachable workspace where the adapted model is least certain.

Candidates are ``candidates`` flange targets drawn in the robot's reachable workspace
(:func:`~mtrl_robot.arms.ik.sample_reachable_targets` with :func:`~mtrl_robot.motions.reach.robot_rng` of ``seed``).
For each, the model gives a set of predicted final postures; each is clipped into the joint limits and put through
the robot's kinematics, and the **spread** is the root of the summed per-axis variance of the predicted final flange
positions (m). Two criteria choose among the candidates:

* ``spread``: the most uncertain candidate, the largest spread;
* ``variance_reduction`` (the default): the candidate whose demonstration is expected to shrink the predictive variance
  most, summed over all candidates (the workspace): with the draws' covariances, a demo at c with noise
  ``NOISE_M`` removes ``Cov(x, c)² / (Var(c) + NOISE_M²)`` of the variance at x, per axis (the linear-Gaussian
  update; active learning by integrated variance, Cohn et al., 1996). It prefers uncertain targets whose uncertainty
  is shared by much of the workspace over isolated extremes at its edge.

* **probabilistic MAML**: ``samples`` draws of the task latent from q(z | demos) (the prior at no demos), each
  adapted on the demos (:meth:`~mtrl_robot.meta.probabilistic.ProbabilisticMAML.predictive_samples`): the model's
  own predictive distribution; when ``mtrl-robot reaching calibrate`` has fitted the checkpoint's spread calibration
  (:mod:`~mtrl_robot.learning.reaching.calibration`), the draws' spread is scaled by it (the measure then says
  "calibrated") and its output noise is left out: no demonstration shrinks it, and a candidate where the noise
  moves the flange most is not where a demo teaches most;
* **plain MAML** (any non-probabilistic variant): the K leave-one-out adapted models, each adapted on all demos but
  one; where they disagree, one demo more or less changes the prediction. Needs at least 2 demos.

:func:`compare_suggested_random` measures what it is worth: on every held-out robot, K suggested demos (each
suggested from the ones before, the first from the prior) against the robot's first K demos of the run (random
targets), adapted as the evaluation adapts (:func:`~mtrl_robot.meta.guard.guarded_adapt`) and executed in MuJoCo on
the evaluation's fresh targets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.arms.ik import sample_reachable_targets
from mtrl_robot.backends.mujoco_backend import MujocoBackend
from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.progress import progress_bar
from mtrl_robot.evaluation.report import Curve, interval, markdown_table, plot_panels
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.adapt import robot_demos_and_checkpoint
from mtrl_robot.learning.reaching.checkpoint import ReachingCheckpoint
from mtrl_robot.learning.reaching.data import run_demos, to_tensors
from mtrl_robot.learning.reaching.evaluate import (
    SEED,
    TARGETS_PER_ROBOT,
    probabilistic_checkpoints,
)
from mtrl_robot.learning.reaching.predict import predict_positions, timed
from mtrl_robot.meta.guard import guarded_adapt
from mtrl_robot.motions.dataset import DemoDataset
from mtrl_robot.motions.reach import plan_reach, plan_robot_demos, robot_rng
from mtrl_robot.tasks.reaching import reach

CANDIDATES = 256  # candidate targets scored per suggestion
SAMPLES = 32  # latent draws per candidate set (probabilistic MAML)
SUGGEST_SEED = 2000  # seed of the candidates (not the evaluation's fresh targets' seed)
COMPARE_KS = (1, 2, 3, 5)
CRITERIA = ("variance_reduction", "spread")
LABELS = {"random": "random", "variance_reduction": "suggested: variance reduction",
          "spread": "suggested: most uncertain"}
NOISE_M = 0.001  # m: the demonstrated final flange position's noise in the variance-reduction score


@dataclass(frozen=True)
class Suggestion:
    """The next target to demonstrate, its predicted spread and how it was measured."""

    robot_id: str
    target: np.ndarray  # (3,) m
    spread_m: float  # predicted spread of the final flange position at the target
    measure: str  # "latent draws", "latent draws (calibrated)" or "leave-one-out"
    criterion: str  # one of CRITERIA
    demos: int  # demos the model was adapted on
    candidates: int
    seed: int

    def to_dict(self) -> dict:
        return {"robot_id": self.robot_id, "target": [round(float(v), 6) for v in self.target],
                "spread_m": round(self.spread_m, 6), "measure": self.measure, "criterion": self.criterion,
                "demos": self.demos,
                "candidates": self.candidates, "seed": self.seed}

    def describe(self) -> str:
        x, y, z = self.target
        return (f"next target for {self.robot_id}: ({x:.3f}, {y:.3f}, {z:.3f}) m, predicted spread "
                f"{100 * self.spread_m:.2f} cm, chosen by {self.criterion.replace('_', ' ')} among "
                f"{self.candidates} candidates ({self.measure}, {self.demos} demos)")


def candidate_targets(arm: Arm, n: int, seed: int) -> np.ndarray:
    """(n, 3) targets in ``arm``'s reachable workspace; depends only on (arm, n, seed)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"candidates must be a positive number of targets, got {n!r}")
    return sample_reachable_targets(arm, n, robot_rng(seed, arm.robot_id))


def final_flange_samples(state: ReachingCheckpoint, arm: Arm, support_targets: torch.Tensor,
                         support_offsets: torch.Tensor, targets: np.ndarray, samples: int) -> np.ndarray:
    """(draws, n, 3) predicted final flange positions at ``targets``: latent draws, their spread scaled by the spread
    calibration if any (probabilistic), or the leave-one-out adapted models (plain MAML, at least 2 demos)."""
    x = state.model.condition(torch.as_tensor(targets, dtype=torch.float32))
    sx, sy = state.model.condition(support_targets), state.model.normalize(support_offsets)
    steps = state.preset.adapt.steps
    if getattr(state.learner, "uses_latent", False):
        with torch.no_grad():
            raw = state.learner.predictive_samples(sx, sy, x, samples, steps, calibrated=False)
            flat = state.learner.calibrate(raw, len(support_targets), output_noise=False)
            final = arm.home_q + state.model.offsets(flat, arm.dof).double().numpy()[..., -1, :]
        return flange_position(arm, np.clip(final, arm.lower, arm.upper))
    k = len(support_targets)
    if k < 2:
        raise ValueError(f"plain MAML measures its uncertainty by leave-one-out adaptation, which needs at least 2 "
                         f"demos (got {k}); record another demo, or train with --set meta.variant=probabilistic")
    finals = []
    for left_out in range(k):
        keep = [i for i in range(k) if i != left_out]
        with torch.no_grad():
            params = state.learner.adapt(sx[keep], sy[keep], steps)
        finals.append(predict_positions(state, arm, targets, params=params)[:, -1])
    return flange_position(arm, np.stack(finals))


def spread(final_positions: np.ndarray) -> np.ndarray:
    """(draws, n, 3) → (n,) root of the summed per-axis variance over the draws, m."""
    return np.sqrt(final_positions.var(axis=0).sum(axis=-1))


def variance_reduction(final_positions: np.ndarray) -> np.ndarray:
    """(draws, n, 3) → (n,) the predictive variance (m²) over all n targets expected to go with a demo at each."""
    centred = final_positions - final_positions.mean(axis=0)
    score = np.zeros(final_positions.shape[1])
    for axis in range(3):
        covariance = centred[:, :, axis].T @ centred[:, :, axis] / len(centred)
        score += (covariance ** 2).sum(axis=0) / (np.diag(covariance) + NOISE_M ** 2)
    return score


def suggest_next(state: ReachingCheckpoint, arm: Arm, support_targets: torch.Tensor, support_offsets: torch.Tensor,
                 candidates: int = CANDIDATES, samples: int = SAMPLES, seed: int = SUGGEST_SEED,
                 criterion: str = CRITERIA[0]) -> Suggestion:
    """The best of ``candidates`` seeded targets by ``criterion``, given the demos (targets (K, 3), offsets
    (K, T, dof))."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ValueError(f"samples must be at least 2 latent draws, got {samples!r}")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    targets = candidate_targets(arm, candidates, seed)
    state.learner.generator.manual_seed(seed)
    finals = final_flange_samples(state, arm, support_targets, support_offsets, targets, samples)
    spreads = spread(finals)
    best = int(np.argmax(spreads if criterion == "spread" else variance_reduction(finals)))
    measure = "leave-one-out"
    if getattr(state.learner, "uses_latent", False):
        measure = "latent draws" + (" (calibrated)" if state.learner.spread_calibration is not None else "")
    return Suggestion(arm.robot_id, targets[best], float(spreads[best]), measure, criterion, len(support_targets),
                      candidates, seed)


def suggest_cli(run_or_checkpoint: str | Path, demos_path: str | Path, robot_id: str | None,
                candidates: int = CANDIDATES, samples: int = SAMPLES, seed: int = SUGGEST_SEED,
                criterion: str = CRITERIA[0]) -> Suggestion:
    """``mtrl-robot reaching suggest``: the next target for the robot of ``demos_path`` given all its demos there;
    ``run_or_checkpoint`` is a checkpoint or a training run folder (its checkpoint for the robot's joints)."""
    demos, path = robot_demos_and_checkpoint(run_or_checkpoint, demos_path, robot_id)
    state = checkpoints.load(path)
    data = to_tensors(demos, state.joint_names, int(state.info["n_waypoints"]))
    return suggest_next(state, demos.robots[0], data.targets, data.offsets, candidates, samples, seed, criterion)


def suggested_support(state: ReachingCheckpoint, arm: Arm, k: int, candidates: int, samples: int,
                      seed: int, criterion: str) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """``k`` demos planned to suggested targets, each suggested from the ones before (the first from the prior);
    a target the true IK cannot reach is replaced by the next suggestion. Returns targets, offsets and the
    predicted spread (m) of each suggestion."""
    n_waypoints = int(state.info["n_waypoints"])
    targets = torch.zeros((0, 3))
    offsets = torch.zeros((0, n_waypoints, arm.dof))
    spreads: list[float] = []
    draw = 0
    while len(targets) < k:
        draw += 1
        if draw > 4 * k:
            raise ValueError(f"{arm.robot_id}: IK failed for {draw - 1 - len(targets)} suggested targets")
        suggestion = suggest_next(state, arm, targets, offsets, candidates, samples, seed + draw, criterion)
        planned = plan_reach(arm, suggestion.target[None], n_waypoints)
        if not len(planned):
            continue
        demo = torch.as_tensor(planned.positions - planned.positions[:, :1], dtype=torch.float32)
        targets = torch.cat([targets, torch.as_tensor(planned.targets, dtype=torch.float32)])
        offsets = torch.cat([offsets, demo])
        spreads.append(suggestion.spread_m)
    return targets, offsets, spreads


def compare_robot(demos: DemoDataset, state: ReachingCheckpoint, ks: Sequence[int], targets_per_robot: int,
                  candidates: int, samples: int, seed: int) -> dict:
    """One held-out robot: K → errors (cm) on the fresh targets after K random demos and K suggested by each
    criterion."""
    arm = demos.robots[0]
    n_waypoints = int(state.info["n_waypoints"])
    fresh = plan_robot_demos(arm, targets_per_robot, SEED, n_waypoints).targets
    backend = MujocoBackend(arm)
    data = to_tensors(demos, state.joint_names, n_waypoints)
    supports = {"random": (data.targets, data.offsets)}
    suggested: dict[str, dict] = {}
    for criterion in CRITERIA:
        x, y, spreads = suggested_support(state, arm, max(ks), candidates, samples, seed, criterion)
        supports[criterion] = x, y
        suggested[criterion] = {"targets": x.tolist(), "spread_m": spreads}
    errors: dict[str, dict[str, list[float]]] = {name: {} for name in supports}
    for name, (sx, sy) in supports.items():
        for k in ks:
            params, _ = guarded_adapt(state.learner, state.model.condition(sx[:k]), state.model.normalize(sy[:k]),
                                      state.preset.adapt.steps)
            positions = predict_positions(state, arm, fresh, params=params)
            errors[name][str(k)] = [reach(backend, arm, timed(arm, p), t) * 100.0
                                    for p, t in zip(positions, fresh, strict=True)]
    return {"errors_cm": errors, "suggested": suggested}


def compare_suggested_random(run_dir: str | Path, out_dir: str | Path, ks: Sequence[int] = COMPARE_KS,
                             targets_per_robot: int = TARGETS_PER_ROBOT, candidates: int = CANDIDATES,
                             samples: int = SAMPLES, seed: int = SUGGEST_SEED, robots_per_family: int | None = None,
                             progress: bool = True) -> tuple[Path, Path, Path]:
    """Reach error after K suggested vs K random demos on held-out robots; returns ``suggest.md``, ``.png``,
    ``.json``."""
    started = time.perf_counter()
    run, out = Path(run_dir), Path(out_dir)
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be numbers of demos >= 1, got {list(ks)}")
    probabilistic = probabilistic_checkpoints(run, "suggestions from one demo need its latent draws")
    families = run_demos(run)
    per_robot: dict[str, dict] = {}
    family_of: dict[str, str] = {}
    calibrated = []
    for family, path in probabilistic.items():
        state = checkpoints.load(path)
        if state.learner.spread_calibration is not None:
            calibrated.append(family)
        held = list(state.info["held_out"])[:robots_per_family]
        for robot_id in progress_bar(held, desc=f"suggest {family}", unit="robot", disable=not progress):
            demos = families[family].for_robot(robot_id)
            if max(ks) > len(demos):
                raise ValueError(f"K = {max(ks)}, but {robot_id} has only {len(demos)} demos")
            per_robot[robot_id] = compare_robot(demos, state, ks, targets_per_robot, candidates, samples, seed)
            family_of[robot_id] = family
    summary = {}
    for family in [*sorted(probabilistic), "all"]:
        robots = [r for r in per_robot if family in ("all", family_of[r])]
        summary[family] = {name: {str(k): interval([e for r in robots for e in per_robot[r]["errors_cm"][name][str(k)]])
                                  .to_dict() for k in ks} for name in ("random", *CRITERIA)}
    results = {"run_dir": str(run), "families": sorted(probabilistic), "ks": list(ks), "candidates": candidates,
               "samples": samples, "seed": seed, "targets_per_robot": targets_per_robot, "calibrated": calibrated,
               "summary_cm": summary,
               "per_robot": per_robot, "family_of": family_of, "seconds": time.perf_counter() - started}
    out.mkdir(parents=True, exist_ok=True)
    json_path = write_atomic(out / "suggest.json", json.dumps(results, indent=1))
    table_path = write_atomic(out / "suggest.md", suggest_table(results))
    panels = {}
    for family, by_name in summary.items():
        panels[family] = [Curve(LABELS[name], list(ks), [by_name[name][str(k)]["mean"] for k in ks],
                                [by_name[name][str(k)]["lo"] for k in ks], [by_name[name][str(k)]["hi"] for k in ks],
                                dashed=name == "random") for name in ("random", *CRITERIA)]
    plot_path = plot_panels(panels, out / "suggest.png", xlabel="demos (K)", ylabel="reach error (cm, MuJoCo)")
    return table_path, plot_path, json_path


def suggest_table(results: dict) -> str:
    """Mean reach error (cm, 95 % interval) after K suggested and K random demos, per family and pooled."""
    rows = []
    for family, by_name in results["summary_cm"].items():
        for name in ("random", *CRITERIA):
            cells = [by_name[name][str(k)] for k in results["ks"]]
            rows.append([family, LABELS[name], *(f"{c['mean']:.2f} [{c['lo']:.2f}, {c['hi']:.2f}]" for c in cells)])
    intro = (f"Probabilistic MAML on held-out robots: reach error (cm, executed in MuJoCo, mean [95 % interval]) on "
             f"{results['targets_per_robot']} fresh targets per robot after adapting on K demos whose targets were "
             f"random (the robot's first K demos) or suggested, each given the demos before it from "
             f"{results['candidates']} candidates and {results['samples']} latent draws: the largest expected "
             "variance reduction over the workspace, or the largest spread (the most uncertain target).")
    if results.get("calibrated"):
        intro += (" The draws are widened by the spread calibration fitted on validation robots "
                  f"(`mtrl-robot reaching calibrate`; {', '.join(sorted(results['calibrated']))}).")
    return markdown_table(["family", "demos", *(f"K = {k}" for k in results["ks"])], rows, [intro],
                          right_align_from=2)
