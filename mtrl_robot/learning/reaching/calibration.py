"""Is probabilistic MAML's uncertainty calibrated? Where the flange ends against its predicted spread, before and
after a calibration of the spread fitted on validation robots.

**A case** is one robot, K support demos (none: the prior) and one fresh target t:

1. *where the arm ends*: the model adapted on the K demos as the stack adapts
   (:func:`~mtrl_robot.meta.guard.guarded_adapt`; K = 0: the initialisation with the prior's mean latent), its
   trajectory to t executed in MuJoCo (:func:`~mtrl_robot.tasks.reaching.final_flange`): the final flange position p;
2. *the prediction*: ``samples`` draws of the task latent z from q(z | demos) (the prior N(0, I) at K = 0), each
   adapted on the demos with the step the guard kept for the executed model
   (:meth:`~mtrl_robot.meta.probabilistic.ProbabilisticMAML.predictive_samples` with its ``step_scale``; where it
   fell back, the prior's draws, unadapted), give trajectories q_z: the draws describe the model that is executed,
   so where the guard shrinks the step for some robots and not for others, the calibration does not depend on how
   often it does. Each draw is a hypothesis of the motion that reaches t on this robot; if it is right, the
   executed motion q* misses t by the difference of the two final flange positions, so the draw predicts the flange
   to end at ``t + FK(q*) − FK(q_z)`` (final postures clipped into the joint limits, FK the robot's kinematics);
3. per axis, the rank of p among the predictions (the probability integral transform) says which central interval
   of the predictive distribution holds it: the interval of level c covers p when ``|rank − 0.5| ≤ c / 2``.

A calibrated model covers p in a fraction c of the cases at every level c; the reliability diagram plots observed
against nominal coverage for c = 0.1 … 0.9 (one curve per K).

**The calibration** (:class:`~mtrl_robot.meta.probabilistic.SpreadCalibration`): per family checkpoint and K, the
draws' spread about their mean is scaled by ``scale`` and output noise of scale ``noise`` is added
(:func:`~mtrl_robot.meta.probabilistic.widen`), Student-t with ``NOISE_DOF`` degrees of freedom
(:func:`~mtrl_robot.meta.probabilistic.noise_draws`): the flange's misses have heavier tails than Gaussian noise
gives, so that Gaussian noise wide enough for the 90 % interval makes the 50 % one too wide, and a compromise between
them leaves the 90 % interval short. The pair is the grid point (``SCALES`` × ``NOISES``, then a finer grid around the
best) with the smallest gap between observed and nominal coverage over the levels (:func:`calibration_error`), on
**validation robots**: fresh robots of the run's population beyond its last one (indices ``robots_per_family`` …
``robots_per_family + validation_robots − 1`` of each family, :func:`~mtrl_robot.arms.population.perturb` with the
run's population config), neither meta-trained on nor held out; their support demos are planned as the run plans
demos (its demo seed), their fresh targets as the held-out robots'. It is written into the checkpoint
(``spread_calibration``), so that ``predict_distribution`` widens its draws with it, and ``mtrl-robot reaching
suggest`` and the adaptation node's ``~/suggest`` scale their draws' spread by it. The **held-out robots** (their
first K demos of the run and the evaluation's fresh targets, never used for the fit) measure the coverage before
(the raw draws) and after (the same draws widened as the learner widens them), pooled and per family. A robot's
targets miss together, so the pooled coverage after comes with the interval over resamples of the held-out robots
(:func:`robot_interval`): a few robots move it more than the number of cases suggests. The run holds out only a few
robots per family, so the coverage after is also measured on **test robots**: fresh robots after the validation ones
(``test_robots`` per family), planned as the validation robots are, never trained on nor used for the fit.
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
from mtrl_robot.backends.mujoco_backend import MujocoBackend
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
    validation_arms,
)
from mtrl_robot.learning.reaching.predict import predict_positions, timed
from mtrl_robot.meta.guard import guarded_adapt
from mtrl_robot.meta.probabilistic import SpreadCalibration, noise_draws, widen
from mtrl_robot.motions.reach import plan_robot_demos
from mtrl_robot.tasks.reaching import final_flange

LEVELS = np.round(np.arange(0.1, 1.0, 0.1), 2)  # nominal coverages of the reliability diagram
TABLE_LEVELS = (0.5, 0.9)
SAMPLES = 64  # latent draws per support set
VALIDATION_ROBOTS = 60  # per family, for the fit
TEST_ROBOTS = 60  # per family, fresh robots after the validation ones: coverage on more robots than the held-out ones
NOISE_DOF = 2  # degrees of freedom of the Student-t output noise
SCALES = np.geomspace(1.0, 32.0, 11)  # the fit's coarse grid: factors on the draws' spread …
NOISES = np.concatenate([[0.0], np.geomspace(0.002, 1.024, 10)])  # … and output noise, model units
REFINE = np.array([-0.5, -0.25, 0.0, 0.25, 0.5])  # the fine grid: these fractions of a coarse step around the best
RESAMPLES = 2000  # robot resamples for the interval of the held-out coverage


@dataclass(frozen=True)
class Cases:
    """One robot at one K: the raw predictive draws at its fresh targets and where the arm ended."""

    arm: Arm
    draws: torch.Tensor  # (samples, n, outputs): the model's outputs, before any calibration
    deployed: np.ndarray  # (n, 3) m: the forward kinematics of the executed trajectory's final posture
    executed: np.ndarray  # (n, 3) m: where the flange ended in MuJoCo
    targets: np.ndarray  # (n, 3) m


def coverage(ranks: np.ndarray, levels: Sequence[float] = LEVELS) -> np.ndarray:
    """Observed coverage of the central intervals of each level, from ranks (PIT values) in [0, 1]."""
    return np.array([float(np.mean(np.abs(ranks - 0.5) <= level / 2)) for level in levels])


def robot_interval(by_family: Sequence[Sequence[np.ndarray]], seed: int) -> list[list[float]]:
    """Per level, the 95 % interval of the pooled coverage over ``RESAMPLES`` resamples of the robots (with
    replacement, within each family; each robot's ranks as one unit): how far the coverage of this few robots can
    move by which robots happen to be drawn, as a robot's targets miss together."""
    rng = np.random.default_rng(seed)
    resampled = np.array([coverage(np.concatenate([robots[i].ravel() for robots in by_family
                                                   for i in rng.integers(len(robots), size=len(robots))]))
                          for _ in range(RESAMPLES)])
    return np.percentile(resampled, [2.5, 97.5], axis=0).T.tolist()


def calibration_error(observed: np.ndarray) -> float:
    """Squared gap between observed coverage (at ``LEVELS``) and the nominal one c, each divided by c (1 − c), the
    binomial variance of a coverage c (so a gap in the tails, where coverage varies least by chance, counts more),
    averaged over the levels."""
    return float(np.mean((observed - LEVELS) ** 2 / (LEVELS * (1 - LEVELS))))


def robot_cases(state: ReachingCheckpoint, arm: Arm, support_targets: torch.Tensor, support_offsets: torch.Tensor,
                targets: np.ndarray, ks: Sequence[int], samples: int) -> dict[int, Cases]:
    """K → the cases of one robot: its first K demos (targets (≥ K, 3), offsets (≥ K, T, dof)) and ``targets``."""
    backend = MujocoBackend(arm)
    x = state.model.condition(torch.as_tensor(targets, dtype=torch.float32))
    steps = state.preset.adapt.steps
    cases = {}
    for k in ks:
        sx, sy = state.model.condition(support_targets[:k]), state.model.normalize(support_offsets[:k])
        params, decision = guarded_adapt(state.learner, sx, sy, steps)
        with torch.no_grad():
            draws = state.learner.predictive_samples(sx, sy, x, samples, steps, calibrated=False,
                                                     step_scale=decision.step_scale)
        positions = predict_positions(state, arm, targets, params=params)
        executed = np.stack([final_flange(backend, arm, timed(arm, p)) for p in positions])
        cases[k] = Cases(arm, draws, flange_position(arm, positions[:, -1]), executed, targets)
    return cases


def ranks(state: ReachingCheckpoint, cases: Cases, draws: torch.Tensor) -> np.ndarray:
    """(n, 3) per target and axis, the fraction of the predicted final flange positions of ``draws`` (the cases'
    draws, raw or widened) below where the flange ended."""
    arm = cases.arm
    final = arm.home_q + state.model.offsets(draws, arm.dof).double().numpy()[..., -1, :]
    predicted = cases.targets + cases.deployed - flange_position(arm, np.clip(final, arm.lower, arm.upper))
    return (predicted < cases.executed).mean(axis=0)


def fresh_robot_cases(state: ReachingCheckpoint, arm: Arm, ks: Sequence[int], targets_per_robot: int,
                      samples: int, seed: int) -> dict[int, Cases]:
    """K → the cases of a robot the run never saw (a validation or test robot): its support demos planned as the run
    plans demos (its demo seed), its fresh targets as the held-out robots'."""
    n_waypoints = int(state.info["n_waypoints"])
    demos = plan_robot_demos(arm, max(max(ks), 1), state.preset.data.demo_seed, n_waypoints)
    if len(demos) < max(ks):
        raise ValueError(f"K = {max(ks)}, but IK found only {len(demos)} demos for {arm.robot_id}")
    offsets = torch.as_tensor(demos.positions - demos.positions[:, :1], dtype=torch.float32)
    fresh = plan_robot_demos(arm, targets_per_robot, seed, n_waypoints).targets
    return robot_cases(state, arm, torch.as_tensor(demos.targets, dtype=torch.float32), offsets, fresh, ks, samples)


def fit_spread(state: ReachingCheckpoint, cases: Sequence[Cases], seed: int) -> tuple[float, float, np.ndarray]:
    """The (scale, noise) of the grid with the smallest calibration error on ``cases``, and the coverage there; the
    output noise is one seeded standard draw per case (Student-t, ``NOISE_DOF``), the same at every grid point."""
    generator = torch.Generator().manual_seed(seed)
    standard_noise = [noise_draws(c.draws.shape, NOISE_DOF, generator) for c in cases]

    def covered(scale: float, noise: float) -> np.ndarray:
        return coverage(np.concatenate([ranks(state, c, widen(c.draws, scale, noise, e)).ravel()
                                        for c, e in zip(cases, standard_noise, strict=True)]))

    def best(scales: np.ndarray, noises: np.ndarray) -> tuple[float, float]:
        fits = ((calibration_error(covered(s, n)), float(s), float(n)) for s in scales for n in noises)
        return min(fits)[1:]  # ties: the least widening

    scale, noise = best(SCALES, NOISES)
    scale_step, noise_step = np.log(SCALES[1] / SCALES[0]), np.log(NOISES[2] / NOISES[1])
    fine_noises = noise * np.exp(noise_step * REFINE) if noise > 0 else NOISES[:2]
    scale, noise = best(np.maximum(scale * np.exp(scale_step * REFINE), 1.0), fine_noises)
    return scale, noise, covered(scale, noise)


def calibrate_reaching(run_dir: str | Path, out_dir: str | Path, ks: Sequence[int] = (0, 1, 5),
                       targets_per_robot: int = TARGETS_PER_ROBOT, samples: int = SAMPLES, seed: int = SEED,
                       robots_per_family: int | None = None, validation: int = VALIDATION_ROBOTS,
                       test: int = TEST_ROBOTS, progress: bool = True) -> tuple[Path, Path, Path]:
    """Fit every probabilistic checkpoint's spread calibration on validation robots and write it into the
    checkpoint; measure the coverage on held-out robots before and after. Returns ``calibration.md``, ``.png`` and
    ``.json``."""
    started = time.perf_counter()
    run, out = Path(run_dir), Path(out_dir)
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or min(ks) < 0:
        raise ValueError(f"ks must be numbers of demos >= 0, got {list(ks)}")
    if validation < 1:
        raise ValueError(f"validation robots must be at least 1 per family, got {validation}")
    if test < 0:
        raise ValueError(f"test robots must be 0 or more per family, got {test}")
    probabilistic = probabilistic_checkpoints(run)
    families = run_demos(run)
    held_ranks: dict[str, dict[int, list[np.ndarray]]] = {"before": {k: [] for k in ks}, "after": {k: [] for k in ks}}
    test_ranks: dict[str, dict[int, list[np.ndarray]]] = {}  # family → K → per test robot, after
    test_ids: dict[str, list[str]] = {}
    by_family: dict[str, dict] = {}
    robots_of: dict[str, int] = {}  # family → its held-out robots, in the order of held_ranks
    fitted: dict[str, dict] = {}
    for family, path in probabilistic.items():
        state = checkpoints.load(path)
        n_waypoints = int(state.info["n_waypoints"])
        state.learner.generator.manual_seed(seed)
        by_k: dict[int, list[Cases]] = {k: [] for k in ks}
        fresh_arms = validation_arms(state, validation + test)
        arms = fresh_arms[:validation]
        for arm in progress_bar(arms, desc=f"validation {family}", unit="robot", disable=not progress):
            for k, cases in fresh_robot_cases(state, arm, ks, targets_per_robot, samples, seed).items():
                by_k[k].append(cases)
        fits = {k: fit_spread(state, by_k[k], seed + k) for k in ks}
        calibration = SpreadCalibration(ks, tuple(f[0] for f in fits.values()), tuple(f[1] for f in fits.values()),
                                        NOISE_DOF)
        fitted[family] = {str(k): {"scale": s, "noise": n, "validation_coverage": c.tolist()}
                          for k, (s, n, c) in fits.items()}
        fitted[family]["validation_robots"] = [arm.robot_id for arm in arms]
        stored = checkpoints.load(path)  # as it was loaded: the draws above moved this learner's generator
        stored.info["spread_calibration"] = {**calibration.to_dict(), "step": stored.learner.step,
                                             "validation_robots": len(arms), "samples": samples, "seed": seed}
        stored.save(path)

        state.learner.spread_calibration = calibration
        held = list(state.info["held_out"])[:robots_per_family]
        for robot_id in progress_bar(held, desc=f"held-out {family}", unit="robot", disable=not progress):
            demos = families[family].for_robot(robot_id)
            if max(ks) > len(demos):
                raise ValueError(f"K = {max(ks)}, but {robot_id} has only {len(demos)} demos")
            arm = demos.robots[0]
            data = to_tensors(demos, state.joint_names, n_waypoints)
            fresh = plan_robot_demos(arm, targets_per_robot, seed, n_waypoints).targets
            for k, cases in robot_cases(state, arm, data.targets, data.offsets, fresh, ks, samples).items():
                held_ranks["before"][k].append(ranks(state, cases, cases.draws))
                held_ranks["after"][k].append(ranks(state, cases, state.learner.calibrate(cases.draws, k)))
        by_family[family] = {when: {str(k): coverage(np.concatenate(r[k][-len(held):]).ravel()).tolist() for k in ks}
                             for when, r in held_ranks.items()}
        robots_of[family] = len(held)

        test_ranks[family] = {k: [] for k in ks}
        test_ids[family] = [arm.robot_id for arm in fresh_arms[validation:]]
        for arm in progress_bar(fresh_arms[validation:], desc=f"test {family}", unit="robot",
                                disable=not progress or not test):
            for k, cases in fresh_robot_cases(state, arm, ks, targets_per_robot, samples, seed).items():
                test_ranks[family][k].append(ranks(state, cases, state.learner.calibrate(cases.draws, k)))
    observed = {when: {str(k): coverage(np.concatenate(r).ravel()).tolist() for k, r in by_k.items()}
                for when, by_k in held_ranks.items()}
    ends = np.cumsum(list(robots_of.values()))
    spans = {family: slice(end - n, end) for (family, n), end in zip(robots_of.items(), ends, strict=True)}
    interval = {str(k): robot_interval([held_ranks["after"][k][span] for span in spans.values()], seed + k)
                for k in ks}
    family_interval = {family: {str(k): robot_interval([held_ranks["after"][k][span]], seed + k) for k in ks}
                       for family, span in spans.items()}
    results = {"run_dir": str(run), "families": sorted(probabilistic), "ks": list(ks), "samples": samples,
               "seed": seed, "targets_per_robot": targets_per_robot, "validation_robots": validation,
               "noise_dof": NOISE_DOF,
               "levels": LEVELS.tolist(), "cases": {str(k): int(np.concatenate(r).size)
                                                    for k, r in held_ranks["before"].items()},
               "coverage": observed, "coverage_interval_after": interval, "coverage_by_family": by_family,
               "coverage_interval_by_family": family_interval,
               "fitted": fitted, "test_robots": test, "test_robot_ids": test_ids,
               **(test_figures(test_ranks, ks, seed) if test else {}),
               "seconds": time.perf_counter() - started}
    out.mkdir(parents=True, exist_ok=True)
    json_path = write_atomic(out / "calibration.json", json.dumps(results, indent=1))
    table_path = write_atomic(out / "calibration.md", calibration_table(results))
    plot_path = calibration_plot(results, out / "calibration.png")
    return table_path, plot_path, json_path


def test_figures(test_ranks: dict[str, dict[int, list[np.ndarray]]], ks: Sequence[int], seed: int) -> dict:
    """From family → K → each test robot's ranks: per K the cases, the pooled coverage and its interval over
    resamples of the robots, and each family's coverage."""
    pooled = {k: [r for by_k in test_ranks.values() for r in by_k[k]] for k in ks}
    return {"cases_test": {str(k): int(sum(r.size for r in pooled[k])) for k in ks},
            "coverage_test": {str(k): coverage(np.concatenate(pooled[k]).ravel()).tolist() for k in ks},
            "coverage_interval_test": {str(k): robot_interval([by_k[k] for by_k in test_ranks.values()], seed + k)
                                       for k in ks},
            "coverage_test_by_family": {family: {str(k): coverage(np.concatenate(by_k[k]).ravel()).tolist()
                                                 for k in ks} for family, by_k in test_ranks.items()}}


def calibration_plot(results: dict, path: Path) -> Path:
    """Reliability diagrams (observed against nominal coverage, one curve per K): the held-out robots' latent draws,
    the held-out robots calibrated and the test robots calibrated, these two with their interval over resamples of
    the robots."""
    levels = results["levels"]

    def curves(observed: dict[str, list[float]], interval: dict[str, list[list[float]]] | None) -> list[Curve]:
        lines = []
        for k in results["ks"]:
            low, high = zip(*interval[str(k)], strict=True) if interval else (observed[str(k)],) * 2
            lines.append(Curve(f"K = {k}", levels, observed[str(k)], low, high))
        return [*lines, Curve("ideal (observed = nominal)", levels, levels, levels, levels, dashed=True)]

    panels = {"held-out robots, latent draws": curves(results["coverage"]["before"], None),
              "held-out robots, calibrated": curves(results["coverage"]["after"], results["coverage_interval_after"])}
    if results.get("test_robots"):
        panels["test robots, calibrated"] = curves(results["coverage_test"], results["coverage_interval_test"])
    return plot_panels(panels, path, xlabel="nominal coverage of the central interval", ylabel="observed coverage",
                       title="where the flange ends against its predicted spread (per axis; calibrated on "
                             "validation robots)")


def _with_interval(value: float, bounds: Sequence[float]) -> str:
    """A coverage and its interval, in %: ``52.8 [50.3, 55.4]``."""
    return f"{100 * value:.1f} [{100 * bounds[0]:.1f}, {100 * bounds[1]:.1f}]"


def calibration_table(results: dict) -> str:
    """Observed coverage (%) of the 50 % and 90 % central intervals per K, before and after (with its interval over
    resamples of the robots); after, per family on held-out and validation robots; the fitted spread calibration per
    family."""
    index = [results["levels"].index(level) for level in TABLE_LEVELS]
    coverage_of, interval = results["coverage"], results["coverage_interval_after"]

    def cell(when: str, k: int, i: int) -> str:
        value = coverage_of[when][str(k)][i]
        return f"{100 * value:.1f}" if when == "before" else _with_interval(value, interval[str(k)][i])

    rows = [[f"K = {k}", *(cell(when, k, i) for i in index for when in ("before", "after")),
             str(results["cases"][str(k)])] for k in results["ks"]]
    intro = (f"Probabilistic MAML ({', '.join(results['families'])}) on held-out robots × "
             f"{results['targets_per_robot']} fresh targets: how often the central interval of the predicted final "
             f"flange position holds where the flange ended, executed in MuJoCo, per axis; {results['samples']} "
             f"latent draws per support set. Before: the latent draws; after: widened by the spread calibration "
             f"fitted on {results['validation_robots']} validation robots per family (fresh robots of the "
             "population, never trained on or held out), with the 95 % interval over resamples of the held-out "
             "robots (a robot's targets miss together, so a few robots move the coverage more than the number of "
             "cases suggests). Calibrated: the observed coverage equals the nominal one.")
    columns = ["support demos", *(f"{100 * level:.0f} % interval covers (%), {when}" for level in TABLE_LEVELS
                                  for when in ("before", "after")), "cases"]
    coverage_table = markdown_table(columns, rows, [intro], right_align_from=1)
    if results.get("test_robots"):
        test_of, test_interval = results["coverage_test"], results["coverage_interval_test"]
        by_family = results["coverage_test_by_family"]
        test_rows = [[f"K = {k}", *(_with_interval(test_of[str(k)][i], test_interval[str(k)][i]) for i in index),
                      *(" / ".join(f"{100 * by_family[family][str(k)][i]:.1f}" for i in index) for family in by_family),
                      str(results["cases_test"][str(k)])]
                     for k in results["ks"]]
        levels = " / ".join(f"{100 * level:.0f} %" for level in TABLE_LEVELS)
        test_intro = (f"After, on {results['test_robots']} test robots per family (fresh robots after the validation "
                      "ones: never trained on, held out or fitted on) × the same number of fresh targets: pooled, with "
                      f"the 95 % interval over resamples of the robots, and per family ({levels} interval).")
        coverage_table += "\n" + markdown_table(
            ["support demos", *(f"{100 * level:.0f} % interval covers (%), after" for level in TABLE_LEVELS),
             *(f"{family}, {levels}" for family in by_family), "cases"],
            test_rows, [test_intro], right_align_from=1)
    held_by_family = {family: results["coverage_by_family"][family]["after"] for family in results["fitted"]}
    family_interval = results["coverage_interval_by_family"]

    def family_cell(family: str, k: int, i: int) -> str:
        low, high = family_interval[family][str(k)][i]
        return (f"{100 * held_by_family[family][str(k)][i]:.1f} [{100 * low:.1f}, {100 * high:.1f}] "
                f"({100 * results['fitted'][family][str(k)]['validation_coverage'][i]:.1f})")

    family_rows = [[family, *(family_cell(family, k, i) for k in results["ks"] for i in index)]
                   for family in results["fitted"]]
    family_intro = ("Per family, after: the coverage (%) on its held-out robots with its 95 % interval over "
                    "resamples of them, and in brackets on the validation robots the calibration was fitted on.")
    family_table = markdown_table(["family", *(f"K = {k}, {100 * level:.0f} %" for k in results["ks"]
                                               for level in TABLE_LEVELS)], family_rows, [family_intro],
                                  right_align_from=1)
    fit_rows = [[family, *(f"{fit[str(k)]['scale']:.2f} / {fit[str(k)]['noise']:.3f}" for k in results["ks"])]
                for family, fit in results["fitted"].items()]
    fit_intro = ("The spread calibration per family and K, scale / noise: the draws' spread about their mean times "
                 f"the scale, plus Student-t noise ({results['noise_dof']} degrees of freedom) of that scale in the "
                 "model's normalised outputs.")
    fit_table = markdown_table(["family", *(f"K = {k}" for k in results["ks"])], fit_rows, [fit_intro],
                               right_align_from=1)
    return coverage_table + "\n" + family_table + "\n" + fit_table
