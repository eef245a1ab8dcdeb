"""The one-demo check's confidence, measured on validation robots: which share leaves no robot worse for adapting.

For every plain-MAML checkpoint of a run (one per family) and its **validation robots** — fresh robots of the run's
population beyond its last one, never trained on or held out, drawn as the spread calibration draws them
(:func:`~mtrl_robot.learning.reaching.evaluate.validation_robots`: the robot's demo planned with the run's demo seed;
its fresh targets as the evaluation's) — one demo adapts the model through the adaptation guard's first check alone
(:func:`~mtrl_robot.meta.guard.guarded_adapt` without a judge), and the judge of
:mod:`~mtrl_robot.learning.reaching.single_demo` predicts the error of the kept step and of the initialisation on
each chain the demo allows. Both models' paths to the fresh targets are executed in MuJoCo. For each confidence tried,
a robot keeps the adapted model when at least that share of the chains predicts adapting ``CHECK_MARGIN_CM`` better,
the initialisation otherwise; the table gives the mean error and the robots that end worse than the initialisation
(their mean over their targets), per confidence. The confidence chosen gives up none of what adapting gains: among
those whose mean error is no higher than the guard's without the check, the one with the fewest robots worse, then
the highest (where the validation robots cannot tell two apart, the more cautious).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mtrl_robot.backends.mujoco_backend import MujocoBackend
from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.progress import progress_bar
from mtrl_robot.evaluation.report import interval, markdown_table
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.calibration import VALIDATION_ROBOTS  # as many as the spread calibration
from mtrl_robot.learning.reaching.data import to_tensors
from mtrl_robot.learning.reaching.evaluate import (
    SEED,
    meta_trained_checkpoints,
    validation_robots,
)
from mtrl_robot.learning.reaching.predict import predict_positions, timed
from mtrl_robot.learning.reaching.single_demo import CHECK_CONFIDENCE, CHECK_MARGIN_CM, single_demo_judge
from mtrl_robot.meta.guard import better_share, guarded_adapt
from mtrl_robot.motions.reach import plan_robot_demos
from mtrl_robot.tasks.reaching import reach

CONFIDENCES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)  # the shares of the chains tried
TARGETS = 30  # fresh targets per validation robot: enough to tell a robot made worse from one measured unluckily


def robot_case(state: checkpoints.ReachingCheckpoint, demos, targets_per_robot: int, seed: int) -> dict:
    """One validation robot: its errors (cm) without adapting and with the step the guard's first check keeps, the
    judge's predictions for both on each chain (None without a plausible calibration or when the check kept
    nothing), and whether the demo is refused (no robot of the family could have made it)."""
    arm = demos.robots[0]
    n_waypoints = int(state.info["n_waypoints"])
    targets = plan_robot_demos(arm, targets_per_robot, seed, n_waypoints).targets
    data = to_tensors(demos, state.joint_names, n_waypoints)
    params, decision = guarded_adapt(state.learner, state.model.condition(data.targets[:1]),
                                     state.model.normalize(data.offsets[:1]), state.preset.adapt.steps)
    judge, refused = single_demo_judge(state, demos)
    initial = state.learner.unadapted()
    backend = MujocoBackend(arm)

    def errors(params: dict) -> list[float]:
        return [reach(backend, arm, timed(arm, p), t) * 100.0
                for p, t in zip(predict_positions(state, arm, targets, params=params), targets, strict=True)]

    without = errors(initial)
    adapted = errors(params) if decision.step_scale > 0 else without
    judged = [judge(initial).tolist(), judge(params).tolist()] if judge is not None and decision.step_scale > 0 \
        else None
    return {"robot": arm.robot_id, "step_scale": decision.step_scale, "judged": judged, "refused": refused is not None,
            "no_adaptation": without, "adapted": adapted}


def kept(case: dict, confidence: float | None) -> list[float]:
    """The errors of the model a confidence keeps (None: no check, the adapted model; a refused demo: the
    initialisation at any confidence)."""
    judged = case["judged"]
    adapt = confidence is None or not case["refused"] and (
        judged is None or better_share(*judged, CHECK_MARGIN_CM) >= confidence)
    return case["adapted"] if adapt else case["no_adaptation"]


def summary(cases: dict[str, list[dict]], confidence: float | None) -> dict:
    """Mean error (interval over robots × targets) pooled and per family, and the robots worse than without adapting,
    with the check at ``confidence`` (None: without it)."""
    worse = [c["robot"] for family in cases.values() for c in family
             if np.mean(kept(c, confidence)) > np.mean(c["no_adaptation"])]
    errors = {f: [e for c in family for e in kept(c, confidence)] for f, family in cases.items()}
    return {"confidence": confidence, "all": interval([e for family in errors.values() for e in family]).to_dict(),
            "families": {f: float(np.mean(family)) for f, family in errors.items()}, "worse": worse}


def measure_confidences(run_dir: str | Path, out_dir: str | Path, confidences: Sequence[float] = CONFIDENCES,
                        validation: int = VALIDATION_ROBOTS, targets_per_robot: int = TARGETS, seed: int = SEED,
                        progress: bool = True) -> tuple[Path, Path]:
    """Measure the one-demo check at every confidence on the run's validation robots; returns ``single_demo.md`` and
    ``single_demo.json`` (written into ``out_dir``)."""
    started = time.perf_counter()
    run, out = Path(run_dir), Path(out_dir)
    if validation < 1 or not confidences or not 0 <= min(confidences) <= max(confidences) <= 1:
        raise ValueError(f"need at least 1 validation robot per family and confidences in [0, 1], got {validation} "
                         f"and {list(confidences)}")
    plain = {f: p for f, (p, variant) in meta_trained_checkpoints(run).items() if variant != "probabilistic"}
    if not plain:
        raise ValueError(f"{run}: no meta-trained checkpoint of plain MAML (the one-demo check is made for it)")
    cases: dict[str, list[dict]] = {}
    for family, path in plain.items():
        state = checkpoints.load(path)
        demos, robots = validation_robots(state, validation, 1)
        with torch.no_grad():
            cases[family] = [robot_case(state, demos.for_robot(robot), targets_per_robot, seed)
                             for robot in progress_bar(robots, desc=f"validation {family}", unit="robot",
                                                       disable=not progress)]
    rows = [summary(cases, None), *(summary(cases, float(c)) for c in sorted(confidences))]
    without = rows[0]["all"]["mean"]
    chosen = min((r for r in rows[1:] if r["all"]["mean"] <= without),
                 key=lambda r: (len(r["worse"]), -r["confidence"]), default={"confidence": None})["confidence"]
    results = {"run_dir": str(run), "validation_robots": validation, "targets_per_robot": targets_per_robot,
               "seed": seed, "no_adaptation": summary({f: [{**c, "adapted": c["no_adaptation"]} for c in family]
                                                       for f, family in cases.items()}, None),
               "confidences": rows, "chosen": chosen, "check_margin_cm": CHECK_MARGIN_CM,
               "check_confidence": CHECK_CONFIDENCE, "cases": cases,
               "seconds": time.perf_counter() - started}
    out.mkdir(parents=True, exist_ok=True)
    json_path = write_atomic(out / "single_demo.json", json.dumps(results, indent=1))
    return write_atomic(out / "single_demo.md", confidence_table(results)), json_path


def confidence_table(results: dict) -> str:
    """Rows: no adaptation, the guard without the check, then each confidence; mean error pooled (interval) and per
    family, and the robots worse than without adapting."""
    families = list(results["no_adaptation"]["families"])

    def row(label: str, r: dict) -> list[str]:
        s, worse = r["all"], r["worse"]
        return [label, f"{s['mean']:.3f} [{s['lo']:.2f}, {s['hi']:.2f}]",
                *(f"{r['families'][f]:.2f}" for f in families),
                str(len(worse)) + (f" ({', '.join(worse)})" if 0 < len(worse) <= 5 else "")]

    rows = [row("no adaptation (meta-trained init)", results["no_adaptation"])]
    rows += [row("MAML, K = 1, guard without the check" if r["confidence"] is None else
                 f"with the check, {r['confidence']:.0%} of the chains" +
                 (" (chosen)" if r["confidence"] == results["chosen"] else ""), r) for r in results["confidences"]]
    intro = (f"The adaptation guard's one-demo check on {results['validation_robots']} validation robots per family "
             f"(fresh robots of the run's population, never trained on or held out), K = 1: final flange-to-target "
             f"distance in cm executed in MuJoCo, mean [95 % Student-t interval] over robots × "
             f"{results['targets_per_robot']} fresh targets, and the robots whose mean ends worse than without "
             f"adapting. The check keeps the initialisation unless at least the given share of the chains drawn from "
             f"the demo's kinematic calibration predicts adapting {results['check_margin_cm']:g} cm better; chosen: "
             f"of the shares whose mean is no higher than without the check, the fewest robots worse, then the "
             f"highest (the code's share: {results['check_confidence']:.0%}).")
    return markdown_table(["", "all", *families, "robots worse than without adapting"], rows, [intro])
