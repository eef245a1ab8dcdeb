"""``mtrl-robot results``: regenerate every table and plot the README quotes into ``docs/results/``."""

from __future__ import annotations

import argparse
from pathlib import Path


def results(only: list[str], redo: bool, output: Path) -> None:
    from mtrl_robot.cli.main import main
    from mtrl_robot.tools.results import regenerate

    written = regenerate(main, only, redo=redo, results_dir=output)
    print(f"{len(written)} files in {output}/ (and index.md)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    from mtrl_robot.tools.results import NAMES, RESULTS_DIR

    r = sub.add_parser("results", help="regenerate the README's tables and plots into docs/results/")
    r.add_argument("--only", nargs="+", default=[], choices=NAMES, metavar="NAME",
                   help=f"make only these results ({', '.join(NAMES)}; default: all)")
    r.add_argument("--redo", action="store_true",
                   help="train and evaluate again instead of reusing runs/ (old run folders are moved aside)")
    r.add_argument("-o", "--output", type=Path, default=RESULTS_DIR, help="results folder")
    r.set_defaults(func=lambda a: results(a.only, a.redo, a.output))
