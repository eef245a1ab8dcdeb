"""``mtrl-robot demo``: the project end to end in a few minutes: robots, randomization, the small learning loop."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtrl_robot.cli import robots
from mtrl_robot.cli.arguments import RUNS
from mtrl_robot.core.paths import data_dir

DEMO_KS = (1, 5)  # the numbers of demos the demo's evaluation adapts on
DEMO_TARGETS = 5  # fresh targets per held-out robot in the demo's evaluation


def demo(seed: int, out: Path, skip_learning: bool) -> None:
    pop_path = out / "population.json"
    print("== 1. generate a population: 4 families × 100 robots ==")
    robots.generate(None, seed, None, None, pop_path)
    print("\n== 2. inspect it ==")
    robots.inspect(pop_path)
    print("\n== 3. one perturbed robot ==")
    robots.show("panda-007", population=pop_path)
    print("\n== 4. domain randomization of the puck scene, applied to MuJoCo and read back ==")
    robots.randomize(data_dir("config") / "randomization.yaml", seed, 5, "mujoco", "panda", out / "randomization.jsonl")
    print("\n== 5. a picture of three robots per family ==")
    robots.render(pop_path, 3, out / "robots.png")
    if not skip_learning:
        learning_loop(out)
    print(f"\nall outputs are in {out}/")


def learning_loop(out: Path) -> None:
    """Steps 6–8 of the demo: meta-train the demo preset, adapt to a held-out arm, evaluate in MuJoCo."""
    from mtrl_robot.learning.reaching import checkpoint as checkpoints
    from mtrl_robot.learning.reaching.adapt import adapt_cli
    from mtrl_robot.learning.reaching.evaluate import evaluate_reaching
    from mtrl_robot.learning.reaching.train import train_from_preset

    run = out / "train"
    print("\n== 6. meta-train the demo preset: Panda and Gen3, 26 training robots each (MAML) ==")
    train_from_preset("demo", run, resume=run.exists(), progress=True)  # a finished run is reused
    checkpoint = run / "checkpoints" / "panda.pt"
    robot = checkpoints.load(checkpoint).info["held_out"][0]
    adapted = out / f"panda-adapted-{robot}-k5.pt"
    print(f"\n== 7. adapt to the held-out robot {robot} from 5 of its demos ==")
    adapted.unlink(missing_ok=True)  # the demo's own output from an earlier run
    state = checkpoints.load(adapt_cli(checkpoint, run / "demos.npz", robot, 5, out=adapted))
    print(f"wrote {adapted} ({state.info['adaptation']['steps']} gradient steps, "
          f"{state.info['adaptation']['seconds'] * 1000:.0f} ms)")
    print("\n== 8. reaching error on the held-out robots, executed in MuJoCo (cm) ==")
    table, plot, _ = evaluate_reaching(run, out / "evaluation", ks=DEMO_KS, targets_per_robot=DEMO_TARGETS)
    print(table.read_text())
    print(f"wrote {table} and {plot}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("demo", help="the main job: robots, randomization, then train, adapt and evaluate (small)")
    m.add_argument("--seed", type=int, default=0, help="population and randomization seed")
    m.add_argument("--skip-learning", action="store_true", help="stop after the picture (about a minute)")
    m.add_argument("-o", "--output", type=Path, default=RUNS / "demo")
    m.set_defaults(func=lambda a: demo(a.seed, a.output, a.skip_learning))
