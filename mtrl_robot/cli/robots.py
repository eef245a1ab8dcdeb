"""``mtrl-robot population|show|randomize|render``: robot populations, one robot, randomization, a picture."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mtrl_robot.arms import population as populations
from mtrl_robot.arms.families import family_names, load_family
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.arms.loader import URDF, load_arm
from mtrl_robot.backends.factory import make_backend
from mtrl_robot.cli.arguments import EPISODES, RUNS, Unique, bounded, seed
from mtrl_robot.core.config import ROBOTS
from mtrl_robot.core.paths import data_dir


def generate(config: Path | None, seed: int | None, per_family: int | None, families: list[str] | None,
             output: Path) -> None:
    config = populations.load_config(config, seed=seed, robots_per_family=per_family, families=families)
    pop = populations.generate(config, progress=True)
    path = populations.save(pop, output)
    print(f"wrote {len(pop)} robots ({', '.join(config.families)}; seed {config.seed}) to {path}")


def inspect(population: Path) -> None:
    pop = populations.load(population)
    print(f"{population}: {len(pop)} robots, seed {pop.config.seed}")
    print(f"{'family':8} {'robots':>6} {'first id':>12} {'reach at home (m)':>22} {'arm mass (kg)':>16}")
    for name in pop.family_names:
        robots = pop.family(name)
        reach = [np.linalg.norm(flange_position(r, r.home_q)) for r in robots]
        mass = [sum(ln.mass for ln in r.links) for r in robots]
        print(f"{name:8} {len(robots):6d} {robots[0].robot_id:>12} "
              f"{np.min(reach):10.3f} – {np.max(reach):.3f} {np.min(mass):8.2f} – {np.max(mass):.2f}")


def show(robot: str, population: Path | None = None, urdf: Path | None = None, flange: str | None = None,
         q: list[float] | None = None) -> None:
    arm = load_arm(URDF if urdf else robot, population, urdf, flange)
    q = arm.home_q if q is None else arm.check_q(np.array(q), "--q")
    print(f"{arm.robot_id}  ({arm.description}; base {arm.base_link}, flange {arm.flange_link})")
    width = max(16, *(len(name) for name in arm.joint_names))
    print(f"{'joint':{width}} {'lower':>8} {'upper':>8} {'vel':>7} {'effort':>7} {'zero off':>9} {'q':>8}")
    for j, qi in zip(arm.joints, q, strict=True):
        print(f"{j.name:{width}} {j.lower:8.3f} {j.upper:8.3f} {j.velocity:7.3f} {j.effort:7.1f} "
              f"{j.zero_offset:9.4f} {qi:8.3f}")
    print(f"flange at q: {np.round(flange_position(arm, q), 4).tolist()} m")


def randomize(spec: Path, seed: int, n: int, apply: str | None, family: str, log: Path | None) -> None:
    from mtrl_robot.randomization import Randomizer, SampleLog, load_spec
    from mtrl_robot.scenes.puck_table import load_scene

    spec = load_spec(spec)
    scene = load_scene()
    randomizer = Randomizer(spec, scene.nominal_parameters(), seed=seed)
    backend = None
    if apply:
        backend = make_backend(apply, load_family(family), scene)
    sample_log = SampleLog(log) if log else None
    names = spec.names
    print("episode  " + "  ".join(f"{n.split('.', 1)[1]:>16}" for n in names))
    for episode in range(n):
        values = randomizer.sample("reset" if episode == 0 else "episode")
        shown = backend.apply_randomization(values) if backend else values
        print(f"{episode:7d}  " + "  ".join(f"{shown[n]:16.5f}" for n in names))
        if sample_log:
            sample_log.write(episode, shown, seed=seed, engine=apply or "none")
    if backend:
        print(f"(values read back from {apply})")
        backend.close()


def render(population: Path | None, per_family: int, output: Path) -> None:
    from mtrl_robot.backends.render import render_population_png

    pop = populations.load(population) if population else populations.generate(
        populations.load_config(robots_per_family=per_family))
    arms = {name: pop.family(name)[:per_family] for name in pop.family_names}
    print(f"wrote {render_population_png(arms, output)}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("population", help="generate or inspect a robot population")
    psub = p.add_subparsers(dest="action", required=True)
    g = psub.add_parser("generate", help="perturb the arm families into a population file")
    g.add_argument("--config", type=Path, help="population YAML (default: config/population.yaml)")
    g.add_argument("--seed", type=seed())
    g.add_argument("--per-family", type=bounded(int, above=0, maximum=ROBOTS),
                   help="robots per family (default from the config: 100)")
    g.add_argument("--families", nargs="+", action=Unique, metavar="FAMILY",
                   help=f"built-in names ({', '.join(family_names())}) or family files (default from the config)")
    g.add_argument("-o", "--output", type=Path, default=RUNS / "population.json")
    g.set_defaults(func=lambda a: generate(a.config, a.seed, a.per_family, a.families, a.output))
    i = psub.add_parser("inspect", help="summarize a population file")
    i.add_argument("population", type=Path)
    i.set_defaults(func=lambda a: inspect(a.population))

    s = sub.add_parser("show", help="print a robot's joints, limits and flange position")
    s.add_argument("robot", nargs="?", default="panda",
                   help="family name or family file, or robot id with --population")
    s.add_argument("--population", type=Path)
    s.add_argument("--urdf", type=Path, help="bring-your-own-arm URDF (needs --flange)")
    s.add_argument("--flange", help="flange link of the URDF")
    s.add_argument("--q", type=float, nargs="+", help="joint vector (default: home)")
    s.set_defaults(func=lambda a: show(a.robot, a.population, a.urdf, a.flange, a.q))

    r = sub.add_parser("randomize", help="sample domain randomization values")
    r.add_argument("--spec", type=Path, default=data_dir("config") / "randomization.yaml")
    r.add_argument("--seed", type=seed(), default=0)
    r.add_argument("-n", type=bounded(int, above=0, maximum=EPISODES), default=5, help="episodes to sample")
    r.add_argument("--apply", choices=["mujoco", "pybullet"], help="apply to a backend and print read-back values")
    r.add_argument("--family", default="panda", help="built-in family name or family file")
    r.add_argument("--log", type=Path, help="append sampled values to this JSON-lines file")
    r.set_defaults(func=lambda a: randomize(a.spec, a.seed, a.n, a.apply, a.family, a.log))

    d = sub.add_parser("render", help="PNG of a few robots of each family side by side")
    d.add_argument("--population", type=Path, help="population file (default: generate one)")
    d.add_argument("--per-family", type=bounded(int, above=0, maximum=ROBOTS), default=3)
    d.add_argument("-o", "--output", type=Path, default=RUNS / "robots.png")
    d.set_defaults(func=lambda a: render(a.population, a.per_family, a.output))
