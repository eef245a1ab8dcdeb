"""The ``mtrl-robot`` command: populations, robots, randomization, pictures, benchmarks, the demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mtrl_robot.arms import population as populations
from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.families import family_names, load_family
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.arms.loader import URDF, load_arm
from mtrl_robot.core.errors import ConfigError, JointVectorError
from mtrl_robot.core.paths import data_dir

RUNS = Path("runs")


def _robot(args: argparse.Namespace) -> Arm:
    """A robot named by family, population id (with --population) or URDF (with --urdf/--flange)."""
    return load_arm(URDF if args.urdf else args.robot, args.population, args.urdf, args.flange)


def cmd_generate(args: argparse.Namespace) -> None:
    config = populations.load_config(args.config, seed=args.seed, robots_per_family=args.per_family,
                                     families=args.families)
    pop = populations.generate(config, progress=True)
    path = populations.save(pop, args.output)
    print(f"wrote {len(pop)} robots ({', '.join(config.families)}; seed {config.seed}) to {path}")


def cmd_inspect(args: argparse.Namespace) -> None:
    pop = populations.load(args.population)
    print(f"{args.population}: {len(pop)} robots, seed {pop.config.seed}")
    print(f"{'family':8} {'robots':>6} {'first id':>12} {'reach at home (m)':>22} {'arm mass (kg)':>16}")
    for name in pop.config.families:
        robots = pop.family(name)
        reach = [np.linalg.norm(flange_position(r, r.home_q)) for r in robots]
        mass = [sum(ln.mass for ln in r.links) for r in robots]
        print(f"{name:8} {len(robots):6d} {robots[0].robot_id:>12} "
              f"{np.min(reach):10.3f} – {np.max(reach):.3f} {np.min(mass):8.2f} – {np.max(mass):.2f}")


def cmd_show(args: argparse.Namespace) -> None:
    arm = _robot(args)
    q = arm.home_q if args.q is None else arm.check_q(np.array(args.q), "--q")
    print(f"{arm.robot_id}  ({arm.description}; base {arm.base_link}, flange {arm.flange_link})")
    print(f"{'joint':16} {'lower':>8} {'upper':>8} {'vel':>7} {'effort':>7} {'zero off':>9} {'q':>8}")
    for j, qi in zip(arm.joints, q, strict=True):
        print(f"{j.name:16} {j.lower:8.3f} {j.upper:8.3f} {j.velocity:7.3f} {j.effort:7.1f} "
              f"{j.zero_offset:9.4f} {qi:8.3f}")
    print(f"flange at q: {np.round(flange_position(arm, q), 4).tolist()} m")


def cmd_randomize(args: argparse.Namespace) -> None:
    from mtrl_robot.backends.factory import make_backend
    from mtrl_robot.randomization import Randomizer, SampleLog, load_spec
    from mtrl_robot.scenes.puck_table import load_scene

    spec = load_spec(args.spec)
    scene = load_scene()
    randomizer = Randomizer(spec, scene.nominal_parameters(), seed=args.seed)
    backend = None
    if args.apply:
        backend = make_backend(args.apply, load_family(args.family), scene)
    log = SampleLog(args.log) if args.log else None
    names = spec.names
    print("episode  " + "  ".join(f"{n.split('.', 1)[1]:>16}" for n in names))
    for episode in range(args.n):
        values = randomizer.sample("reset" if episode == 0 else "episode")
        shown = backend.apply_randomization(values) if backend else values
        print(f"{episode:7d}  " + "  ".join(f"{shown[n]:16.5f}" for n in names))
        if log:
            log.write(episode, shown, seed=args.seed, engine=args.apply or "none")
    if backend:
        print(f"(values read back from {args.apply})")
        backend.close()


def cmd_render(args: argparse.Namespace) -> None:
    from mtrl_robot.backends.render import render_population_png

    pop = populations.load(args.population) if args.population else populations.generate(
        populations.load_config(robots_per_family=args.per_family))
    arms = {name: pop.family(name)[: args.per_family] for name in pop.config.families}
    path = render_population_png(arms, args.output)
    print(f"wrote {path}")


def cmd_bench(args: argparse.Namespace) -> None:
    from mtrl_robot.tools.bench.report import run_bench

    run_bench(args.suite, Path(args.output), seconds=args.seconds)


def cmd_demo(args: argparse.Namespace) -> None:
    """The project end to end in a few minutes: robots, randomization, then the small learning loop."""
    out = Path(args.output)
    pop_path = out / "population.json"
    print("== 1. generate a population: 4 families × 100 robots ==")
    cmd_generate(argparse.Namespace(config=None, seed=args.seed, per_family=None, families=None, output=pop_path))
    print("\n== 2. inspect it ==")
    cmd_inspect(argparse.Namespace(population=pop_path))
    print("\n== 3. one perturbed robot ==")
    cmd_show(argparse.Namespace(robot="panda-007", population=pop_path, urdf=None, flange=None, q=None))
    print("\n== 4. domain randomization of the puck scene, applied to MuJoCo and read back ==")
    cmd_randomize(argparse.Namespace(spec=data_dir("config") / "randomization.yaml", seed=args.seed, n=5,
                                     apply="mujoco", family="panda", log=out / "randomization.jsonl"))
    print("\n== 5. a picture of three robots per family ==")
    cmd_render(argparse.Namespace(population=pop_path, per_family=3, output=out / "robots.png"))
    if not args.skip_learning:
        _demo_learning_loop(out)
    print(f"\nall outputs are in {out}/")


def _demo_learning_loop(out: Path) -> None:
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
    table, plot, _ = evaluate_reaching(run, out / "evaluation", ks=(1, 5), targets_per_robot=5)
    print(table.read_text())
    print(f"wrote {table} and {plot}")


def cmd_train(args: argparse.Namespace) -> None:
    from mtrl_robot.learning.reaching.presets import load_preset
    from mtrl_robot.learning.reaching.train import train_from_preset

    preset = load_preset(args.preset, args.set)
    out = train_from_preset(preset, args.output, resume=args.resume, progress=True)
    print(f"training run in {out} (checkpoints/, logs/, report.json)")


def cmd_adapt(args: argparse.Namespace) -> None:
    from mtrl_robot.learning.reaching.adapt import adapt_cli

    path = adapt_cli(args.checkpoint, args.demos, args.robot, args.k, out=args.output, steps=args.steps)
    print(f"wrote adapted checkpoint {path}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from mtrl_robot.learning.reaching.evaluate import evaluate_reaching

    table, plot, _ = evaluate_reaching(args.run, args.output, ks=tuple(args.ks), targets_per_robot=args.targets,
                                       robots_per_family=args.robots)
    print(table.read_text())
    print(f"wrote {table} and {plot}")


def cmd_puck(args: argparse.Namespace) -> None:
    if args.action == "train":
        from mtrl_robot.learning.puck.train import load_preset, train_puck

        print(f"puck run in {train_puck(load_preset(args.preset, overrides=args.set), args.output)}")
        return
    if args.action == "adapt":
        from mtrl_robot.learning.puck.adapt import adapt

        out = args.output / f"{args.policy}_{args.condition}.pt" if args.output.is_dir() else args.output
        path, curve = adapt(args.run, out, args.condition, args.steps, args.policy, args.seed)
        print("mean final distance by adaptation step (cm): " + ", ".join(f"{100 * d:.2f}" for d in curve))
        print(f"wrote adapted policy {path}")
        return
    from mtrl_robot.learning.puck.evaluate import evaluate_puck

    table, plot = evaluate_puck(args.run, args.output, repeats=args.repeats, camera=args.camera)
    print(table.read_text())
    print(f"wrote {table} and {plot}")


def cmd_launch(args: argparse.Namespace) -> None:
    from mtrl_robot.tools.launch_runner import main as launch_main

    code = launch_main([str(args.file), *args.arguments, *(["--print"] if args.print else [])])
    if code:
        raise SystemExit(code)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtrl-robot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("population", help="generate or inspect a robot population")
    psub = p.add_subparsers(dest="action", required=True)
    g = psub.add_parser("generate", help="perturb the arm families into a population file")
    g.add_argument("--config", type=Path, help="population YAML (default: config/population.yaml)")
    g.add_argument("--seed", type=int)
    g.add_argument("--per-family", type=int, help="robots per family (default from the config: 100)")
    g.add_argument("--families", nargs="+", choices=family_names())
    g.add_argument("-o", "--output", type=Path, default=RUNS / "population.json")
    g.set_defaults(func=cmd_generate)
    i = psub.add_parser("inspect", help="summarize a population file")
    i.add_argument("population", type=Path)
    i.set_defaults(func=cmd_inspect)

    s = sub.add_parser("show", help="print a robot's joints, limits and flange position")
    s.add_argument("robot", nargs="?", default="panda", help="family name, or robot id with --population")
    s.add_argument("--population", type=Path)
    s.add_argument("--urdf", type=Path, help="bring-your-own-arm URDF (needs --flange)")
    s.add_argument("--flange", help="flange link of the URDF")
    s.add_argument("--q", type=float, nargs="+", help="joint vector (default: home)")
    s.set_defaults(func=cmd_show)

    r = sub.add_parser("randomize", help="sample domain randomization values")
    r.add_argument("--spec", type=Path, default=data_dir("config") / "randomization.yaml")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("-n", type=int, default=5, help="episodes to sample")
    r.add_argument("--apply", choices=["mujoco", "pybullet"], help="apply to a backend and print read-back values")
    r.add_argument("--family", default="panda", choices=family_names())
    r.add_argument("--log", type=Path, help="append sampled values to this JSON-lines file")
    r.set_defaults(func=cmd_randomize)

    d = sub.add_parser("render", help="PNG of a few robots of each family side by side")
    d.add_argument("--population", type=Path, help="population file (default: generate one)")
    d.add_argument("--per-family", type=int, default=3)
    d.add_argument("-o", "--output", type=Path, default=RUNS / "robots.png")
    d.set_defaults(func=cmd_render)

    b = sub.add_parser("bench", help="benchmarks; figures are printed and saved as JSON")
    b.add_argument("suite", choices=["sim", "meta", "ros"])
    b.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    b.add_argument("-o", "--output", type=Path, default=Path("results"))
    b.set_defaults(func=cmd_bench)

    t = sub.add_parser("train", help="pretrain and meta-train the reaching model from a preset")
    t.add_argument("preset", help="preset name in config/training (small, full) or a YAML path")
    t.add_argument("-o", "--output", type=Path, default=RUNS / "train")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a preset value, e.g. --set meta.variant=probabilistic (repeatable)")
    t.set_defaults(func=cmd_train)

    a = sub.add_parser("adapt", help="adapt a meta-trained checkpoint to a new arm from K demonstrations")
    a.add_argument("checkpoint", type=Path, help="a checkpoint file, or a training run folder")
    a.add_argument("demos", type=Path, help="demonstrations (.npz dataset)")
    a.add_argument("--robot", help="robot id in the dataset (needed when it holds several)")
    a.add_argument("-k", type=int, default=5, help="number of demonstrations to adapt on")
    a.add_argument("--steps", type=int, help="gradient steps (default: the checkpoint's preset)")
    a.add_argument("-o", "--output", type=Path, help="adapted checkpoint (default: beside the checkpoint)")
    a.set_defaults(func=cmd_adapt)

    e = sub.add_parser("evaluate", help="reaching error in cm on held-out robots, executed in MuJoCo")
    e.add_argument("run", type=Path, help="a training run folder")
    e.add_argument("-o", "--output", type=Path, default=RUNS / "evaluation")
    e.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10])
    e.add_argument("--targets", type=int, default=10, help="fresh targets per robot")
    e.add_argument("--robots", type=int, help="held-out robots per family (default: all)")
    e.set_defaults(func=cmd_evaluate)

    pk = sub.add_parser("puck", help="puck hitting: meta-RL training, adaptation and evaluation")
    pk.add_argument("action", choices=["train", "adapt", "evaluate"])
    pk.add_argument("--preset", default="default", help="section of config/puck_meta_rl.yaml (small, default)")
    pk.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a preset value, e.g. --set inner_lr=0.1 (repeatable)")
    pk.add_argument("--run", type=Path, default=RUNS / "puck", help="run folder to evaluate")
    pk.add_argument("--repeats", type=int, default=25)
    pk.add_argument("--camera", action="store_true", help="puck position from the overhead camera")
    pk.add_argument("--condition", default="iso_low", help="adapt: the fixed puck condition to adapt to")
    pk.add_argument("--steps", type=int, default=3, help="adapt: inner steps")
    pk.add_argument("--policy", choices=["meta", "baseline"], default="meta", help="adapt: which policy of the run")
    pk.add_argument("--seed", type=int, default=0, help="adapt: seed of goals and exploration")
    pk.add_argument("-o", "--output", type=Path, default=RUNS / "puck")
    pk.set_defaults(func=cmd_puck)

    la = sub.add_parser("launch", help="run a ROS 2 XML launch file (the subset this package uses)")
    la.add_argument("file", type=Path)
    la.add_argument("arguments", nargs="*", help="launch arguments as name:=value")
    la.add_argument("--print", action="store_true", help="print each node's command line instead of running")
    la.set_defaults(func=cmd_launch)

    m = sub.add_parser("demo", help="the main job: robots, randomization, then train, adapt and evaluate (small)")
    m.add_argument("--seed", type=int, default=0, help="population and randomization seed")
    m.add_argument("--skip-learning", action="store_true", help="stop after the picture (about a minute)")
    m.add_argument("-o", "--output", type=Path, default=RUNS / "demo")
    m.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, JointVectorError, KeyError, FileNotFoundError, FileExistsError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) else exc
        print(f"mtrl-robot: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
