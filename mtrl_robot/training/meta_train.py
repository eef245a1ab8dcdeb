"""Meta-training the reaching model over a robot population, from a preset, top to bottom.

For every arm family of the preset (one joint set, one checkpoint):

1. **Data.** The population (``data.robots_per_family`` robots, seeded) and its planned demos, made once and
   kept as ``demos.npz`` in the run folder. The last ``data.held_out_per_family`` robots of each family are
   held out.
2. **Pretraining.** The motor VAE and the target policy on the nominal robot's demos (or on every training
   robot's: the multi-task baseline); kept as ``pretrain/<family>.pt``.
3. **Meta-learning.** Each training robot is a task: K support and Q query demos. MAML (or first-order MAML,
   or probabilistic MAML; Meta-SGD step sizes optional) adapts the parameters named in ``meta.adapt_only`` on
   the support demos and meta-learns everything on the query loss. The outer step size follows a cosine from
   ``outer_lr`` to ``outer_lr_final`` (a function of the step, so resuming needs no scheduler state).
   Every meta-step's loss goes to ``logs/<family>.csv``; every ``checkpoint_every`` steps and at the end,
   ``checkpoints/<family>.pt`` is written atomically.
4. **Evaluation.** K-shot adaptation on each held-out robot; the reaching error (FK of the robot's own
   kinematics) on its other demos' targets goes to ``report.json``.

Families are independent: with ``compute.workers`` > 1 they train side by side in ``spawn`` processes (as with
any ``spawn`` pool, a script calling ``train_from_preset`` must do so under ``if __name__ == "__main__":``).
``--resume`` continues from the last checkpoints: finished families are skipped, the loss log is cut back to
the checkpoint's step and continues, and the task stream is the same as in an uninterrupted run.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import sys
import time
from pathlib import Path

import torch

from mtrl_robot.arms import population as populations
from mtrl_robot.arms.families import load_family
from mtrl_robot.atomic import write_atomic
from mtrl_robot.demos.dataset import DatasetError, DemoDataset
from mtrl_robot.demos.dataset import load as load_demos
from mtrl_robot.demos.generate import generate_demos
from mtrl_robot.demos.planner import plan_robot_demos
from mtrl_robot.meta import CheckpointError
from mtrl_robot.training import checkpoint as checkpoints
from mtrl_robot.training.data import by_family, task_sampler, to_tensors
from mtrl_robot.training.evaluate import held_out_errors
from mtrl_robot.training.presets import Preset, load_preset
from mtrl_robot.training.pretrain import build_model, cosine, pretrain

LOG_FIELDS = ("step", "meta_loss", "outer_lr", "seconds")


def train_from_preset(preset: str | Path | Preset, out_dir: str | Path, resume: bool = False,
                      progress: bool = True) -> Path:
    """Run a whole preset into ``out_dir``; returns ``out_dir``. Refuses to touch a used folder unless resuming.

    ``out_dir`` then holds ``preset.json``, ``demos.npz``, ``pretrain/<family>.pt``, ``logs/<family>.csv``,
    ``checkpoints/<family>.pt`` (one reaching checkpoint per family) and ``report.json``.
    """
    preset = preset if isinstance(preset, Preset) else load_preset(preset)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not resume:
        raise FileExistsError(f"{out} already holds files; resume the run there or choose an empty folder")
    if resume and (out / "preset.json").is_file():
        saved = json.loads((out / "preset.json").read_text())
        if {**saved, "compute": None} != {**preset.to_dict(), "compute": None}:
            raise ValueError(f"{out}: this run was started with another preset ({saved.get('name')}); "
                             "resume it with the same preset")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "preset.json", json.dumps(preset.to_dict(), indent=1))
    families = by_family(_demos(preset, out / "demos.npz", progress))
    missing = [f for f in preset.data.families if f not in families]
    if missing:
        raise DatasetError(out / "demos.npz", f"no demos of the preset's families {missing}")
    jobs = [(preset, f, families[f], out, progress, i) for i, f in enumerate(preset.data.families)]
    workers = min(preset.compute.workers, len(jobs))
    if workers == 1:
        report = dict(map(_family_job, jobs))
    else:  # families are independent: one process each, as many at a time as there are workers
        with multiprocessing.get_context("spawn").Pool(workers, _thread_only_progress_lock) as pool:
            report = dict(pool.imap(_family_job, jobs))
    write_atomic(out / "report.json", json.dumps(report, indent=1))
    return out


def _family_job(job: tuple) -> tuple[str, dict]:
    """One family in this process, with the preset's thread count (module level, so ``spawn`` can pickle it)."""
    preset, family, dataset, out, progress, position = job
    threads = torch.get_num_threads()
    torch.set_num_threads(preset.compute.threads)
    try:
        return family, _train_family(preset, family, dataset, out, progress, position)
    finally:
        torch.set_num_threads(threads)


def _thread_only_progress_lock() -> None:
    """Give a worker's progress bars a thread lock: tqdm's default multiprocessing one leaks a semaphore."""
    import threading

    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


def _demos(preset: Preset, path: Path, progress: bool) -> DemoDataset:
    """The population's demos: read from ``path`` when a previous run made them, else planned and saved."""
    if path.is_file():
        return load_demos(path)
    data = preset.data
    config = populations.load_config(data.population_config, seed=data.population_seed,
                                     families=list(data.families), robots_per_family=data.robots_per_family)
    robots = populations.generate(config)
    dataset = generate_demos(robots, data.demos_per_robot, data.demo_seed, preset.compute.workers, progress)
    dataset.save(path)
    return dataset


def _train_family(preset: Preset, family: str, dataset: DemoDataset, out: Path, progress: bool,
                  position: int = 0) -> dict:
    """Pretrain, meta-train and evaluate one family; returns its evaluation and the time it took (this session)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    meta = preset.meta
    held_out = list(dataset.robot_ids[len(dataset.robot_ids) - preset.data.held_out_per_family:])
    train_ids = [r for r in dataset.robot_ids if r not in held_out]
    train = to_tensors(dataset.select(train_ids))
    path = out / "checkpoints" / f"{family}.pt"
    if path.is_file():
        state = checkpoints.load(path)
    else:
        model = _pretrained(preset, family, train, out / "pretrain" / f"{family}.pt", progress)
        state = checkpoints.new_checkpoint(model, preset, {
            "family": family, "joint_names": list(train.joint_names), "n_waypoints": train.n_waypoints,
            "home": dataset.robots[0].home_q.tolist(), "robot_ids": train_ids, "held_out": held_out,
            "preset": preset.to_dict()})
    learner, sample = state.learner, task_sampler(train, state.model.normalize, meta.k_support, meta.k_query)

    from tqdm import tqdm

    log = _LossLog(out / "logs" / f"{family}.csv", keep_until=learner.step)
    with tqdm(total=meta.meta_steps, initial=learner.step, desc=f"meta-train {family}", unit="step",
              disable=not progress, position=position) as bar:
        while learner.step < meta.meta_steps:
            lr = cosine(meta.outer_lr, meta.outer_lr_final, learner.step, meta.meta_steps)
            for group in learner.optimizer.param_groups:
                group["lr"] = lr
            start = time.perf_counter()
            loss = learner.meta_step(sample(meta.meta_batch_size, learner.generator))
            if not math.isfinite(loss):
                raise FloatingPointError(f"{family}: meta-loss is {loss} at step {learner.step}; the last good "
                                         f"checkpoint is {path} (try a smaller meta.outer_lr or meta.inner_lr)")
            log.add(learner.step, loss, lr, time.perf_counter() - start)
            bar.update()
            bar.set_postfix(loss=f"{loss:.2e}")
            if learner.step % meta.checkpoint_every == 0 or learner.step == meta.meta_steps:
                log.flush()
                state.save(path)
    held = dataset.select(held_out) if held_out else None
    errors = held_out_errors(path, held, preset.adapt.k, preset.adapt.steps) if held else {}
    return {"checkpoint": str(path.relative_to(out)), "meta_steps": learner.step, "held_out": errors,
            "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu_started}


def _pretrained(preset: Preset, family: str, train, path: Path, progress: bool):
    """The pretrained reaching model: loaded from ``path`` when there, else trained and saved there."""
    config, tdim = preset.pretrain, checkpoints.task_dim(preset.meta)
    vae, model = build_model(preset.model, train.n_waypoints, train.dof, tdim, config.seed)
    if path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            vae.load_state_dict(state["vae"])
            model.load_state_dict(state["model"])
            return model
        except Exception as e:
            raise CheckpointError(f"{path}: unreadable pretraining checkpoint ({e}); delete it to pretrain again") \
                from e
    if config.source == "nominal":
        nominal = load_family(family)
        planned = plan_robot_demos(nominal, config.nominal_demos, config.seed, train.n_waypoints)
        targets = torch.tensor(planned.targets, dtype=torch.float32)
        offsets = torch.tensor(planned.positions - planned.positions[:, :1], dtype=torch.float32)
    else:
        targets, offsets = train.targets, train.offsets
    rows = []
    vae, model = pretrain(targets, offsets, preset.model, config, tdim, progress,
                          log=lambda stage, step, loss: rows.append((stage, step, loss)))
    write_atomic(path.parent.parent / "logs" / f"{family}-pretrain.csv",
                 "stage,step,loss\n" + "".join(f"{s},{i},{v:.6g}\n" for s, i, v in rows))
    write_atomic(path, lambda f: torch.save({"vae": vae.state_dict(), "model": model.state_dict()}, f))
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


def main(argv: list[str] | None = None) -> int:
    """``python -m mtrl_robot.training.meta_train PRESET --out DIR [--resume]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", help="preset name (small, full) or path to a YAML file")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    args = parser.parse_args(argv)
    try:
        out = train_from_preset(args.preset, args.out, resume=args.resume)
    except (ValueError, OSError) as e:  # ConfigError, DatasetError, CheckpointError, FileExistsError, …
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = json.loads((out / "report.json").read_text())
    for family, result in report.items():
        held = result["held_out"]
        line = f"{family}: {out / result['checkpoint']}"
        if held:
            line += (f"; held-out reaching error {held['mean']['zero_shot_cm']:.2f} cm without adaptation, "
                     f"{held['mean']['adapted_cm']:.2f} cm after {held['k']}-shot adaptation")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
