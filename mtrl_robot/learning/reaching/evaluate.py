"""The headline result: few-shot reaching error on held-out robots, executed in MuJoCo, method by method.

For every family of a training run (one checkpoint per family) and each of its held-out robots:

* **fresh targets**: ``targets_per_robot`` targets drawn in the robot's reachable workspace with a seed of their own
  (:func:`~mtrl_robot.motions.reach.plan_robot_demos` with ``seed``; never the demo targets), kept only where IK
  with the robot's true kinematics succeeds, so that every method is asked for the same reachable targets;
* **support set**: the robot's first K demos of the run's demos (``demos.npz``, or one file per joint count);
  K = 0 is no adaptation: every model as trained (probabilistic MAML with its latent at the prior's mean), and no
  from-scratch model (it has nothing to train on);
* **execution**: every trajectory runs in :class:`~mtrl_robot.backends.mujoco_backend.MujocoBackend` built from
  the robot (one backend per robot, reset to home before each trajectory); the error is the distance in cm from
  the simulated flange to the target once the trajectory has finished and settled.

Methods (keys of the results, rows of the table):

==================  =============================================================================================
``no_adaptation``   the meta-trained initialisation, 0 adaptation steps (independent of K)
``finetune``        the multi-task model: the same architecture trained on all training robots' demos of the family
                    jointly (pooled regression, no meta-learning; the run's ``pretrain/<family>.pt`` when the run
                    pretrained with ``source: population``, otherwise trained here with the run's pretraining
                    budget and cached in ``<out_dir>/multitask/<family>.pt``), then fine-tuned on the K demos: all
                    parameters, Adam, as many steps as MAML adapts (``adapt.steps``), with the *tuned* step size
                    of each family and K: the one of ``finetune_lrs`` with the lowest mean error on validation
                    robots (:func:`finetune_sweep`; here :func:`validation_robots`, robots of the family that the
                    run never saw, so never trained on and never reported), measured once and kept in
                    ``<out_dir>/finetune_sweep/<family>/``, where a later evaluation finds and reuses it
``scratch``         the same architecture from a random initialisation, trained on the K demos only (Adam,
                    ``scratch_steps`` full-batch steps); its normalisation statistics come from the K demos too
``maml``            the run's meta-trained checkpoint (MAML / first-order MAML / Meta-SGD as trained), adapted with
                    the K demos and ``adapt.steps`` inner steps, through the adaptation guard
                    (:mod:`mtrl_robot.meta.guard`: the step shrunk, or the initialisation kept, when the K demos
                    show that adapting would make the model worse; with one demo, also when the kinematics it
                    calibrates do not predict adapting better), as ``mtrl-robot reaching adapt`` adapts
                    (:func:`~mtrl_robot.learning.reaching.adapt.adapt_params`)
``pmaml``           probabilistic MAML, adapted the same way: only when a checkpoint of the probabilistic variant
                    exists for the family (in the run or in ``pmaml_run_dir``); otherwise "not trained in this run"
``maml_unguarded``  (only when asked for) ``maml`` without the guard: every adaptation takes the meta-trained step
``maml_calibrated`` ``maml``'s path with its end placed on the target through the robot's kinematics calibrated
                    from the same K demos (:mod:`mtrl_robot.learning.reaching.calibrated_kinematics`; K = 0: the
                    family's nominal kinematics)
``ik_oracle``       IK with the robot's true kinematics, then the planner's trajectory: the floor (independent of K)
==================  =============================================================================================

Interval: the 95 % Student-t interval of the mean over all robot×target errors of a cell
(:mod:`mtrl_robot.evaluation.report`; targets of one robot are not independent, so it is somewhat narrow). The
``all`` rows pool every family of the run: a 4-family run is the "across families" experiment, a run restricted to
one family the "within one family" one. :func:`held_out_errors` measures one family's held-out robots; training
calls it too, for the no-adaptation and MAML rows of its ``report.json``. Robots are measured independently, one
work item each, in this process, in local processes or as Ray tasks (``compute``,
:func:`~mtrl_robot.distributed.compute.ordered_map`), with the same numbers every way. What the adaptation guard did
for each robot and K is in ``reaching.json`` (``per_robot_cm.<robot>.guard``) and counted above the table.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mtrl_robot.arms import population as populations
from mtrl_robot.arms.chain import Arm
from mtrl_robot.backends.mujoco_backend import MujocoBackend
from mtrl_robot.backends.trajectory import JointTrajectory
from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.torch_threads import in_torch_threads
from mtrl_robot.distributed.compute import IN_THIS_PROCESS, ComputeConfig, check_reachable, ordered_map
from mtrl_robot.evaluation.report import Curve, interval, markdown_table, plot_panels
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.adapt import adapt_params
from mtrl_robot.learning.reaching.calibrated_kinematics import (
    calibrate_from_demos,
    calibrated_positions,
    family_population,
)
from mtrl_robot.learning.reaching.checkpoint import ReachingCheckpoint
from mtrl_robot.learning.reaching.data import run_demos, to_tensors
from mtrl_robot.learning.reaching.predict import predict_positions, timed
from mtrl_robot.learning.reaching.pretrain import build_model, load_pretrained, pretrain, save_pretrained
from mtrl_robot.models.joint_padding import masked_mse
from mtrl_robot.motions.dataset import DemoDataset
from mtrl_robot.motions.generate import generate_demos
from mtrl_robot.motions.reach import plan_robot_demos
from mtrl_robot.tasks.reaching import reach

FINETUNE_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # the fine-tuning step sizes tried on validation robots
VALIDATION_ROBOTS = 2  # per family: the robots the fine-tuning step size is chosen on
VALIDATION_TARGETS = 5  # fresh targets per validation robot
METHODS = ("no_adaptation", "finetune", "scratch", "maml", "maml_calibrated", "pmaml", "ik_oracle")  # the default
KNOWN_METHODS = (*METHODS, "maml_unguarded")
GUARDED = ("maml", "pmaml")  # adapted through the adaptation guard
LABELS = {"no_adaptation": "no adaptation (meta-trained init)",
          "finetune": "fine-tune multi-task model (tuned step size)", "scratch": "from scratch (K demos)",
          "maml": "MAML", "pmaml": "probabilistic MAML",
          "ik_oracle": "IK oracle (true kinematics)", "maml_unguarded": "MAML without the adaptation guard",
          "maml_calibrated": "MAML, end placed by calibrated kinematics"}
K_FREE = ("no_adaptation", "ik_oracle")  # the same numbers for every K
NOT_TRAINED = "not trained in this run"
TARGETS_PER_ROBOT = 10  # fresh targets per held-out robot
SEED = 1000  # of the fresh targets, the from-scratch models and the multi-task model
VIDEO_TARGETS = 3  # fresh targets shown in an evaluation's video
SCRATCH_MIN_SCALE = 0.1  # rad / m: normalisation scale floor of the from-scratch model (K may be 1)


def evaluate_reaching(run_dir: str | Path, out_dir: str | Path, ks: Sequence[int] = (1, 5, 10),
                      methods: Sequence[str] = METHODS, targets_per_robot: int = TARGETS_PER_ROBOT, seed: int = SEED,
                      progress: bool = True, robots_per_family: int | None = None, scratch_steps: int = 300,
                      scratch_lr: float = 3e-3, finetune_lrs: Sequence[float] = FINETUNE_LRS,
                      pmaml_run_dir: str | Path | None = None,
                      multitask_budget: float = 1.0, compute: ComputeConfig = IN_THIS_PROCESS,
                      video: bool = False, per_robot_table: bool = False) -> tuple[Path, Path, Path]:
    """Evaluate a training run; returns the paths of ``reaching.md``, ``reaching.png`` and ``reaching.json``.

    ``robots_per_family`` limits the held-out robots per family (default: all of them); ``multitask_budget``
    scales the steps of the multi-task model when it has to be trained here (1.0: the run's pretraining steps);
    ``finetune_lrs`` are the fine-tuning step sizes the validation robots choose from; ``compute`` says where the
    robots are measured. With ``video``, ``reaching_<family>.mp4`` shows each family's
    first held-out robot before and after MAML adaptation with the largest K (:func:`reaching_video`); with
    ``per_robot_table``, ``reaching.md`` also holds every held-out robot's mean error (:func:`robot_table`).
    """
    started = time.perf_counter()
    run, out = Path(run_dir), Path(out_dir)
    ks = tuple(int(k) for k in ks)
    unknown = [m for m in methods if m not in KNOWN_METHODS]
    if "maml_calibrated" in methods and "maml" not in methods:
        raise ValueError("the method maml_calibrated places the ends of maml's paths: ask for maml too")
    if unknown or not ks or min(ks) < 0 or not finetune_lrs or min(finetune_lrs) <= 0:
        raise ValueError(f"unknown methods {unknown} (known: {KNOWN_METHODS}), bad ks {ks} or bad fine-tuning step "
                         f"sizes {list(finetune_lrs)}")
    check_reachable(compute)
    torch.manual_seed(seed)
    families = run_demos(run)
    out.mkdir(parents=True, exist_ok=True)
    maml_ckpts = meta_trained_checkpoints(run)
    pmaml_ckpts = {f: p for f, (p, v) in maml_ckpts.items() if v == "probabilistic"}
    if pmaml_run_dir is not None:
        pmaml_ckpts.update({f: p for f, (p, v) in meta_trained_checkpoints(Path(pmaml_run_dir)).items()
                            if v == "probabilistic"})
    maml_ckpts = {f: p for f, (p, v) in maml_ckpts.items() if v != "probabilistic"}

    errors: dict[str, dict[str, dict[int, list[float]]]] = {}  # family → method → K → errors (cm)
    per_robot: dict[str, dict] = {}
    skipped: dict[str, dict[str, str]] = {}
    guard: dict[str, dict] = {}  # family → method → K → outcome → robots
    tuned: dict[str, dict[int, float]] = {}  # family → K → the fine-tuning step size chosen on validation robots
    validation: dict[str, list[str]] = {}  # family → its validation robots
    for family in sorted(set(maml_ckpts) | set(pmaml_ckpts), key=list(families).index):
        base_path = maml_ckpts.get(family) or pmaml_ckpts[family]
        base = checkpoints.load(base_path)
        held = list(base.info["held_out"])[:robots_per_family]
        fam_methods = list(methods)
        skipped[family] = {}
        if "pmaml" in fam_methods and family not in pmaml_ckpts:
            fam_methods.remove("pmaml")
            skipped[family]["pmaml"] = NOT_TRAINED
        if family not in maml_ckpts:
            for m in ("maml", "maml_unguarded", "maml_calibrated", "no_adaptation"):
                if m in fam_methods:
                    fam_methods.remove(m)
                    skipped[family][m] = NOT_TRAINED
        states = {"maml": base if family in maml_ckpts else None,
                  "pmaml": checkpoints.load(pmaml_ckpts[family]) if family in pmaml_ckpts else None}
        multitask = None
        if "finetune" in fam_methods:
            multitask = _multitask_model(run, out, family, base, families[family], progress, multitask_budget)
            adapted_ks = [k for k in ks if k > 0]
            if adapted_ks:
                demos, validation[family] = validation_robots(base, VALIDATION_ROBOTS, max(adapted_ks), compute)
                tuned[family] = finetune_sweep(multitask, {family: (demos, base, validation[family])}, finetune_lrs,
                                               adapted_ks, out / "finetune_sweep" / family, VALIDATION_TARGETS,
                                               seed, compute)
        errors[family], robots = held_out_errors(
            families[family], held, states, fam_methods, ks, targets_per_robot=targets_per_robot, seed=seed,
            multitask=multitask, scratch_steps=scratch_steps, scratch_lr=scratch_lr,
            finetune_lrs=tuned.get(family, {}), progress=progress, compute=compute)
        per_robot.update(robots)
        guard[family] = guard_counts(robots)
        if video and states["maml"] is not None:
            reaching_video(families[family].for_robot(held[0]), states["maml"], max(ks), seed,
                           out / f"reaching_{family}.mp4")

    summary = {fam: {m: {str(k): interval(v).to_dict() for k, v in by_k.items()} for m, by_k in fm.items()}
               for fam, fm in errors.items()}
    if len(errors) > 1:
        pooled: dict[str, dict[int, list[float]]] = {}
        for fm in errors.values():
            for m, by_k in fm.items():
                for k, v in by_k.items():
                    pooled.setdefault(m, {}).setdefault(k, []).extend(v)
        summary["all"] = {m: {str(k): interval(v).to_dict() for k, v in by_k.items()} for m, by_k in pooled.items()}
    results = {"run_dir": str(run), "ks": list(ks), "methods": list(methods), "targets_per_robot": targets_per_robot,
               "seed": seed, "robots_per_family": robots_per_family, "adapt_steps": base.preset.adapt.steps,
               "scratch_steps": scratch_steps, "scratch_lr": scratch_lr, "finetune_lrs": list(finetune_lrs),
               "finetune_lr": {family: {str(k): lr for k, lr in by_k.items()} for family, by_k in tuned.items()},
               "validation": {"robots": validation, "targets_per_robot": VALIDATION_TARGETS},
               "multitask_budget": multitask_budget,
               "interval": "mean [95 % Student-t interval] over robots×targets",
               "summary": summary, "skipped": skipped, "guard": guard, "per_robot_cm": per_robot,
               "seconds": time.perf_counter() - started}
    json_path = out / "reaching.json"
    write_atomic(json_path, json.dumps(results, indent=1))
    table_path = out / "reaching.md"
    write_atomic(table_path, reaching_table(results) + ("\n" + robot_table(results) if per_robot_table else ""))
    plot_path = plot_results(results, out / "reaching.png")
    return table_path, plot_path, json_path


def reaching_video(demos: DemoDataset, state: ReachingCheckpoint, k: int, seed: int, path: Path,
                   n_targets: int = VIDEO_TARGETS) -> Path:
    """An MP4 of one robot reaching the first ``n_targets`` of the evaluation's fresh targets, executed in MuJoCo:
    the meta-trained model without adaptation beside it after MAML adaptation on the robot's first ``k`` demos."""
    from mtrl_robot.evaluation.video import Panel, record_reaches, write_video

    arm = demos.robots[0]
    n_waypoints = int(state.info["n_waypoints"])
    targets = plan_robot_demos(arm, n_targets, seed, n_waypoints).targets
    params, _ = adapt_params(state, demos, k, state.preset.adapt.steps)
    backend = MujocoBackend(arm)
    panels = []
    for label, adapted in (("no adaptation", None), (f"MAML, K = {k}", params)):
        trajectories = [timed(arm, p) for p in predict_positions(state, arm, targets, params=adapted)]
        panels.append(Panel(f"{arm.robot_id}: {label}", record_reaches(backend, arm, trajectories, targets)))
    return write_video(arm, panels, path)


def meta_trained_checkpoints(run: Path) -> dict[str, tuple[Path, str]]:
    """The run's meta-trained (not adapted) reaching checkpoints: family → (path, meta variant)."""
    found = {}
    for path in sorted((run / "checkpoints").glob("*.pt")):
        try:
            state = checkpoints.load(path)
        except (ValueError, OSError):
            continue  # foreign or broken files are not evaluated
        if state.info.get("adaptation") is None:
            found.setdefault(state.info["family"], (path, state.preset.meta.variant))
    return found


def probabilistic_checkpoints(run: Path, needed_for: str = "") -> dict[str, Path]:
    """The run's meta-trained checkpoints of the probabilistic variant (family → path); ValueError when it has none
    (``needed_for``, if given, says why they are needed)."""
    found = {f: p for f, (p, variant) in meta_trained_checkpoints(run).items() if variant == "probabilistic"}
    if not found:
        raise ValueError(f"{run}: no checkpoint of the probabilistic variant (train with "
                         f"--set meta.variant=probabilistic){'; ' + needed_for if needed_for else ''}")
    return found


def held_out_errors(dataset: DemoDataset, robot_ids: Sequence[str], states: dict[str, ReachingCheckpoint | None],
                    methods: Sequence[str], ks: Sequence[int], *, targets_per_robot: int = TARGETS_PER_ROBOT,
                    seed: int = SEED, multitask=None, scratch_steps: int = 300, scratch_lr: float = 3e-3,
                    finetune_lrs: Mapping[int, float] | None = None, progress: bool = False,
                    compute: ComputeConfig = IN_THIS_PROCESS
                    ) -> tuple[dict[str, dict[int, list[float]]], dict[str, dict]]:
    """Reaching errors (cm) of held-out robots of one family, executed in MuJoCo: method → K → the errors of every
    robot × fresh target, and robot id → method → K → its errors (with, under ``guard``, method → K → the
    adaptation guard's decision for the guarded methods).

    ``states`` holds the family's meta-trained checkpoint under ``maml`` and/or ``pmaml`` (the first one present
    gives the architecture, joint set and adaptation steps); ``multitask`` is the model ``finetune`` starts from,
    ``finetune_lrs`` its step size at each K; ``compute`` says where the robots are measured (one work item each).
    A method with nothing to measure at a K (from scratch at K = 0) has no entry there.
    """
    base = states.get("maml") or states["pmaml"]
    methods = list(methods)
    ks = tuple(int(k) for k in ks)
    errors: dict[str, dict[int, list[float]]] = {m: {k: [] for k in ks} for m in methods}
    per_robot: dict[str, dict] = {}
    measure = partial(robot_errors, states=states, multitask=multitask, base=base, methods=methods, ks=ks,
                      n_targets=targets_per_robot, seed=seed, scratch_steps=scratch_steps, scratch_lr=scratch_lr,
                      finetune_lrs=dict(finetune_lrs or {}))
    rows = ordered_map(compute, in_torch_threads(measure, compute.threads),
                       [dataset.for_robot(robot_id) for robot_id in robot_ids],
                       desc=f"evaluate {base.info['family']}", unit="robot", progress=progress)
    for robot_id, (row, guards) in zip(robot_ids, rows, strict=True):
        per_robot[robot_id] = {m: {str(k): v for k, v in by_k.items()} for m, by_k in row.items()}
        if guards:
            per_robot[robot_id]["guard"] = {m: {str(k): d for k, d in by_k.items()} for m, by_k in guards.items()}
        for m, by_k in row.items():
            for k, errs in by_k.items():
                errors[m][k].extend(errs)
    return {m: {k: errs for k, errs in by_k.items() if errs} for m, by_k in errors.items()}, per_robot


def robot_errors(demos: DemoDataset, *, states: dict, multitask, base: ReachingCheckpoint, methods: list[str],
                  ks: tuple[int, ...], n_targets: int, seed: int, scratch_steps: int, scratch_lr: float,
                  finetune_lrs: Mapping[int, float]
                  ) -> tuple[dict[str, dict[int, list[float]]], dict[str, dict[int, dict]]]:
    """One robot: method → K → the errors (cm) of its fresh targets, and for the guarded methods method → K ≥ 1 → the
    adaptation guard's decision."""
    arm = demos.robots[0]
    n_waypoints = int(base.info["n_waypoints"])
    oracle = plan_robot_demos(arm, n_targets, seed, n_waypoints)  # fresh targets, reachable by true IK
    targets = oracle.targets
    backend = MujocoBackend(arm)
    data = to_tensors(demos, base.joint_names, n_waypoints)
    steps = base.preset.adapt.steps
    x = torch.as_tensor(targets, dtype=torch.float32)
    out: dict[str, dict[int, list[float]]] = {}
    guards: dict[str, dict[int, dict]] = {}

    def run(positions: np.ndarray) -> list[float]:
        return [reach(backend, arm, timed(arm, p), t) * 100.0 for p, t in zip(positions, targets, strict=True)]

    initial: dict[str, list[float]] = {}  # a meta-trained model's errors without adaptation, executed once

    def unadapted(name: str) -> list[float]:
        if name not in initial:
            initial[name] = run(predict_positions(states[name], arm, targets))
        return initial[name]

    if "ik_oracle" in methods:
        errs = [reach(backend, arm, JointTrajectory(arm.joint_names, oracle.times[i], oracle.positions[i],
                                                    oracle.velocities[i]), targets[i]) * 100.0
                for i in range(len(targets))]
        out["ik_oracle"] = dict.fromkeys(ks, errs)
    if "no_adaptation" in methods:
        out["no_adaptation"] = dict.fromkeys(ks, unadapted("maml"))

    prior = family_population(base.preset, arm.family) if "maml_calibrated" in methods else None

    def calibrated(k: int, positions: np.ndarray) -> None:
        if prior is not None:
            calibration = calibrate_from_demos(*prior, demos, k, base.preset.adapt.demo_precision)
            out.setdefault("maml_calibrated", {})[k] = run(calibrated_positions(calibration, positions, targets))

    for k in ks:
        if k > len(demos):
            raise ValueError(f"K = {k}, but {arm.robot_id} has only {len(demos)} demos")
        if k == 0:  # no demos: every model as trained, nothing to train from scratch
            for name, state in (("maml", "maml"), ("maml_unguarded", "maml"), ("pmaml", "pmaml")):
                if name in methods:
                    out.setdefault(name, {})[0] = unadapted(state)
            if "finetune" in methods:
                out.setdefault("finetune", {})[0] = run(_positions(multitask, arm, x))
            calibrated(0, predict_positions(states["maml"], arm, targets))
            continue
        sx, so = data.targets[:k], data.offsets[:k]
        for name in GUARDED:
            if name in methods:
                state = states[name]
                params, decision = adapt_params(state, demos, k, steps)
                positions = predict_positions(state, arm, targets, params=params)
                out.setdefault(name, {})[k] = run(positions)
                guards.setdefault(name, {})[k] = decision.to_dict()
                if name == "maml":
                    calibrated(k, positions)
        if "maml_unguarded" in methods:
            state = states["maml"]
            with torch.no_grad():
                params = state.learner.adapt(state.model.condition(sx), state.model.normalize(so), steps)
            out.setdefault("maml_unguarded", {})[k] = run(predict_positions(state, arm, targets, params=params))
        if "finetune" in methods:
            model = copy.deepcopy(multitask)
            _fit(model, sx, so, steps, finetune_lrs[k])
            out.setdefault("finetune", {})[k] = run(_positions(model, arm, x))
        if "scratch" in methods:
            model = _scratch_model(base, sx, so, seed + k)
            _fit(model, sx, so, scratch_steps, scratch_lr)
            out.setdefault("scratch", {})[k] = run(_positions(model, arm, x))
    return out, guards


def _fit(model, targets: torch.Tensor, offsets: torch.Tensor, steps: int, lr: float) -> None:
    """Full-batch Adam on every parameter: MSE between the model's output and the normalised demos (padded joints
    left out)."""
    model.train()
    y = model.normalize(offsets)
    loss_fn = masked_mse if y.isnan().any() else F.mse_loss
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = loss_fn(model(model.inputs(targets)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()


def _positions(model, arm: Arm, x: torch.Tensor) -> np.ndarray:
    """(n, T, dof) joint positions from home for a plain reaching model (as ``predict_positions`` does)."""
    with torch.no_grad():
        offsets = model.offsets(model(model.inputs(x)), arm.dof).double().numpy()
    positions = arm.home_q + offsets
    positions[:, 0] = arm.home_q
    return np.clip(positions, arm.lower, arm.upper)


def _scratch_model(base: ReachingCheckpoint, targets: torch.Tensor, offsets: torch.Tensor, seed: int):
    """The run's architecture, randomly initialised, normalised with the K demos' own statistics."""
    _, model = build_model(base.preset.model, offsets.shape[1], offsets.shape[2], 0, seed)
    with torch.no_grad():
        scaler, policy = model.scaler, model.policy
        scaler.mean.copy_(offsets.mean(dim=0))
        spread = offsets[:, -1].std(dim=0) if len(offsets) > 1 else torch.zeros(offsets.shape[2])
        scaler.scale.copy_(spread.nan_to_num(0.0).clamp_min(SCRATCH_MIN_SCALE).expand_as(scaler.scale))
        policy.target_mean.copy_(targets.mean(dim=0))
        tspread = targets.std(dim=0) if len(targets) > 1 else torch.zeros(3)
        policy.target_scale.copy_(tspread.nan_to_num(0.0).clamp_min(SCRATCH_MIN_SCALE))
    return model


def _multitask_model(run: Path, out: Path, family: str, base: ReachingCheckpoint, dataset: DemoDataset,
                     progress: bool, budget: float):
    """Same architecture, pooled regression on every training robot's demos of the family (no meta-learning)."""
    preset = base.preset
    train_ids = list(base.info["robot_ids"])
    n_waypoints, dof = int(base.info["n_waypoints"]), len(base.joint_names)
    candidates = [out / "multitask" / f"{family}.pt"]
    if preset.pretrain.source == "population":
        candidates.insert(0, run / "pretrain" / f"{family}.pt")
    for path in candidates:
        if path.is_file():
            return load_pretrained(path, *build_model(preset.model, n_waypoints, dof, 0), "multi-task model").eval()
    train = to_tensors(dataset.select(train_ids), base.joint_names, n_waypoints)
    config = replace(preset.pretrain, source="population",
                     vae_steps=max(1, math.ceil(preset.pretrain.vae_steps * budget)),
                     policy_steps=max(1, math.ceil(preset.pretrain.policy_steps * budget)))
    vae, model = pretrain(train.targets, train.offsets, preset.model, config, 0, progress)
    save_pretrained(candidates[-1], vae, model)
    return model.eval()


def validation_arms(base: ReachingCheckpoint, count: int) -> list[Arm]:
    """``count`` robots of the checkpoint's family that its run never saw: the robots after the run's population
    (indices ``data.robots_per_family`` on), drawn as the population's own robots are
    (:func:`~mtrl_robot.arms.population.perturb`)."""
    data = base.preset.data
    nominal, config = family_population(base.preset, base.info["family"])
    return [populations.perturb(nominal, config, index)
            for index in range(data.robots_per_family, data.robots_per_family + count)]


def validation_robots(base: ReachingCheckpoint, count: int, demos_per_robot: int,
                      compute: ComputeConfig = IN_THIS_PROCESS) -> tuple[DemoDataset, list[str]]:
    """:func:`validation_arms` and their demos, ``demos_per_robot`` each, planned with the run's demo seed."""
    arms = validation_arms(base, count)
    return generate_demos(arms, demos_per_robot, base.preset.data.demo_seed, compute, progress=False), \
        [a.robot_id for a in arms]


def finetune_sweep(multitask, validation: dict[str, tuple[DemoDataset, ReachingCheckpoint, list[str]]],
                   step_sizes: Sequence[float], ks: Sequence[int], out_dir: str | Path, targets_per_robot: int,
                   seed: int, compute: ComputeConfig = IN_THIS_PROCESS) -> dict[int, float]:
    """The tuned fine-tuning step size at each K ≥ 1: ``multitask`` fine-tuned (``adapt.steps`` Adam steps on every
    parameter) on each validation robot's first K demos with every one of ``step_sizes``, executed in MuJoCo for
    fresh targets; the lowest mean reaching error over the validation robots × targets is chosen. ``validation``
    holds, per family, its demos, a checkpoint of the family's joint set (for the joint names, waypoints and steps)
    and the validation robots' ids: robots held out from every model being compared and from the robots the result
    is reported on.

    Writes ``finetune_sweep.md`` and ``finetune_sweep.json`` into ``out_dir``. A ``finetune_sweep.json`` there from
    the same model (its weights' SHA-256), step sizes, validation robots, targets, seed and steps is reused: only the
    K it lacks are measured.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"the fine-tuning step size is chosen for K ≥ 1 demos, got {ks}")
    states = [state for _, state, _ in validation.values()]
    settings = {"step_sizes": [float(lr) for lr in step_sizes], "targets_per_robot": targets_per_robot, "seed": seed,
                "steps": states[0].preset.adapt.steps, "model_sha256": _weights_digest(multitask),
                "validation_robots": {family: list(robots) for family, (_, _, robots) in validation.items()}}
    out = Path(out_dir)
    summary: dict[str, dict[str, dict]] = {str(lr): {} for lr in settings["step_sizes"]}
    saved = _read_json(out / "finetune_sweep.json")
    if all(saved.get(key) == value for key, value in settings.items()):
        summary = saved["errors_cm"]
    missing = [k for k in ks if any(str(k) not in by_k for by_k in summary.values())]
    if missing:  # every step size × validation robot one work item
        items = [(lr, dataset.for_robot(robot), state) for lr in settings["step_sizes"]
                 for dataset, state, robots in validation.values() for robot in robots]
        finetune = partial(_finetune_errors, multitask=multitask, ks=tuple(missing), n_targets=targets_per_robot,
                           seed=seed)
        rows = ordered_map(compute, in_torch_threads(finetune, compute.threads), items, desc="fine-tuning step sizes",
                           unit="robot", progress=False)
        for lr in settings["step_sizes"]:
            errors = [row for (item_lr, _, _), row in zip(items, rows, strict=True) if item_lr == lr]
            summary[str(lr)].update({str(k): interval([e for row in errors for e in row[k]]).to_dict()
                                     for k in missing})
    measured = sorted({int(k) for by_k in summary.values() for k in by_k})
    chosen = {k: min(settings["step_sizes"], key=lambda lr, k=k: summary[str(lr)][str(k)]["mean"]) for k in measured}
    results = {**settings, "ks": measured, "errors_cm": {lr: {str(k): by_k[str(k)] for k in measured}
                                                         for lr, by_k in summary.items()},
               "chosen": {str(k): lr for k, lr in chosen.items()}}
    write_atomic(out / "finetune_sweep.json", json.dumps(results, indent=1))
    rows = [[f"{lr:g}", *(f"{s['mean']:.2f} [{s['lo']:.2f}, {s['hi']:.2f}]" + (" (chosen)" if chosen[k] == lr else "")
                          for k, s in ((k, summary[str(lr)][str(k)]) for k in measured))]
            for lr in settings["step_sizes"]]
    robots = ", ".join(r for ids in settings["validation_robots"].values() for r in ids)
    intro = (f"Fine-tuning step sizes on the validation robots ({robots}): reaching error in cm executed in MuJoCo, "
             f"mean [95 % Student-t interval] over robots × {targets_per_robot} fresh targets after "
             f"{settings['steps']} Adam steps; the lowest mean at each K is chosen.")
    write_atomic(out / "finetune_sweep.md",
                 markdown_table(["step size", *(f"K = {k}" for k in measured)], rows, [intro]))
    return {k: chosen[k] for k in ks}


def _finetune_errors(item: tuple[float, DemoDataset, ReachingCheckpoint], *, multitask, ks: tuple[int, ...],
                     n_targets: int, seed: int) -> dict[int, list[float]]:
    """One validation robot fine-tuned with one step size: K → the errors (cm) of its fresh targets."""
    lr, demos, state = item
    errors, _ = robot_errors(demos, states={"maml": state}, multitask=multitask, base=state, methods=["finetune"],
                             ks=ks, n_targets=n_targets, seed=seed, scratch_steps=0, scratch_lr=0.0,
                             finetune_lrs=dict.fromkeys(ks, lr))
    return errors["finetune"]


def _weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's weights and buffers, in their order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _read_json(path: Path) -> dict:
    """A JSON object from ``path``; empty when the file is missing or not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def guard_counts(per_robot: dict[str, dict]) -> dict[str, dict[str, dict[str, int]]]:
    """Of robots' entries (``held_out_errors``' second result): method → K → outcome (adapted, shrunk, fell back)
    → number of robots."""
    counts: dict = {}
    for entry in per_robot.values():
        for method, by_k in entry.get("guard", {}).items():
            for k, decision in by_k.items():
                by_outcome = counts.setdefault(method, {}).setdefault(k, {})
                by_outcome[decision["outcome"]] = by_outcome.get(decision["outcome"], 0) + 1
    return counts


def guard_note(counts: dict) -> str:
    """One sentence: for which family, method and K (``counts``: family → ``guard_counts``) the adaptation guard
    shrank the step or kept the initialisation."""
    changed = [f"{family} {LABELS[method]} K = {k}: " + ", ".join(f"{n} {outcome}" for outcome, n in
                                                               sorted(by_outcome.items()) if outcome != "adapted")
               + f" of {sum(by_outcome.values())} robots"
               for family, by_method in counts.items() for method, by_k in by_method.items()
               for k, by_outcome in by_k.items() if set(by_outcome) != {"adapted"}]
    if not changed:
        return "Adaptation guard: the meta-trained step was kept for every robot and K."
    return ("Adaptation guard (the step shrunk, or the meta-trained init kept — 'fell back' — where the K demos "
            "showed that adapting would make the model worse): " + "; ".join(changed) + ".")


def finetune_note(results: dict) -> str:
    """One sentence: the fine-tuning step size chosen for each family and K, and how."""
    validation = results["validation"]
    count = max(len(robots) for robots in validation["robots"].values())
    chosen = "; ".join(f"{family} " + ", ".join(f"K = {k} {lr:g}" for k, lr in by_k.items())
                       for family, by_k in results["finetune_lr"].items())
    return (f"Fine-tuning step size tuned per family and K: of {', '.join(f'{lr:g}' for lr in results['finetune_lrs'])}"
            f", the lowest mean error on {count} validation robots per family ({validation['targets_per_robot']} "
            f"fresh targets each; robots of the family the run never saw, neither trained on nor reported here; "
            f"finetune_sweep/<family>/finetune_sweep.md): {chosen}.")


def reaching_table(results: dict) -> str:
    """Rows family × method, columns K: ``mean [lo, hi]`` in cm."""
    ks = results["ks"]
    rows = []
    for family, by_method in results["summary"].items():
        for method in results["methods"]:
            if method in by_method:
                cells = ["–" if s is None else f"{s['mean']:.2f} [{s['lo']:.2f}, {s['hi']:.2f}]"
                         for s in (by_method[method].get(str(k)) for k in ks)]
            elif results["skipped"].get(family, {}).get(method) or (
                    family == "all" and any(method in s for s in results["skipped"].values())):
                cells = [NOT_TRAINED] * len(ks)
            else:
                continue
            rows.append([family, LABELS[method], *cells])
    intro = (f"Final flange-to-target distance in cm, executed in MuJoCo ({results['interval']}); "
             f"{results['targets_per_robot']} fresh targets per held-out robot, adaptation steps "
             f"{results['adapt_steps']} (MAML and fine-tuning), from scratch {results['scratch_steps']} steps, "
             f"multi-task model trained here with {results.get('multitask_budget', 1.0):g}× the run's pretraining "
             f"steps (unless the run pretrained on the population). "
             f"'no adaptation' and 'IK oracle' do not depend on K"
             f"{'; K = 0: every model as trained, nothing to train from scratch' if 0 in ks else ''}.")
    notes = [finetune_note(results)] if results.get("finetune_lr") else []
    notes += [guard_note(results["guard"])] if results.get("guard") else []
    notes += [robots_note(results)] if any(k > 0 for k in ks) else []
    return markdown_table(["family", "method", *(f"K = {k}" for k in ks)], rows, [intro, *notes])


LISTED_ROBOTS = 5  # robots worse than without adapting are named up to this many, then only counted


def robots_note(results: dict) -> str:
    """Per adapted method and K ≥ 1: the worst held-out robot (the highest mean over its targets) and the robots that
    end worse than without adapting on the same targets: than the method's own model at K = 0 when the evaluation
    has it (probabilistic MAML's prior, fine-tuning's multi-task model), the meta-trained initialisation otherwise."""
    per_robot = results["per_robot_cm"]
    parts = []
    for method in results["methods"]:
        if method in K_FREE:
            continue
        cells = []
        for k in (str(k) for k in results["ks"] if k > 0):
            means = {r: float(np.mean(e[method][k])) for r, e in per_robot.items() if k in e.get(method, {})}
            if not means:
                continue
            worst = max(means, key=means.__getitem__)
            worse = [r for r, mean in means.items() if mean > _unadapted_mean(per_robot[r], method, k)]
            named = f": {', '.join(worse)}" if len(worse) <= LISTED_ROBOTS else ""
            cells.append(f"K = {k} {worst} {means[worst]:.2f}"
                         + (f" ({len(worse)} worse than without adapting{named})" if worse else ""))
        if cells:
            parts.append(f"{LABELS[method]}: {'; '.join(cells)}")
    own = " (the same method at K = 0; the meta-trained initialisation for MAML)" if 0 in results["ks"] else ""
    return ("Worst held-out robot per method and K (its mean over its targets, cm), and the robots that end worse "
            f"than without adapting{own}: " + ". ".join(parts) + ".")


def _unadapted_mean(errors: dict, method: str, k: str) -> float:
    """One robot's mean error without adapting, for ``method`` at K = ``k``: the method's own K = 0 when evaluated,
    else the meta-trained initialisation's (inf when neither was evaluated: nothing to be worse than)."""
    unadapted = errors[method].get("0", errors.get("no_adaptation", {}).get(k))
    return float(np.mean(unadapted)) if unadapted is not None else math.inf


def robot_table(results: dict) -> str:
    """Rows held-out robots, columns method (and K): each robot's mean error in cm over its fresh targets; a guarded
    adaptation that was not kept as meta-trained says what became of it."""
    ks = results["ks"]
    columns = [(m, k) for m in results["methods"] for k in (ks[:1] if m in K_FREE else ks)]
    rows = []
    for robot_id, entry in results["per_robot_cm"].items():
        cells = []
        for method, k in columns:
            errors = entry.get(method, {}).get(str(k))
            decision = entry.get("guard", {}).get(method, {}).get(str(k), {})
            shrunk = decision.get("outcome", "adapted") != "adapted"
            note = f" ({decision['outcome']}, step ×{decision['step_scale']:g})" if shrunk else ""
            cells.append("–" if errors is None else f"{np.mean(errors):.2f}{note}")
        rows.append([robot_id, *cells])
    header = ["robot", *(LABELS[m] if m in K_FREE else f"{LABELS[m]}, K = {k}" for m, k in columns)]
    intro = (f"Per held-out robot: mean final flange-to-target distance in cm over its {results['targets_per_robot']} "
             f"fresh targets, executed in MuJoCo.")
    return markdown_table(header, rows, [intro])


def plot_results(results: dict, path: str | Path) -> Path:
    """Error against K, one panel per family (and ``all``), one line per method over the K it was measured at, log
    y, 95 % band."""
    panels: dict[str, list[Curve]] = {}
    for family, by_method in results["summary"].items():
        panels[family] = []
        for method in (m for m in results["methods"] if m in by_method):
            by_k = by_method[method]
            ks = [k for k in results["ks"] if str(k) in by_k]
            panels[family].append(Curve(LABELS[method], ks, *([by_k[str(k)][key] for k in ks]
                                                               for key in ("mean", "lo", "hi")),
                                        dashed=method in K_FREE))
    return plot_panels(panels, path, xlabel="K (demos)", ylabel="final reaching error (cm)", log_y=True)
