"""``mtrl-robot puck train|adapt|evaluate``: puck hitting, adapting to unknown friction and mass."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtrl_robot.cli.arguments import RUNS, add_compute_option, bounded, compute_of, existing, like, seed
from mtrl_robot.core.config import Limit
from mtrl_robot.learning.puck.presets import HITS, PuckMetaRLConfig

MAX_PER_AXIS = Limit(1000, "each motion of the grid is decoded, timed and checked")


def train(args: argparse.Namespace) -> None:
    from mtrl_robot.learning.puck.train import load_preset, train_puck

    print(f"puck run in {train_puck(load_preset(args.preset, overrides=args.set), args.output)}")


def train_history(args: argparse.Namespace) -> None:
    existing(args.run, "puck training run folder")
    from mtrl_robot.core.config import config_from_overrides
    from mtrl_robot.learning.puck.history_policy import HistoryPolicyConfig, train_history_policy

    print(f"wrote {train_history_policy(args.run, config_from_overrides(HistoryPolicyConfig, args.set))}")


def adapt(args: argparse.Namespace) -> None:
    existing(args.run, "puck training run folder")
    from mtrl_robot.learning.puck.adapt import adapt as adapt_puck

    out = args.output / f"{args.policy}_{args.condition}.pt" if args.output.is_dir() else args.output
    path, curve = adapt_puck(args.run, out, args.condition, args.steps, args.policy, args.seed)
    print("mean final distance by adaptation step (cm): " + ", ".join(f"{100 * d:.2f}" for d in curve))
    print(f"wrote adapted puck policy {path}")


def evaluate(args: argparse.Namespace) -> None:
    existing(args.run, "puck training run folder")
    from mtrl_robot.learning.puck.evaluate import evaluate_puck

    table, plot = evaluate_puck(args.run, args.output or args.run, repeats=args.repeats, camera=args.camera,
                                methods=tuple(args.methods), backend=args.backend, compute=compute_of(args))
    print(table.read_text())
    print(f"wrote {table} and {plot}")
    if args.video:
        from mtrl_robot.evaluation.puck_video import VIDEO_FILE, puck_video

        made = puck_video(args.run, (args.output or args.run) / VIDEO_FILE)
        print(f"video: {made.path} ({made.frames} frames; " + "; ".join(
            f"{label}: {', '.join(outcomes)}" for label, outcomes in made.outcomes.items()) + ")")


def check_motions(args: argparse.Namespace) -> None:
    existing(args.run, "puck training run folder")
    from mtrl_robot.hardware.presets import load_preset
    from mtrl_robot.learning.puck.motion_check import check_latent_grid, write_motion_check
    from mtrl_robot.learning.puck.train import VAE_FILE
    from mtrl_robot.models.hitting_vae import HittingVAE

    check = check_latent_grid(HittingVAE.load(args.run / VAE_FILE), load_preset(args.preset), args.per_axis)
    path = write_motion_check(check, args.output or args.run / f"motion_check_{check.preset}.json")
    print(check.summary())
    print(f"wrote {path}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("puck", help="puck hitting: meta-RL training, adaptation to one puck, evaluation")
    verbs = group.add_subparsers(dest="action", required=True)

    t = verbs.add_parser("train", help="hitting VAE, meta-policy and baseline from a preset")
    t.add_argument("--preset", default="default", help="section of config/puck_meta_rl.yaml (small, default)")
    t.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a preset value, e.g. --set inner_lr=0.1 (repeatable)")
    t.add_argument("-o", "--output", type=Path, default=RUNS / "puck")
    t.set_defaults(func=train)

    h = verbs.add_parser("train-history", help="a policy conditioned on its previous hits, for a run's VAE and goals")
    h.add_argument("run", type=Path, help="a puck training run folder (history_policy.pt is written there)")
    h.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a HistoryPolicyConfig value, e.g. --set tasks=20 (repeatable)")
    h.set_defaults(func=train_history)

    a = verbs.add_parser("adapt", help="adapt a run's meta-policy to one puck from a few hits")
    a.add_argument("run", type=Path, help="a puck training run folder")
    a.add_argument("--condition", default="iso_low", help="the fixed puck condition to adapt to")
    a.add_argument("--steps", type=like(PuckMetaRLConfig, "eval_steps"), default=3, help="inner adaptation steps")
    a.add_argument("--policy", choices=["meta", "baseline"], default="meta", help="which policy of the run")
    a.add_argument("--seed", type=seed(), default=0, help="seed of goals and exploration")
    a.add_argument("-o", "--output", type=Path, required=True,
                   help="adapted policy file, or a folder for <policy>_<condition>.pt")
    a.set_defaults(func=adapt)

    e = verbs.add_parser("evaluate", help="final distance to the goal against adaptation step, per method")
    e.add_argument("run", type=Path, help="a puck training run folder")
    e.add_argument("--repeats", type=bounded(int, minimum=2, maximum=HITS), default=25,
                   help="hits per condition and step (at least 2, for a confidence interval)")
    e.add_argument("--camera", action="store_true", help="puck position from the overhead camera")
    e.add_argument("--methods", nargs="+", default=["meta", "baseline"], metavar="METHOD",
                   help="adaptation methods to compare (names of mtrl_robot.learning.puck.methods.METHODS)")
    e.add_argument("--backend", choices=["mujoco", "pybullet"], default="mujoco",
                   help="engine that simulates the table (pybullet: the reality-gap stand-in)")
    e.add_argument("-o", "--output", type=Path, help="folder of the table, plot and JSON (default: the run folder)")
    e.add_argument("--video", action="store_true", help="also write puck_video.mp4: the meta-policy's hits on one "
                   "condition at adaptation step 0 beside the same hits after step 3")
    add_compute_option(e)
    e.set_defaults(func=evaluate)

    c = verbs.add_parser("check-motions", help="every motion of a grid over the VAE's latent box through a hardware "
                                               "preset's safety layer")
    c.add_argument("run", type=Path, help="a puck training run folder")
    c.add_argument("--preset", default="franka_panda_hitting", help="hardware preset whose safety layer judges")
    c.add_argument("--per-axis", type=bounded(int, minimum=2, maximum=MAX_PER_AXIS), default=32,
                   help="latents per axis of the box (the grid has its square)")
    c.add_argument("-o", "--output", type=Path, help="JSON file of the figures (default: in the run folder)")
    c.set_defaults(func=check_motions)
