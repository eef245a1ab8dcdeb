"""A grid of training runs over preset fields, one table of their held-out results (``mtrl-robot reaching sweep``).

``--grid meta.inner_lr=0.003,0.01,0.03 --grid meta.inner_steps=1,3`` makes every combination of the values (six
runs here), each the preset with those overrides. Every combination is checked like ``--set`` before anything runs;
the runs are independent work items of the preset's ``compute`` setting (local processes or Ray tasks,
:mod:`mtrl_robot.distributed.compute`; with Ray on several machines the output folder must be one every node sees),
each training its families one after the other in its worker. Each run goes to ``<out_dir>/<nnn>/`` and its
held-out errors (no adaptation and MAML after ``adapt.k`` demos, :mod:`mtrl_robot.learning.reaching.train`) to one
row of ``sweep.md`` and ``sweep.json``.

The fine-tuning baseline's step size is a sweep too, over a model rather than over training runs
(:func:`finetune_sweep`): the multi-task model fine-tuned on K demos of validation robots (robots held out from
every model being compared and from the robots the result is reported on) with every step size of a grid, each
executed in MuJoCo for fresh targets; the step size with the lowest mean error at each K is the *tuned* one.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.distributed.compute import IN_THIS_PROCESS, check_reachable, ordered_map
from mtrl_robot.evaluation.report import interval, markdown_table
from mtrl_robot.learning.reaching.checkpoint import ReachingCheckpoint
from mtrl_robot.learning.reaching.evaluate import held_out_errors
from mtrl_robot.learning.reaching.presets import Preset, load_preset
from mtrl_robot.learning.reaching.train import HELD_OUT_METHODS, train_from_preset
from mtrl_robot.motions.dataset import DemoDataset

GRID = "--grid"  # the source named by errors in a grid's spelling


def grid_points(grids: Sequence[str]) -> list[list[str]]:
    """Every combination of the ``field=v1,v2,…`` grids, as lists of ``field=value`` overrides (commas inside
    brackets belong to a value, e.g. ``data.families=[panda,gen3],[yumi]``)."""
    axes = []
    for grid in grids:
        field, sep, text = grid.partition("=")
        values = _split(text)
        if not sep or not field.strip() or not all(v.strip() for v in values):
            raise ConfigError(GRID, field.strip() or None, f"a grid reads field=value1,value2,…, got {grid!r}")
        if field.strip().startswith("compute."):
            raise ConfigError(GRID, field.strip(), "where runs compute changes no result: set it with --set")
        if field.strip() in (f for f, _ in axes):
            raise ConfigError(GRID, field.strip(), "appears in two grids")
        axes.append((field.strip(), values))
    return [[f"{field}={value}" for (field, _), value in zip(axes, combination, strict=True)]
            for combination in itertools.product(*(values for _, values in axes))]


def _split(text: str) -> list[str]:
    """``text`` split at the commas outside brackets."""
    values, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            values.append(text[start:i])
            start = i + 1
    return [*values, text[start:]]


def _train_point(job: tuple[Preset, Path]) -> dict:
    """One run of the grid (module level, so that it pickles): its held-out errors per family."""
    preset, out = job
    train_from_preset(preset, out, progress=False)
    return json.loads((out / "report.json").read_text())


def sweep(preset: str | Path, grids: Sequence[str], out_dir: str | Path, overrides: Sequence[str] = (),
          progress: bool = True) -> tuple[Path, Path]:
    """Train every combination of ``grids`` on ``preset`` (with ``overrides`` first) into ``out_dir``; returns the
    paths of ``sweep.md`` and ``sweep.json``."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} already holds files; choose an empty folder")
    points = grid_points(grids)
    presets = [load_preset(preset, [*overrides, *point]) for point in points]  # every point checked before any runs
    compute = presets[0].compute
    check_reachable(compute)
    jobs = [(replace(p, compute=IN_THIS_PROCESS), out / f"{i:03d}") for i, p in enumerate(presets)]
    reports = ordered_map(compute, _train_point, jobs, desc="sweep", unit="run", progress=progress)
    rows = [{"run": job[1].name, "overrides": point, "held_out": {
                family: {m: interval(entry["held_out"]["errors_cm"][m]).to_dict() for m in HELD_OUT_METHODS}
                for family, entry in report.items() if entry["held_out"]}}
            for job, point, report in zip(jobs, points, reports, strict=True)]
    k = presets[0].adapt.k
    results = {"preset": presets[0].name, "overrides": list(overrides), "grids": list(grids), "k": k, "runs": rows}
    json_path = write_atomic(out / "sweep.json", json.dumps(results, indent=1))
    return write_atomic(out / "sweep.md", sweep_table(results)), json_path


def sweep_table(results: dict) -> str:
    """One row per run and family: the grid's values, the held-out error without adaptation and after K demos."""
    fields = [grid.partition("=")[0].strip() for grid in results["grids"]]
    rows = [[run["run"], *(o.partition("=")[2] for o in run["overrides"]), family,
             *(f"{s['mean']:.2f} [{s['lo']:.2f}, {s['hi']:.2f}]" for s in (errors[m] for m in HELD_OUT_METHODS))]
            for run in results["runs"] for family, errors in run["held_out"].items()]
    intro = (f"Sweep of preset {results['preset']}: held-out reaching error in cm, executed in MuJoCo, mean [95 % "
             f"Student-t interval] over robots × fresh targets, without adaptation and after adapting on "
             f"K = {results['k']} demos (each run's report.md has the details).")
    return markdown_table(["run", *fields, "family", "no adaptation", f"MAML, K = {results['k']}"], rows, [intro])


def finetune_sweep(multitask: Any, validation: dict[str, tuple[DemoDataset, ReachingCheckpoint, list[str]]],
                   step_sizes: Sequence[float], ks: Sequence[int], out_dir: str | Path, targets_per_robot: int,
                   seed: int, compute=IN_THIS_PROCESS) -> dict[int, float]:
    """The tuned fine-tuning step size at each K: ``multitask`` fine-tuned (``adapt.steps`` Adam steps on every
    parameter) on each validation robot's first K demos with every one of ``step_sizes``, the lowest mean reaching
    error over the validation robots × fresh targets chosen. ``validation`` holds, per family, its demos, a
    checkpoint of the family's joint set (for the joint names, waypoints and steps) and the robot ids. Writes
    ``finetune_sweep.md`` and ``finetune_sweep.json`` into ``out_dir``."""
    ks = tuple(int(k) for k in ks)
    errors: dict[float, dict[int, list[float]]] = {lr: {k: [] for k in ks} for lr in step_sizes}
    for lr in step_sizes:
        for dataset, state, robots in validation.values():
            by_method, _ = held_out_errors(dataset, robots, {"maml": state}, ["finetune"], ks,
                                           targets_per_robot=targets_per_robot, seed=seed, multitask=multitask,
                                           finetune_lr=lr, compute=compute)
            for k in ks:
                errors[lr][k].extend(by_method["finetune"][k])
    summary = {str(lr): {str(k): interval(errors[lr][k]).to_dict() for k in ks} for lr in step_sizes}
    chosen = {k: min(step_sizes, key=lambda lr, k=k: summary[str(lr)][str(k)]["mean"]) for k in ks}
    results = {"step_sizes": list(step_sizes), "ks": list(ks), "validation_robots": {
                   family: robots for family, (_, _, robots) in validation.items()},
               "targets_per_robot": targets_per_robot, "seed": seed, "errors_cm": summary,
               "chosen": {str(k): lr for k, lr in chosen.items()}}
    out = Path(out_dir)
    write_atomic(out / "finetune_sweep.json", json.dumps(results, indent=1))
    rows = [[f"{lr:g}", *(f"{s['mean']:.2f} [{s['lo']:.2f}, {s['hi']:.2f}]" + (" (chosen)" if chosen[k] == lr else "")
                          for k, s in ((k, summary[str(lr)][str(k)]) for k in ks))] for lr in step_sizes]
    intro = (f"Fine-tuning step sizes on the validation robots ({', '.join(sorted(validation))}): reaching error in "
             f"cm executed in MuJoCo, mean [95 % Student-t interval] over robots × {targets_per_robot} fresh "
             f"targets; the lowest mean at each K is chosen.")
    write_atomic(out / "finetune_sweep.md", markdown_table(["step size", *(f"K = {k}" for k in ks)], rows, [intro]))
    return chosen
