"""Meta-training the reaching model over a robot population, from a preset, top to bottom.

For every arm family of the preset (one joint set, one checkpoint):

1. **Data.** The population (``data.robots_per_family`` robots, seeded) and its planned demos, made once and
   kept as ``demos.npz`` in the run folder (with arms of several joint counts, ``demos-<n>joints.npz`` per
   count). The last ``data.held_out_per_family`` robots of each family are held out.
2. **Pretraining.** The motor VAE and the target policy on the nominal robot's demos (or on every training
   robot's: the multi-task baseline); kept as ``pretrain/<family>.pt``.
3. **Meta-learning.** Each training robot is a task: K support and Q query demos. MAML (or first-order MAML,
   or probabilistic MAML; Meta-SGD step sizes optional) adapts the parameters named in ``meta.adapt_only`` on
   the support demos and meta-learns everything on the query loss (with ``meta.flange_weight``, plus a flange-space
   term through each training robot's kinematics: :mod:`~mtrl_robot.learning.reaching.flange_loss`). The outer
   step size follows a cosine from ``outer_lr`` to ``outer_lr_final`` (a function of the step, so resuming needs
   no scheduler state).
   Every meta-step's loss goes to ``logs/<family>.csv``; every ``checkpoint_every`` steps and at the end,
   ``checkpoints/<family>.pt`` is written atomically, and beside it the deployable model file
   ``checkpoints/<family>.model.pt`` (:mod:`mtrl_robot.models.model_file`), so a run folder can be deployed.
4. **Evaluation.** On each held-out robot, the reaching error executed in MuJoCo for fresh targets without
   adaptation and after K-shot adaptation (:func:`~mtrl_robot.learning.reaching.evaluate.held_out_errors`, the
   function the full evaluation uses) goes to ``report.json`` and, as a table, to ``report.md``.

Where the time goes is written beside them: ``profile.json`` and, as a table, ``profile.md`` hold the wall-clock and
CPU seconds of the demos, of each model's pretraining, meta-training and evaluation, and of the whole run (CPU: this
process and its local worker processes; a Ray cluster's workers are not counted), with the machine's load average
at the start and the end, since on a shared machine the wall-clock time depends on what else runs.

With ``data.pooled`` the families are not separate: one model is pretrained on every family's nominal robot and
meta-trained over the training robots of all of them (joint columns by position; arms with fewer joints than the
most are padded, and every loss leaves the padding out: :mod:`~mtrl_robot.models.joint_padding`), the
across-families experiment. Its checkpoint is ``checkpoints/pooled/all.pt``, and
``checkpoints/<family>.pt`` are views of it — the same weights, each with its family's joint names, home and
robots — so adapting, predicting and evaluating work as for a per-family run and still map joints by name.

Families are independent: with ``compute.workers`` > 1 they train side by side, in ``spawn`` processes or as Ray
tasks (:mod:`mtrl_robot.distributed.compute`; as with any ``spawn`` pool, a script calling ``train_from_preset``
must do so under ``if __name__ == "__main__":``; on a Ray cluster of several machines, ``out_dir`` must be a folder
every node sees, such as a shared file system). Checkpoints record the preset without its ``compute`` section, so
they are the same files whichever way the run computed.
``--resume`` continues from the last checkpoints: finished families are skipped, the loss log is cut back to
the checkpoint's step and continues, and the task stream is the same as in an uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import math
import os
import resource
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mtrl_robot.arms import population as populations
from mtrl_robot.arms.families import load_families
from mtrl_robot.core.atomic import discarding_temporaries, remove_temporaries, write_atomic
from mtrl_robot.core.progress import progress_bar
from mtrl_robot.core.torch_threads import torch_threads
from mtrl_robot.distributed.compute import ComputeConfig, check_reachable, ordered_map
from mtrl_robot.evaluation.report import interval, markdown_table
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.checkpoint import ReachingCheckpoint
from mtrl_robot.learning.reaching.data import (
    by_family,
    demos_file,
    demos_files,
    pool,
    run_demos,
    task_sampler,
    to_tensors,
)
from mtrl_robot.learning.reaching.evaluate import LABELS, TARGETS_PER_ROBOT, held_out_errors
from mtrl_robot.learning.reaching.flange_loss import FlangeQueryLoss
from mtrl_robot.learning.reaching.presets import Preset, load_preset, preset_from_dict
from mtrl_robot.learning.reaching.pretrain import build_model, cosine, load_pretrained, pretrain, save_pretrained
from mtrl_robot.models.joint_padding import pad_joints
from mtrl_robot.motions.dataset import DatasetError, DemoDataset
from mtrl_robot.motions.generate import generate_demos
from mtrl_robot.motions.reach import plan_robot_demos

LOG_FIELDS = ("step", "meta_loss", "outer_lr", "seconds")
POOLED = "pooled"  # the name of the one model of a run with data.pooled


def train_from_preset(preset: str | Path | Preset, out_dir: str | Path, resume: bool = False,
                      progress: bool = True) -> Path:
    """Run a whole preset into ``out_dir``; returns ``out_dir``. Refuses to touch a run unless resuming it with its
    preset, and a folder of other files unless resuming.

    A folder with a ``preset.json`` but no checkpoint is a failed attempt, not a run to protect: training goes on
    there, keeping what the attempt made that this preset would make the same way (its demos, when the ``data``
    section is the same; everything, when the whole preset is) and replacing the rest, each file named on stderr.

    ``out_dir`` then holds ``preset.json``, ``demos.npz``, ``pretrain/<family>.pt``, ``logs/<family>.csv``,
    ``checkpoints/<family>.pt`` (one reaching checkpoint per family), ``checkpoints/<family>.model.pt`` (its
    deployable model file), ``report.json``, ``report.md``, ``profile.json`` and ``profile.md``.
    """
    run_clock, load_at_start = _Clock(), os.getloadavg()[0]
    preset = preset if isinstance(preset, Preset) else load_preset(preset)
    out = Path(out_dir)
    started = _has_checkpoint(out)
    if started and not resume:
        raise FileExistsError(f"{out} already holds a run; resume it there or choose an empty folder")
    if not started and out.exists() and any(out.iterdir()) and not (out / "preset.json").is_file() and not resume:
        raise FileExistsError(f"{out} already holds files; resume the run there or choose an empty folder")
    if started and (out / "preset.json").is_file():
        saved = preset_from_dict(json.loads((out / "preset.json").read_text()), str(out / "preset.json")).to_dict()
        if _differ(saved, preset.to_dict()):
            raise ValueError(f"{out}: this run was started with another preset ({saved.get('name')}); "
                             "resume it with the same preset")
    check_reachable(preset.compute)
    if not started:
        for replaced in _clear_failed_attempt(out, preset):
            print(f"replaced {replaced}, left by an attempt with another preset that ended before its first "
                  "checkpoint", file=sys.stderr)
    if resume or not started:
        for stale in remove_temporaries(out):
            print(f"removed {stale}, the unfinished write of an interrupted run", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "preset.json", json.dumps(preset.to_dict(), indent=1))
    with discarding_temporaries(out):  # an interrupted run leaves only complete files
        names = list(load_families(preset.data.families, out / "preset.json", "data.families"))
        demos_clock = _Clock()
        families = _demos(preset, out, progress)
        demos_time = demos_clock.elapsed()
        missing = [f for f in names if f not in families]
        if missing:
            raise DatasetError(demos_files(out)[0], f"no demos of the preset's families {missing}")
        if preset.data.pooled:
            jobs = [(preset, POOLED, {f: families[f] for f in names}, out, progress, 0)]
        else:
            jobs = [(preset, f, {f: families[f]}, out, progress, i) for i, f in enumerate(names)]
        # families are independent: as many at a time as there are workers; local workers draw their own bars
        results = ordered_map(preset.compute, _group_job, jobs, desc="families", unit="model",
                              progress=progress and preset.compute.backend == "ray")
        report = {family: entry for result, _ in results for family, entry in result.items()}
        write_atomic(out / "report.json", json.dumps(report, indent=1))
        write_atomic(out / "report.md", report_table(report))
        profile = {"run": run_clock.elapsed(), "demos": demos_time,
                   "models": {name: phases for (_, phases), (_, name, *_) in zip(results, jobs, strict=True)},
                   "meta_steps": preset.meta.meta_steps, "robots": sum(len(families[f].robot_ids) for f in names),
                   "workers": preset.compute.workers, "threads": preset.compute.threads, "cores": os.cpu_count(),
                   "load_average": {"start": load_at_start, "end": os.getloadavg()[0]}}
        write_atomic(out / "profile.json", json.dumps(profile, indent=1))
        write_atomic(out / "profile.md", profile_table(profile))
    return out


class _Clock:
    """Wall-clock and CPU seconds since it was made; CPU counts this process and its finished child processes (the
    local workers, once their pool has ended)."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), _cpu_seconds()

    def elapsed(self) -> dict[str, float]:
        return {"seconds": time.perf_counter() - self.wall, "cpu_seconds": _cpu_seconds() - self.cpu}


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


PHASES = {"pretrain": "pretraining", "meta_train": "meta-training", "evaluate": "evaluation"}


def profile_table(profile: dict) -> str:
    """The run's time by phase: wall-clock and CPU seconds, and each phase's share of the run's CPU time."""
    total = profile["run"]["cpu_seconds"]
    rows = [["demos", *_times(profile["demos"], total)]]
    for name, phases in profile["models"].items():
        for phase, label in PHASES.items():
            if phase in phases:
                steps, cpu = phases[phase].get("steps"), phases[phase]["cpu_seconds"]
                per_step = f", {steps} steps of {1e3 * cpu / steps:.1f} ms CPU" if steps else ""
                rows.append([f"{name}: {label}{per_step}", *_times(phases[phase], total)])
    rows.append(["whole run", *_times(profile["run"], total)])
    load = profile["load_average"]
    intro = (f"Training time by phase: {profile['robots']} robots, {profile['meta_steps']} meta-steps per model, "
             f"{profile['workers']} worker processes × {profile['threads']} thread(s) on {profile['cores']} cores "
             f"(load average {load['start']:.1f} at the start, {load['end']:.1f} at the end). CPU: this process and "
             f"its local workers. Models train side by side on the workers, so the run's wall-clock time is below "
             f"the sum of its phases'; the whole run also counts starting the worker processes and writing files.")
    return markdown_table(["phase", "wall-clock s", "CPU s", "share of the run's CPU"], rows, [intro])


def _times(entry: dict[str, float], total_cpu: float) -> list[str]:
    return [f"{entry['seconds']:.1f}", f"{entry['cpu_seconds']:.1f}",
            f"{100 * entry['cpu_seconds'] / total_cpu:.0f} %" if total_cpu > 0 else "-"]


def _has_checkpoint(out: Path) -> bool:
    return (out / "checkpoints").is_dir() and any((out / "checkpoints").rglob("*.pt"))


def _differ(saved: dict, preset: dict, sections: tuple[str, ...] | None = None) -> bool:
    """Whether two presets (as dicts) differ in ``sections`` (default: all but ``compute``, which never changes a
    result)."""
    keys = sections or tuple(k for k in {*saved, *preset} if k != "compute")
    return any(saved.get(k) != preset.get(k) for k in keys)


def _clear_failed_attempt(out: Path, preset: Preset) -> list[Path]:
    """Remove what an attempt with another preset left in ``out`` before its first checkpoint; returns it."""
    path = out / "preset.json"
    if not path.is_file():
        return []
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        saved = None
    saved = saved if isinstance(saved, dict) else {}
    now = preset.to_dict()
    if not _differ(saved, now):
        return []
    made = [path, out / "report.json", out / "report.md", out / "pretrain", out / "logs"]
    if _differ(saved, now, ("data",)):
        made += demos_files(out)
    removed = [p for p in made if p.exists()]
    for p in removed:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return removed


HELD_OUT_METHODS = ("no_adaptation", "maml")  # what training measures on its held-out robots


def report_table(report: dict) -> str:
    """Per family: held-out reaching error without adaptation, after K-shot adaptation, and the worst robot's."""
    rows = []
    for family, entry in report.items():
        if entry["held_out"]:
            held = entry["held_out"]
            worst = max(float(np.mean(errors["maml"][str(held["k"])])) for errors in held["per_robot_cm"].values())
            rows.append([family, *(interval(held["errors_cm"][m]).bounds() for m in HELD_OUT_METHODS),
                         f"{worst:.2f}"])
    held = next((entry["held_out"] for entry in report.values() if entry["held_out"]), {})
    intro = (f"Reaching error in cm on the held-out robots, executed in MuJoCo: mean [95 % Student-t interval] over "
             f"robots × {held.get('targets_per_robot', 0)} fresh targets; adaptation from each robot's first "
             f"{held.get('k', 0)} demos with {held.get('steps', 0)} steps; worst robot: the highest per-robot mean "
             f"after adaptation.")
    columns = ["family", LABELS["no_adaptation"], f"{LABELS['maml']}, K = {held.get('k', 0)}",
               "worst robot (MAML)"]
    return markdown_table(columns, rows, [intro])


def _group_job(job: tuple) -> tuple[dict[str, dict], dict[str, dict]]:
    """One model in this process, with the preset's thread count (module level, so that it pickles)."""
    preset, name, datasets, out, progress, position = job
    with torch_threads(preset.compute.threads):
        return _train_group(preset, name, datasets, out, progress, position)


def _demos(preset: Preset, out: Path, progress: bool) -> dict[str, DemoDataset]:
    """The population's demos by family: read from the run folder when a previous run made them, else planned and
    saved there (one file, or one per joint count: :func:`~mtrl_robot.learning.reaching.data.demos_file`)."""
    if demos_files(out):
        return run_demos(out)
    data = preset.data
    config = populations.load_config(data.population_config, seed=data.population_seed,
                                     families=list(data.families), robots_per_family=data.robots_per_family)
    robots = populations.generate(config)
    dofs = sorted({arm.dof for arm in robots}, reverse=True)
    families = {}
    for dof in dofs:  # a robot's demos depend on (seed, robot id) only, whichever file they go to
        group = robots if len(dofs) == 1 else robots.select([arm.robot_id for arm in robots if arm.dof == dof])
        dataset = generate_demos(group, data.demos_per_robot, data.demo_seed, preset.compute, progress)
        dataset.save(demos_file(out, dof if len(dofs) > 1 else None))
        families.update(by_family(dataset))
    return families


def _train_group(preset: Preset, name: str, datasets: dict[str, DemoDataset], out: Path, progress: bool,
                 position: int = 0) -> tuple[dict[str, dict], dict[str, dict]]:
    """Pretrain, meta-train and evaluate one model (one family, or all pooled); per family: its evaluation, the
    checkpoint and the time it took, and the time of each phase (this run of the process, since any resume)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    phases, clock = {}, _Clock()
    meta, pooled = preset.meta, name == POOLED
    held_out = {f: list(ds.robot_ids[len(ds.robot_ids) - preset.data.held_out_per_family:])
                for f, ds in datasets.items()}
    train_ids = {f: [r for r in ds.robot_ids if r not in held_out[f]] for f, ds in datasets.items()}
    code = pooled and preset.model.family_code
    train = pool([to_tensors(ds.select(train_ids[f])) for f, ds in datasets.items()], codes=code)
    mixed = len({ds.dof for ds in datasets.values()}) > 1
    columns = {"columns": train.dof} if mixed else {}  # arms of several joint counts: padded to the most
    columns |= {"code_dim": len(datasets)} if code else {}
    path = out / "checkpoints" / ("pooled/all.pt" if pooled else f"{name}.pt")
    if path.is_file():
        state = checkpoints.load(path)
    else:
        model = _pretrained(preset, list(datasets), train, out / "pretrain" / f"{name}.pt", progress)
        first = next(iter(datasets.values())).robots[0]
        state = checkpoints.new_checkpoint(model, preset, {
            "family": name, "joint_names": list(train.joint_names), "n_waypoints": train.n_waypoints,
            "home": first.home_q.tolist(), "robot_ids": [r for ids in train_ids.values() for r in ids],
            "held_out": [r for ids in held_out.values() for r in ids],
            "preset": replace(preset, compute=ComputeConfig()).to_dict(), **columns})
    phases["pretrain"], clock = clock.elapsed(), _Clock()
    learner, sample = state.learner, task_sampler(train, state.model.normalize, meta.k_support, meta.k_query)
    if meta.flange_weight > 0:  # the training robots in the sampler's order: its task ids index them
        arms = [ds.arm(r) for f, ds in datasets.items() for r in train_ids[f]]
        learner.query_loss = FlangeQueryLoss(state.model, arms, learner.loss_fn, meta.flange_weight)

    log, first_step = _LossLog(out / "logs" / f"{name}.csv", keep_until=learner.step), learner.step
    with progress_bar(total=meta.meta_steps, initial=learner.step, desc=f"meta-train {name}", unit="step",
             disable=not progress, position=position) as steps:
        while learner.step < meta.meta_steps:
            lr = cosine(meta.outer_lr, meta.outer_lr_final, learner.step, meta.meta_steps)
            for group in learner.optimizer.param_groups:
                group["lr"] = lr
            start = time.perf_counter()
            loss = learner.meta_step(sample(meta.meta_batch_size, learner.generator))
            if not math.isfinite(loss):
                raise FloatingPointError(f"{name}: meta-loss is {loss} at step {learner.step}; the last good "
                                         f"checkpoint is {path} (try a smaller meta.outer_lr or meta.inner_lr)")
            log.add(learner.step, loss, lr, time.perf_counter() - start)
            steps.update()
            steps.set_postfix(loss=f"{loss:.2e}")
            if learner.step % meta.checkpoint_every == 0 or learner.step == meta.meta_steps:
                log.flush()
                state.save(path)
                state.save_model_file(checkpoints.model_file_path(path))
    phases["meta_train"], clock = {**clock.elapsed(), "steps": learner.step - first_step}, _Clock()
    report = {}
    for family, dataset in datasets.items():
        family_path = path
        if pooled:  # the family's view: the pooled weights under the family's joint names, home, robots and code
            family_path = out / "checkpoints" / f"{family}.pt"
            arm = dataset.robots[0]
            if code:
                state.model.policy.code.copy_(torch.eye(len(datasets))[list(datasets).index(family)])
            view = ReachingCheckpoint(learner, state.preset, {
                **state.info, "family": family, "joint_names": list(arm.joint_names), "home": arm.home_q.tolist(),
                "robot_ids": train_ids[family], "held_out": held_out[family], "pooled": True, **columns})
            view.save(family_path)
            view.save_model_file(checkpoints.model_file_path(family_path))
        errors = {}
        if held_out[family]:
            by_method, per_robot = held_out_errors(dataset, held_out[family], {"maml": checkpoints.load(family_path)},
                                                   HELD_OUT_METHODS, (preset.adapt.k,))
            errors = {"k": preset.adapt.k, "steps": preset.adapt.steps, "targets_per_robot": TARGETS_PER_ROBOT,
                      "errors_cm": {m: by_k[preset.adapt.k] for m, by_k in by_method.items()},
                      "per_robot_cm": per_robot}
        report[family] = {"checkpoint": str(family_path.relative_to(out)), "meta_steps": learner.step,
                          "held_out": errors, "seconds": time.perf_counter() - started,
                          "cpu_seconds": time.process_time() - cpu_started}
    phases["evaluate"] = clock.elapsed()
    return report, phases


def _pretrained(preset: Preset, families: list[str], train, path: Path, progress: bool):
    """The pretrained reaching model: loaded from ``path`` when there, else trained and saved there (with source
    ``nominal``, on ``nominal_demos`` demos of each family's nominal robot, each with its family code if any)."""
    config, tdim = preset.pretrain, checkpoints.task_dim(preset.meta)
    code_dim = 0 if train.codes is None else train.codes.shape[1]
    vae, model = build_model(preset.model, train.n_waypoints, train.dof, tdim, config.seed, code_dim)
    if path.is_file():
        return load_pretrained(path, vae, model, "pretraining checkpoint")
    if config.source == "nominal":
        nominal = load_families(preset.data.families, None, "data.families")
        planned = [plan_robot_demos(nominal[f], config.nominal_demos, config.seed, train.n_waypoints)
                   for f in families]
        targets = torch.tensor(np.concatenate([d.targets for d in planned]), dtype=torch.float32)
        offsets = torch.cat([pad_joints(torch.tensor(d.positions - d.positions[:, :1], dtype=torch.float32),
                                        train.dof) for d in planned])
        if code_dim:
            targets = torch.cat([targets, torch.cat([torch.eye(code_dim)[i].expand(len(d.targets), -1)
                                                     for i, d in enumerate(planned)])], dim=1)
    else:
        targets, offsets = train.inputs, train.offsets
    rows = []
    vae, model = pretrain(targets, offsets, preset.model, config, tdim, progress,
                          log=lambda stage, step, loss: rows.append((stage, step, loss)))
    write_atomic(path.parent.parent / "logs" / f"{path.stem}-pretrain.csv",
                 "stage,step,loss\n" + "".join(f"{s},{i},{v:.6g}\n" for s, i, v in rows))
    save_pretrained(path, vae, model)
    return model


class _LossLog:
    """``step,meta_loss,outer_lr,seconds`` rows; on resume, rows after the checkpoint's step are dropped."""

    def __init__(self, path: Path, keep_until: int):
        self.path, self.pending = path, []
        rows = []
        if path.is_file():
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until]
        text = ",".join(LOG_FIELDS) + "\n" + "".join(",".join(r[k] for k in LOG_FIELDS) + "\n" for r in rows)
        write_atomic(path, text)

    def add(self, step: int, loss: float, lr: float, seconds: float) -> None:
        self.pending.append(f"{step},{loss:.6g},{lr:.6g},{seconds:.4f}\n")

    def flush(self) -> None:
        with self.path.open("a") as f:
            f.writelines(self.pending)
        self.pending = []
