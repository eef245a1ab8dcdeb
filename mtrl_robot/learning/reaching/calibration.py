"""Is probabilistic MAML's uncertainty calibrated? The predicted spread of the final flange position on held-out robots.

For every held-out robot of a run's probabilistic checkpoints, K support demos (its first K; K = 0: the prior) and
the evaluation's fresh targets (:func:`~mtrl_robot.motions.reach.plan_robot_demos` with ``seed``, as in
:mod:`~mtrl_robot.learning.reaching.evaluate`):

1. ``samples`` draws of the task latent z from q(z | support) (the prior N(0, I) at K = 0), each adapted on the
   support set (:meth:`~mtrl_robot.meta.probabilistic.ProbabilisticMAML.predictive_samples`), give ``samples``
   predicted trajectories per target;
2. each one's final posture, clipped into the robot's joint limits, is put through the robot's true kinematics: the
   predictive distribution of where the flange ends (MuJoCo tracks the planned posture to within a millimetre);
3. the target is where the flange should end. Per axis, its rank among the samples (the probability integral
   transform) says which central interval of the predictive distribution holds it: the interval of level p covers
   the target when ``|rank − 0.5| ≤ p / 2``.

A calibrated model covers the target in a fraction p of the cases at every level p; the reliability diagram plots
observed against nominal coverage for p = 0.1 … 0.9 (one curve per K), and the table gives the 50 % and 90 % rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mtrl_robot.arms.fk import flange_position
from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.progress import progress_bar
from mtrl_robot.evaluation.report import Curve, markdown_table, plot_panels
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.checkpoint import ReachingCheckpoint
from mtrl_robot.learning.reaching.data import run_demos, to_tensors
from mtrl_robot.learning.reaching.evaluate import (
    SEED,
    TARGETS_PER_ROBOT,
    probabilistic_checkpoints,
)
from mtrl_robot.motions.dataset import DemoDataset
from mtrl_robot.motions.reach import plan_robot_demos

LEVELS = np.round(np.arange(0.1, 1.0, 0.1), 2)  # nominal coverages of the reliability diagram
TABLE_LEVELS = (0.5, 0.9)
SAMPLES = 64  # latent draws per support set


def coverage(ranks: np.ndarray, levels: Sequence[float] = LEVELS) -> np.ndarray:
    """Observed coverage of the central intervals of each level, from ranks (PIT values) in [0, 1]."""
    return np.array([float(np.mean(np.abs(ranks - 0.5) <= level / 2)) for level in levels])


def robot_ranks(demos: DemoDataset, state: ReachingCheckpoint, k: int, targets: np.ndarray,
                samples: int) -> np.ndarray:
    """Per target and axis, the fraction of predicted final flange positions below the target: (n, 3)."""
    arm = demos.robots[0]
    data = to_tensors(demos, state.joint_names, int(state.info["n_waypoints"]))
    x = torch.as_tensor(targets, dtype=torch.float32)
    with torch.no_grad():
        flat = state.learner.predictive_samples(data.targets[:k], state.model.normalize(data.offsets[:k]), x,
                                                samples, state.preset.adapt.steps)
        final = arm.home_q + state.model.offsets(flat, arm.dof).double().numpy()[..., -1, :]  # (samples, n, dof)
    reached = flange_position(arm, np.clip(final, arm.lower, arm.upper))  # (samples, n, 3)
    return (reached < targets[None]).mean(axis=0)


def calibrate_reaching(run_dir: str | Path, out_dir: str | Path, ks: Sequence[int] = (0, 1, 5),
                       targets_per_robot: int = TARGETS_PER_ROBOT, samples: int = SAMPLES, seed: int = SEED,
                       robots_per_family: int | None = None, progress: bool = True) -> tuple[Path, Path, Path]:
    """Coverage of the predictive intervals for every K; returns ``calibration.md``, ``.png`` and ``.json``."""
    started = time.perf_counter()
    run, out = Path(run_dir), Path(out_dir)
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 0:
        raise ValueError(f"ks must be numbers of demos >= 0, got {list(ks)}")
    probabilistic = probabilistic_checkpoints(run)
    families = run_demos(run)
    ranks: dict[int, list[np.ndarray]] = {k: [] for k in ks}
    for family, path in probabilistic.items():
        state = checkpoints.load(path)
        state.learner.generator.manual_seed(seed)
        held = list(state.info["held_out"])[:robots_per_family]
        for robot_id in progress_bar(held, desc=f"calibration {family}", unit="robot", disable=not progress):
            demos = families[family].for_robot(robot_id)
            if max(ks) > len(demos):
                raise ValueError(f"K = {max(ks)}, but {robot_id} has only {len(demos)} demos")
            targets = plan_robot_demos(demos.robots[0], targets_per_robot, seed,
                                       int(state.info["n_waypoints"])).targets
            for k in ks:
                ranks[k].append(robot_ranks(demos, state, k, targets, samples))
    observed = {k: coverage(np.concatenate(r).ravel()) for k, r in ranks.items()}
    results = {"run_dir": str(run), "families": sorted(probabilistic), "ks": list(ks), "samples": samples,
               "seed": seed, "targets_per_robot": targets_per_robot, "levels": LEVELS.tolist(),
               "cases": {str(k): int(np.concatenate(r).size) for k, r in ranks.items()},
               "coverage": {str(k): v.tolist() for k, v in observed.items()},
               "seconds": time.perf_counter() - started}
    out.mkdir(parents=True, exist_ok=True)
    json_path = write_atomic(out / "calibration.json", json.dumps(results, indent=1))
    table_path = write_atomic(out / "calibration.md", calibration_table(results))
    levels = LEVELS.tolist()
    curves = [Curve(f"K = {k}", levels, observed[k].tolist(), observed[k].tolist(), observed[k].tolist()) for k in ks]
    curves.append(Curve("calibrated", levels, levels, levels, levels, dashed=True))
    plot_path = plot_panels({"reliability of the final flange position (per axis)": curves}, out / "calibration.png",
                            xlabel="nominal coverage of the central interval", ylabel="observed coverage")
    return table_path, plot_path, json_path


def calibration_table(results: dict) -> str:
    """Observed coverage (%) of the 50 % and 90 % central intervals per K."""
    index = [results["levels"].index(level) for level in TABLE_LEVELS]
    rows = [[f"K = {k}", *(f"{100 * results['coverage'][str(k)][i]:.1f}" for i in index), str(results["cases"][str(k)])]
            for k in results["ks"]]
    intro = (f"Probabilistic MAML ({', '.join(results['families'])}): how often the target lies inside the central "
             f"interval of the predicted final flange position, per axis, on held-out robots × "
             f"{results['targets_per_robot']} fresh targets; {results['samples']} latent draws per support set. "
             "Calibrated: the observed coverage equals the nominal one.")
    return markdown_table(["support demos", "50 % interval covers (%)", "90 % interval covers (%)", "cases"], rows,
                          [intro])
