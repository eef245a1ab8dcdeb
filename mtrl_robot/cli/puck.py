"""``mtrl-robot puck train|adapt|evaluate``: puck hitting, adapting to unknown friction and mass."""

from __future__ import annotations

import argparse
from pathlib import Path

RUNS = Path("runs")


def train(args: argparse.Namespace) -> None:
    from mtrl_robot.learning.puck.train import train_puck

    print(f"puck run in {train_puck(args.preset, args.output)}")


def adapt(args: argparse.Namespace) -> None:
    """Where puck adaptation plugs in: ``learning.puck.adapt.adapt(run_dir, ..., out)`` → the adapted policy file."""
    from mtrl_robot.learning.puck.adapt import adapt as adapt_puck

    path = adapt_puck(args.run, condition=args.condition, steps=args.steps, camera=args.camera, out=args.output)
    print(f"wrote adapted puck policy {path}")


def evaluate(args: argparse.Namespace) -> None:
    from mtrl_robot.learning.puck.evaluate import evaluate_puck

    table, plot = evaluate_puck(args.run, args.output or args.run, repeats=args.repeats, camera=args.camera)
    print(table.read_text())
    print(f"wrote {table} and {plot}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("puck", help="puck hitting: meta-RL training, adaptation to one puck, evaluation")
    verbs = group.add_subparsers(dest="action", required=True)

    t = verbs.add_parser("train", help="hitting VAE, meta-policy and baseline from a preset")
    t.add_argument("--preset", default="default", help="section of config/puck_meta_rl.yaml (small, default)")
    t.add_argument("-o", "--output", type=Path, default=RUNS / "puck")
    t.set_defaults(func=train)

    a = verbs.add_parser("adapt", help="adapt a run's meta-policy to one puck from a few hits")
    a.add_argument("run", type=Path, help="a puck training run folder")
    a.add_argument("--condition", help="the puck's friction condition (default: the run's own choice)")
    a.add_argument("--steps", type=int, help="inner adaptation steps (default: the run's preset)")
    a.add_argument("--camera", action="store_true", help="puck position from the overhead camera")
    a.add_argument("-o", "--output", type=Path, help="adapted policy file (default: inside the run folder)")
    a.set_defaults(func=adapt)

    e = verbs.add_parser("evaluate", help="final distance to the goal against adaptation step, meta vs baseline")
    e.add_argument("run", type=Path, help="a puck training run folder")
    e.add_argument("--repeats", type=int, default=25)
    e.add_argument("--camera", action="store_true", help="puck position from the overhead camera")
    e.add_argument("-o", "--output", type=Path, help="folder of the table, plot and JSON (default: the run folder)")
    e.set_defaults(func=evaluate)
