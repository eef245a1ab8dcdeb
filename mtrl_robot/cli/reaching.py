"""``mtrl-robot reaching train|adapt|evaluate``: few-shot reaching across a robot population."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtrl_robot.cli.arguments import RUNS, add_compute_option, bounded, compute_of, existing, like, seed
from mtrl_robot.core.config import ROBOTS, STEPS, Limit
from mtrl_robot.learning.reaching.presets import DEMOS, AdaptConfig

SAMPLES_MAX = Limit(10000, "every draw adapts a copy of the model")
CANDIDATES_MAX = Limit(1_000_000, "every candidate is predicted by every draw")
MULTITASK_BUDGET = Limit(100, "the multi-task model trains this many times the run's pretraining steps")


def train(args: argparse.Namespace) -> None:
    from mtrl_robot.learning.reaching.presets import load_preset
    from mtrl_robot.learning.reaching.train import train_from_preset

    out = train_from_preset(load_preset(args.preset, args.set), args.output, resume=args.resume, progress=True)
    print((out / "report.md").read_text())
    print(f"training run in {out} (checkpoints/, logs/, report.json, report.md)")


def adapt(args: argparse.Namespace) -> None:
    existing(args.checkpoint, "checkpoint file or training run folder")
    existing(args.demos, "demonstrations file")
    from mtrl_robot.learning.reaching.adapt import adapt_cli

    path = adapt_cli(args.checkpoint, args.demos, args.robot, args.k, out=args.output, steps=args.steps)
    print(f"wrote adapted checkpoint {path}")


def evaluate(args: argparse.Namespace) -> None:
    existing(args.run, "training run folder")
    from mtrl_robot.learning.reaching.evaluate import evaluate_reaching

    given = {"ks": args.ks, "methods": args.methods, "targets_per_robot": args.targets, "seed": args.seed,
             "robots_per_family": args.robots, "pmaml_run_dir": args.pmaml_run, "scratch_steps": args.scratch_steps,
             "multitask_budget": args.multitask_budget, "finetune_lrs": args.finetune_lrs,
             "video": args.video or None, "per_robot_table": args.per_robot or None}  # the others: the defaults
    table, plot, data = evaluate_reaching(args.run, args.output, compute=compute_of(args),
                                          **{k: v for k, v in given.items() if v is not None})
    print(table.read_text())
    print(f"wrote {table}, {plot} and {data}")
    if args.video:
        print("videos: " + ", ".join(str(p) for p in sorted(args.output.glob("reaching_*.mp4"))))


def sweep(args: argparse.Namespace) -> None:
    from mtrl_robot.learning.reaching.sweep import sweep as run_sweep

    table, data = run_sweep(args.preset, args.grid, args.output, args.set)
    print(table.read_text())
    print(f"wrote {table} and {data}")


def lofo(args: argparse.Namespace) -> None:
    from mtrl_robot.learning.reaching.lofo import leave_one_family_out
    from mtrl_robot.learning.reaching.presets import load_preset

    given = {"ks": args.ks, "families": args.families, "finetune_lrs": args.finetune_lrs,
             "targets_per_robot": args.targets, "seed": args.seed}
    table, plot, data = leave_one_family_out(load_preset(args.preset, args.set), args.output,
                                             **{k: v for k, v in given.items() if v is not None})
    print(table.read_text())
    print(f"wrote {table}, {plot} and {data}")


def calibrate(args: argparse.Namespace) -> None:
    existing(args.run, "training run folder")
    from mtrl_robot.learning.reaching.calibration import calibrate_reaching

    given = {"ks": args.ks, "targets_per_robot": args.targets, "samples": args.samples, "seed": args.seed,
             "robots_per_family": args.robots, "validation": args.validation_robots, "test": args.test_robots}
    table, plot, data = calibrate_reaching(args.run, args.output, **{k: v for k, v in given.items() if v is not None})
    print(table.read_text())
    print(f"wrote {table}, {plot} and {data}")


def single_demo(args: argparse.Namespace) -> None:
    existing(args.run, "training run folder")
    from mtrl_robot.learning.reaching.single_demo_confidence import measure_confidences

    given = {"targets_per_robot": args.targets, "seed": args.seed, "validation": args.validation_robots}
    table, data = measure_confidences(args.run, args.output, **{k: v for k, v in given.items() if v is not None})
    print(table.read_text())
    print(f"wrote {table} and {data}")


def suggest(args: argparse.Namespace) -> None:
    existing(args.run, "checkpoint file or training run folder")
    from mtrl_robot.learning.reaching.suggest import suggest_cli

    given = {"candidates": args.candidates, "samples": args.samples, "seed": args.seed, "criterion": args.criterion}
    suggestion = suggest_cli(args.run, args.demos, args.robot, **{k: v for k, v in given.items() if v is not None})
    print(suggestion.describe())
    print(json.dumps(suggestion.to_dict()))


def suggest_compare(args: argparse.Namespace) -> None:
    existing(args.run, "training run folder")
    from mtrl_robot.learning.reaching.suggest import compare_suggested_random

    given = {"ks": args.ks, "targets_per_robot": args.targets, "candidates": args.candidates, "samples": args.samples,
             "seed": args.seed, "robots_per_family": args.robots}
    table, plot, data = compare_suggested_random(args.run, args.output,
                                                 **{k: v for k, v in given.items() if v is not None})
    print(table.read_text())
    print(f"wrote {table}, {plot} and {data}")


def _suggest_options(parser: argparse.ArgumentParser) -> None:
    """How a suggestion scores the workspace."""
    parser.add_argument("--candidates", type=bounded(int, above=0, maximum=CANDIDATES_MAX),
                        help="candidate targets scored (default: 256)")
    parser.add_argument("--samples", type=bounded(int, minimum=2, maximum=SAMPLES_MAX),
                        help="latent draws per candidate set, probabilistic MAML (default: 32)")


def export(args: argparse.Namespace) -> None:
    from mtrl_robot.learning.reaching import checkpoint as checkpoints
    from mtrl_robot.models.model_file import load_model_file
    from mtrl_robot.models.onnx_export import export_onnx

    model = args.model
    if model.is_dir():
        found = sorted(str(p) for p in model.glob("**/*" + checkpoints.MODEL_FILE_SUFFIX))
        raise ValueError(f"{model}: a folder; name one model file ({', '.join(found) or 'none in it'})")
    if not model.name.endswith(checkpoints.MODEL_FILE_SUFFIX):
        model = checkpoints.model_file_path(model)  # a checkpoint: its model file beside it
    if args.output.exists():
        raise ValueError(f"{args.output}: already exists; an export never replaces a file")
    path = export_onnx(load_model_file(model), args.output)
    print(f"wrote {path} from {model} (onnxruntime's waypoints checked against PyTorch's)")


def _finetune_lrs_option(parser: argparse.ArgumentParser) -> None:
    """The grid the fine-tuning baseline's step size is chosen from on validation robots."""
    parser.add_argument("--finetune-lrs", type=bounded(float, above=0), nargs="+",
                        help="fine-tuning step sizes tried on validation robots (default: 0.0001 0.0003 0.001 0.003 "
                             "0.01)")


def _held_out_options(parser: argparse.ArgumentParser, seeded: str) -> None:
    """Which held-out robots and fresh targets an evaluation of a run measures."""
    parser.add_argument("--targets", type=bounded(int, above=0, maximum=DEMOS),
                        help="fresh targets per held-out robot (default: 10)")
    parser.add_argument("--robots", type=bounded(int, above=0, maximum=ROBOTS),
                        help="held-out robots per family (default: all)")
    parser.add_argument("--seed", type=seed(), help=f"seed of the fresh targets and {seeded} (default: 1000)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("reaching", help="few-shot reaching: meta-train, adapt to a new arm, evaluate in MuJoCo")
    verbs = group.add_subparsers(dest="action", required=True)

    t = verbs.add_parser("train", help="pretrain and meta-train the reaching model from a preset")
    t.add_argument("preset", help="preset name in config/training (demo, small, full) or a YAML path")
    t.add_argument("-o", "--output", type=Path, default=RUNS / "train")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a preset value, e.g. --set meta.variant=probabilistic (repeatable)")
    t.set_defaults(func=train)

    a = verbs.add_parser("adapt", help="adapt a meta-trained checkpoint to a new arm from K demonstrations")
    a.add_argument("checkpoint", type=Path, help="a checkpoint file, or a training run folder")
    a.add_argument("demos", type=Path, help="demonstrations (.npz dataset)")
    a.add_argument("--robot", help="robot id in the dataset (needed when it holds several)")
    a.add_argument("-k", type=like(AdaptConfig, "k"), default=5, help="number of demonstrations to adapt on")
    a.add_argument("--steps", type=like(AdaptConfig, "steps"),
                   help="gradient steps (default: the checkpoint's preset)")
    a.add_argument("-o", "--output", type=Path, help="adapted checkpoint (default: beside the checkpoint)")
    a.set_defaults(func=adapt)

    e = verbs.add_parser("evaluate", help="reaching error in cm on held-out robots, executed in MuJoCo")
    e.add_argument("run", type=Path, help="a training run folder")
    e.add_argument("-o", "--output", type=Path, default=RUNS / "evaluation")
    e.add_argument("--ks", type=bounded(int, minimum=0, maximum=DEMOS), nargs="+",
                   help="numbers of demos to adapt on (default: 1 5 10; 0: no adaptation)")
    _held_out_options(e, "the baselines")
    e.add_argument("--methods", nargs="+", help="no_adaptation finetune scratch maml maml_calibrated pmaml ik_oracle "
                   "(default: all of these) and maml_unguarded (MAML without the adaptation guard)")
    e.add_argument("--pmaml-run", type=Path, help="a run of the probabilistic variant (for probabilistic MAML)")
    e.add_argument("--scratch-steps", type=bounded(int, above=0, maximum=STEPS),
                   help="training steps of the from-scratch model (default: 300)")
    e.add_argument("--multitask-budget", type=bounded(float, above=0, maximum=MULTITASK_BUDGET),
                   help="fraction of the run's pretraining steps for the multi-task model, if trained here (1.0)")
    _finetune_lrs_option(e)
    e.add_argument("--video", action="store_true",
                   help="also write reaching_<family>.mp4: a held-out robot before and after adaptation")
    e.add_argument("--per-robot", action="store_true",
                   help="also a table of every held-out robot's mean error in reaching.md")
    add_compute_option(e)
    e.set_defaults(func=evaluate)

    s = verbs.add_parser("sweep", help="train a grid of preset values; one table of their held-out errors")
    s.add_argument("preset", help="preset name in config/training (demo, small, full) or a YAML path")
    s.add_argument("--grid", action="append", required=True, metavar="SECTION.FIELD=V1,V2,...",
                   help="values of one field, e.g. --grid meta.inner_lr=0.003,0.01 (repeatable: every combination)")
    s.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a preset value for every run, e.g. --set compute.backend=ray (repeatable)")
    s.add_argument("-o", "--output", type=Path, default=RUNS / "sweep")
    s.set_defaults(func=sweep)

    lo = verbs.add_parser("lofo", help="leave one family out: meta-train without a family, adapt to it from K demos, "
                                       "beside tuned fine-tuning, the family's own model and the IK oracle")
    lo.add_argument("preset", help="preset name in config/training (e.g. medium) or a YAML path")
    lo.add_argument("-o", "--output", type=Path, default=RUNS / "lofo")
    lo.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="override a preset value of every run (repeatable)")
    lo.add_argument("--families", nargs="+", help="the families to leave out, one fold each (default: all)")
    lo.add_argument("--ks", type=like(AdaptConfig, "k"), nargs="+",
                    help="demos of the new family's robot to adapt on (default: 5 10 20)")
    _finetune_lrs_option(lo)
    lo.add_argument("--targets", type=bounded(int, above=0, maximum=DEMOS),
                    help="fresh targets per held-out robot (default: 10)")
    lo.add_argument("--seed", type=seed(), help="seed of the fresh targets (default: 1000)")
    lo.set_defaults(func=lofo)

    c = verbs.add_parser("calibrate", help="fit probabilistic MAML's spread calibration on validation robots and "
                                           "write it into the run's checkpoints; its coverage before and after on "
                                           "held-out robots")
    c.add_argument("run", type=Path, help="a training run of the probabilistic variant")
    c.add_argument("-o", "--output", type=Path, default=RUNS / "calibration")
    c.add_argument("--ks", type=bounded(int, minimum=0, maximum=DEMOS), nargs="+",
                   help="support demos per robot (default: 0 1 5; 0: the prior)")
    c.add_argument("--samples", type=bounded(int, minimum=2, maximum=SAMPLES_MAX),
                   help="latent draws per support set (default: 64)")
    c.add_argument("--validation-robots", type=bounded(int, above=0, maximum=ROBOTS),
                   help="fresh robots per family the calibration is fitted on (default: 60)")
    c.add_argument("--test-robots", type=bounded(int, minimum=0, maximum=ROBOTS),
                   help="fresh robots per family after the validation ones, the coverage also measured on "
                        "(default: 60; 0: none)")
    _held_out_options(c, "the latent draws")
    c.set_defaults(func=calibrate)

    o = verbs.add_parser("single-demo", help="the adaptation guard's one-demo check on validation robots: MAML at "
                                             "K = 1 with each confidence, and the robots it leaves worse than the init")
    o.add_argument("run", type=Path, help="a training run of plain MAML")
    o.add_argument("-o", "--output", type=Path, default=RUNS / "single_demo")
    o.add_argument("--validation-robots", type=bounded(int, above=0, maximum=ROBOTS),
                   help="fresh robots per family (default: 60)")
    o.add_argument("--targets", type=bounded(int, above=0, maximum=DEMOS),
                   help="fresh targets per robot (default: 30)")
    o.add_argument("--seed", type=seed(), help="seed of the fresh targets (default: 1000)")
    o.set_defaults(func=single_demo)

    su = verbs.add_parser("suggest", help="the next target to demonstrate: where the model adapted on the demos is "
                                          "least certain over the workspace")
    su.add_argument("run", type=Path, help="a checkpoint file, or a training run folder")
    su.add_argument("--demos", type=Path, required=True, help="the demonstrations so far (.npz dataset)")
    su.add_argument("--robot", help="robot id in the dataset (needed when it holds several)")
    _suggest_options(su)
    su.add_argument("--criterion", choices=("variance_reduction", "spread"),
                    help="variance_reduction (default): the demo expected to shrink the spread over the workspace "
                         "most; spread: the most uncertain target")
    su.add_argument("--seed", type=seed(), help="seed of the candidates and latent draws (default: 2000)")
    su.set_defaults(func=suggest)

    sc = verbs.add_parser("suggest-compare", help="reach error after K suggested vs K random demos on held-out "
                                                  "robots, executed in MuJoCo (probabilistic MAML)")
    sc.add_argument("run", type=Path, help="a training run of the probabilistic variant")
    sc.add_argument("-o", "--output", type=Path, default=RUNS / "suggest")
    sc.add_argument("--ks", type=like(AdaptConfig, "k"), nargs="+", help="numbers of demos (default: 1 2 3 5)")
    _suggest_options(sc)
    sc.add_argument("--targets", type=bounded(int, above=0, maximum=DEMOS),
                    help="fresh targets per held-out robot (default: 10)")
    sc.add_argument("--robots", type=bounded(int, above=0, maximum=ROBOTS),
                    help="held-out robots per family (default: all)")
    sc.add_argument("--seed", type=seed(), help="seed of the candidates and latent draws (default: 2000)")
    sc.set_defaults(func=suggest_compare)

    x = verbs.add_parser("export", help="write a reaching model file (adapted or meta-trained) as ONNX")
    x.add_argument("model", type=Path, help="a model file (X.model.pt), or a checkpoint X.pt (its model file)")
    x.add_argument("-o", "--output", type=Path, required=True, help="the ONNX file to write (never replaced)")
    x.set_defaults(func=export)
