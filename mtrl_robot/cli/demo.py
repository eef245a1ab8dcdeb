"""``mtrl-robot demo``: the project end to end in a few minutes: robots, randomization, the small learning loop."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtrl_robot.arms import population as populations
from mtrl_robot.arms.families import load_families, load_family
from mtrl_robot.cli import robots
from mtrl_robot.cli.arguments import RUNS, Unique
from mtrl_robot.core.paths import data_dir

DEMO_KS = (1, 5)  # the numbers of demos the demo's evaluation adapts on
DEMO_TARGETS = 5  # fresh targets per held-out robot in the demo's evaluation
# every method, and MAML without the adaptation guard beside MAML: where the guard changed a number, the table shows it
DEMO_METHODS = ("no_adaptation", "finetune", "scratch", "maml", "maml_calibrated", "maml_unguarded", "pmaml",
                "ik_oracle")


def demo(seed: int, out: Path, skip_learning: bool, families: list[str] | None = None) -> None:
    """The demo over the built-in families, or over ``families`` (names or family files) when given."""
    pop_path = out / "population.json"
    config = populations.load_config(families=families)
    print(f"== 1. generate a population: {len(config.families)} families × {config.robots_per_family} robots ==")
    robots.generate(None, seed, None, families, pop_path)
    print("\n== 2. inspect it ==")
    robots.inspect(pop_path)
    first = load_family(config.families[0]).family
    print("\n== 3. one perturbed robot ==")
    robots.show(f"{first}-007", population=pop_path)
    print("\n== 4. domain randomization of the puck scene, applied to MuJoCo and read back ==")
    robots.randomize(data_dir("config") / "randomization.yaml", seed, 5, "mujoco", config.families[0],
                     out / "randomization.jsonl")
    print("\n== 5. a picture of three robots per family ==")
    robots.render(pop_path, 3, out / "robots.png")
    if not skip_learning:
        learning_loop(out, families)
    print(f"\nall outputs are in {out}/")


def learning_loop(out: Path, families: list[str] | None = None) -> None:
    """Steps 6–8 of the demo: meta-train the demo preset (on ``families`` if given), adapt to a held-out arm of
    its first family, evaluate in MuJoCo."""
    from mtrl_robot.learning.reaching import checkpoint as checkpoints
    from mtrl_robot.learning.reaching.adapt import adapt_cli
    from mtrl_robot.learning.reaching.evaluate import evaluate_reaching
    from mtrl_robot.learning.reaching.presets import load_preset
    from mtrl_robot.learning.reaching.train import train_from_preset

    run = out / "train"
    preset = load_preset("demo", [f"data.families={json.dumps(families)}"] if families else [])
    names = list(load_families(preset.data.families, None, "data.families"))
    first = names[0]
    print(f"\n== 6. meta-train the demo preset: {', '.join(names)}, "
          f"{preset.data.robots_per_family - preset.data.held_out_per_family} training robots each (MAML) ==")
    train_from_preset(preset, run, resume=run.exists(), progress=True)  # a finished run is reused
    checkpoint = run / "checkpoints" / f"{first}.pt"
    robot = checkpoints.load(checkpoint).info["held_out"][0]
    adapted = out / f"{first}-adapted-{robot}-k5.pt"
    print(f"\n== 7. adapt to the held-out robot {robot} from 5 of its demos ==")
    adapted.unlink(missing_ok=True)  # the demo's own output from an earlier run
    state = checkpoints.load(adapt_cli(checkpoint, run / "demos.npz", robot, 5, out=adapted))
    print(f"wrote {adapted} ({state.info['adaptation']['steps']} gradient steps, "
          f"{state.info['adaptation']['seconds'] * 1000:.0f} ms)")
    print("\n== 8. reaching error on the held-out robots, executed in MuJoCo (cm) ==")
    table, plot, _ = evaluate_reaching(run, out / "evaluation", ks=DEMO_KS, methods=DEMO_METHODS,
                                       targets_per_robot=DEMO_TARGETS)
    print(table.read_text())
    print(f"wrote {table} and {plot}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("demo", help="the main job: robots, randomization, then train, adapt and evaluate (small)")
    m.add_argument("--seed", type=int, default=0, help="population and randomization seed")
    m.add_argument("--skip-learning", action="store_true", help="stop after the picture (about a minute)")
    m.add_argument("--families", nargs="+", action=Unique, metavar="FAMILY",
                   help="built-in names or family files (default: the four built-in families; Panda and Gen3 "
                        "for learning)")
    m.add_argument("-o", "--output", type=Path, default=RUNS / "demo")
    m.set_defaults(func=lambda a: demo(a.seed, a.output, a.skip_learning, a.families))
