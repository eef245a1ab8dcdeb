"""Leave one family out: meta-train on every family but one, adapt to the one left out from K demos, beside the
strongest baselines (``mtrl-robot reaching lofo``), top to bottom.

For a preset and each family F of its ``data.families`` (or the ones named):

1. **Fold.** The preset over the other families, pooled (one model, arms of several joint counts padded:
   :mod:`~mtrl_robot.models.joint_padding`), trained into ``<out>/without-<F>/``. Its population, its demos and
   so its model never hold an arm of F.
2. **Multi-task baseline.** The same architecture pretrained without meta-learning on every training robot of the
   fold (the pretraining of ``source: population``), ``<out>/without-<F>/multitask.pt``. It is fine-tuned on the
   new arm's K demos (Adam on every parameter, ``adapt.steps`` steps) with the *tuned* step size: the one of
   ``finetune_lrs`` with the lowest error at that K on validation robots, the fold's held-out robots of its own
   families (never trained on, never reported on), :func:`~mtrl_robot.learning.reaching.evaluate.finetune_sweep`
   (the function that tunes the evaluation's fine-tuning too).
3. **Upper bound.** F's own model: the preset on F alone, ``<out>/own-<F>/``, meta-trained on F's training robots.
4. **Test.** F's held-out robots (the last ``held_out_per_family``, from ``own-<F>``'s demos), fresh targets,
   executed in MuJoCo (:func:`~mtrl_robot.learning.reaching.evaluate.held_out_errors`): the fold's model without
   adaptation and after MAML on K demos, the tuned fine-tuning, F's own model after MAML, and the IK oracle.

A finished fold or own run (one with its ``report.json``) is reused as it is, an unfinished one resumed
(``train_from_preset`` with ``resume``). Writes ``lofo.json``, ``lofo.md`` and ``lofo.png`` into the output folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from mtrl_robot.arms.families import load_families
from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.evaluation.report import Curve, interval, markdown_table, plot_panels
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.checkpoint import ReachingCheckpoint
from mtrl_robot.learning.reaching.data import pool, run_demos, to_tensors
from mtrl_robot.learning.reaching.evaluate import (
    FINETUNE_LRS,
    SEED,
    TARGETS_PER_ROBOT,
    VALIDATION_ROBOTS,
    VALIDATION_TARGETS,
    finetune_sweep,
    held_out_errors,
)
from mtrl_robot.learning.reaching.presets import Preset, load_preset
from mtrl_robot.learning.reaching.pretrain import build_model, load_pretrained, pretrain, save_pretrained
from mtrl_robot.learning.reaching.train import POOLED, train_from_preset

METHODS = ("no_adaptation", "maml", "finetune", "own", "ik_oracle")
LABELS = {"no_adaptation": "no adaptation (model without the family)",
          "maml": "MAML, meta-trained without the family",
          "finetune": "fine-tune multi-task model (tuned step size)",
          "own": "MAML on the family's own robots (upper bound)",
          "ik_oracle": "IK oracle (true kinematics)"}


def leave_one_family_out(preset: str | Path | Preset, out_dir: str | Path, ks: Sequence[int] = (5, 10, 20),
                         families: Sequence[str] = (), finetune_lrs: Sequence[float] = FINETUNE_LRS,
                         targets_per_robot: int = TARGETS_PER_ROBOT, validation_robots: int = VALIDATION_ROBOTS,
                         validation_targets: int = VALIDATION_TARGETS, seed: int = SEED,
                         progress: bool = True) -> tuple[Path, Path, Path]:
    """Every fold of ``preset`` (or those of ``families``) into ``out_dir``; returns the paths of ``lofo.md``,
    ``lofo.png`` and ``lofo.json``. Training computes as the preset's ``compute`` says; the evaluations run in this
    process."""
    started = time.perf_counter()
    preset = preset if isinstance(preset, Preset) else load_preset(preset)
    out = Path(out_dir)
    names = list(load_families(preset.data.families, None, "data.families"))
    if len(names) < 2:
        raise ValueError(f"leaving one family out needs two or more families, the preset has {names}")
    unknown = [f for f in families if f not in names]
    if unknown:
        raise ValueError(f"families {unknown} are not in the preset's data.families {names}")
    if not preset.data.held_out_per_family or max(ks) >= preset.data.demos_per_robot:
        raise ValueError(f"the test needs held-out robots and K < data.demos_per_robot "
                         f"({preset.data.demos_per_robot}), got held_out_per_family "
                         f"{preset.data.held_out_per_family} and K up to {max(ks)}")
    specs = dict(zip(names, preset.data.families, strict=True))  # name → what the preset spells (a name or a file)
    results: dict[str, dict] = {"preset": preset.to_dict(), "ks": list(ks), "targets_per_robot": targets_per_robot,
                                "seed": seed, "folds": {}}
    errors: dict[str, dict[str, dict[int, list[float]]]] = {}
    for held in families or names:
        fold, own = _fold(preset, specs, held, out, ks, finetune_lrs, targets_per_robot, validation_robots,
                          validation_targets, seed, progress)
        errors[held] = fold.pop("errors")
        results["folds"][held] = {**fold, "own_run": str(own)}
    pooled: dict[str, dict[int, list[float]]] = {}
    for by_method in errors.values():
        for method, by_k in by_method.items():
            for k, values in by_k.items():
                pooled.setdefault(method, {}).setdefault(k, []).extend(values)
    summary = {family: {m: {str(k): interval(v).to_dict() for k, v in by_k.items()} for m, by_k in fm.items()}
               for family, fm in {**errors, **({"all": pooled} if len(errors) > 1 else {})}.items()}
    results.update(summary=summary, seconds=time.perf_counter() - started)
    json_path = write_atomic(out / "lofo.json", json.dumps(results, indent=1))
    table_path = write_atomic(out / "lofo.md", lofo_table(results))
    panels = {family: [Curve(LABELS[m], list(ks), *([s[str(k)][key] for k in ks] for key in ("mean", "lo", "hi")),
                             dashed=m in ("no_adaptation", "ik_oracle"))
                       for m in METHODS if (s := by_method.get(m)) is not None]
              for family, by_method in summary.items()}
    plot_path = plot_panels(panels, out / "lofo.png", xlabel="K (demos of the new family's robot)",
                            ylabel="final reaching error (cm)", log_y=True)
    return table_path, plot_path, json_path


def _fold(preset: Preset, specs: dict[str, str], held: str, out: Path, ks: Sequence[int],
          finetune_lrs: Sequence[float], targets_per_robot: int, validation_robots: int, validation_targets: int,
          seed: int, progress: bool) -> tuple[dict, Path]:
    """One fold: the model without ``held``, the tuned multi-task model, ``held``'s own model, and their errors on
    ``held``'s held-out robots."""
    others = [spec for name, spec in specs.items() if name != held]
    fold_dir, own_dir = out / f"without-{held}", out / f"own-{held}"
    fold_preset = replace(preset, data=replace(preset.data, families=tuple(others), pooled=len(others) > 1))
    own_preset = replace(preset, data=replace(preset.data, families=(specs[held],), pooled=False))
    for run_preset, run_dir in ((fold_preset, fold_dir), (own_preset, own_dir)):
        if not (run_dir / "report.json").is_file():
            train_from_preset(run_preset, run_dir, resume=True, progress=progress)

    fold_demos, test_demos = run_demos(fold_dir), run_demos(own_dir)[held]
    own = checkpoints.load(own_dir / "checkpoints" / f"{held}.pt")
    test_robots = list(own.info["held_out"])
    view = _view(fold_dir, len(others) > 1, test_demos, test_robots)
    multitask = _multitask(fold_dir, fold_preset, fold_demos, progress)
    validation = {}
    for family in fold_demos:
        state = checkpoints.load(fold_dir / "checkpoints" / f"{family}.pt")
        validation[family] = (fold_demos[family], state, list(state.info["held_out"])[:validation_robots])
    tuned = finetune_sweep(multitask, validation, finetune_lrs, ks, fold_dir, validation_targets, seed)

    common = {"targets_per_robot": targets_per_robot, "seed": seed}
    errors, _ = held_out_errors(test_demos, test_robots, {"maml": view}, ["no_adaptation", "maml", "ik_oracle"],
                                ks, **common)
    errors["own"] = held_out_errors(test_demos, test_robots, {"maml": own}, ["maml"], ks, **common)[0]["maml"]
    errors["finetune"] = held_out_errors(test_demos, test_robots, {"maml": view}, ["finetune"], ks,
                                         multitask=multitask, finetune_lrs=tuned, **common)[0]["finetune"]
    trained_on = sorted(view.info["robot_ids"])
    return {"errors": errors, "fold_run": str(fold_dir), "fold_families": list(fold_demos),
            "fold_robots": trained_on, "test_robots": test_robots,
            "finetune_lr": {str(k): lr for k, lr in tuned.items()}}, own_dir


def _view(fold_dir: Path, pooled: bool, test_demos, test_robots: list[str]) -> ReachingCheckpoint:
    """The fold's model under the held-out family's joint names and home (written beside the fold's checkpoints
    as ``lofo/<family>.pt`` and loaded back, so that its loss leaves padded joints out)."""
    family = test_demos.robots[0].family
    path = fold_dir / "checkpoints" / (f"{POOLED}/all.pt" if pooled else f"{next(iter(run_demos(fold_dir)))}.pt")
    state = checkpoints.load(path)
    arm = test_demos.robots[0]
    columns = state.model.scaler.dof
    if arm.dof > columns:
        raise ValueError(f"{family} has {arm.dof} joints, the model without it only {columns} joint columns")
    padded = "columns" in state.info or arm.dof < columns
    view = ReachingCheckpoint(state.learner, state.preset, {
        **state.info, "family": family, "joint_names": list(arm.joint_names), "home": arm.home_q.tolist(),
        "held_out": test_robots, "pooled": pooled, **({"columns": columns} if padded else {})})
    view_path = fold_dir / "checkpoints" / "lofo" / f"{family}.pt"
    view.save(view_path)
    return checkpoints.load(view_path)


def _multitask(fold_dir: Path, preset: Preset, demos: dict, progress: bool):
    """The fold's multi-task model: pretrained on every training robot of its families (cached as
    ``multitask.pt``)."""
    path = fold_dir / "multitask.pt"
    held = preset.data.held_out_per_family
    train = pool([to_tensors(ds.select(list(ds.robot_ids[:len(ds.robot_ids) - held]))) for ds in demos.values()])
    if path.is_file():
        return load_pretrained(path, *build_model(preset.model, train.n_waypoints, train.dof, 0),
                               "multi-task model").eval()
    vae, model = pretrain(train.targets, train.offsets, preset.model, replace(preset.pretrain, source="population"),
                          0, progress)
    save_pretrained(path, vae, model)
    return model.eval()


def lofo_table(results: dict) -> str:
    """Rows held-out family × method, columns K: ``mean [lo, hi]`` in cm."""
    ks = results["ks"]
    rows = [[family, LABELS[m], *(f"{s[str(k)]['mean']:.2f} [{s[str(k)]['lo']:.2f}, {s[str(k)]['hi']:.2f}]"
                                  for k in ks)]
            for family, by_method in results["summary"].items() for m in METHODS if (s := by_method.get(m))]
    tuned = "; ".join(f"{family}: " + ", ".join(f"K = {k} {lr:g}" for k, lr in fold["finetune_lr"].items())
                      for family, fold in results["folds"].items())
    preset = results["preset"]
    intro = (f"Leave one family out, preset {preset['name']}: each family's held-out robots "
             f"({preset['data']['held_out_per_family']} per family) reached by a model meta-trained on the other "
             f"families only; final flange-to-target distance in cm executed in MuJoCo, mean [95 % Student-t "
             f"interval] over robots × {results['targets_per_robot']} fresh targets; adaptation and fine-tuning "
             f"{preset['adapt']['steps']} steps. Fine-tuning step size tuned on validation robots per fold and K: "
             f"{tuned}. 'no adaptation' and 'IK oracle' do not depend on K.")
    return markdown_table(["held-out family", "method", *(f"K = {k}" for k in ks)], rows, [intro])
