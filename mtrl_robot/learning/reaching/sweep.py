"""A grid of training runs over preset fields, one table of their held-out results (``mtrl-robot reaching sweep``).

``--grid meta.inner_lr=0.003,0.01,0.03 --grid meta.inner_steps=1,3`` makes every combination of the values (six
runs here), each the preset with those overrides. Every combination is checked like ``--set`` before anything runs;
the runs are independent work items of the preset's ``compute`` setting (local processes or Ray tasks,
:mod:`mtrl_robot.distributed.compute`; with Ray on several machines the output folder must be one every node sees),
each training its families one after the other in its worker. Each run goes to ``<out_dir>/<nnn>/`` and its
held-out errors (no adaptation and MAML after ``adapt.k`` demos, :mod:`mtrl_robot.learning.reaching.train`) to one
row of ``sweep.md`` and ``sweep.json``.

The fine-tuning baseline's step size is a sweep too, over a model rather than over training runs:
:func:`~mtrl_robot.learning.reaching.evaluate.finetune_sweep`, which chooses the *tuned* step size for both the
evaluation and the leave-one-family-out table.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.distributed.compute import IN_THIS_PROCESS, check_reachable, ordered_map
from mtrl_robot.evaluation.report import interval, markdown_table
from mtrl_robot.learning.reaching.presets import Preset, load_preset
from mtrl_robot.learning.reaching.train import HELD_OUT_METHODS, train_from_preset

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
