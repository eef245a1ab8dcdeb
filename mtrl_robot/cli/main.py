"""The ``mtrl-robot`` command: populations, robots, randomization, reaching and puck learning, results, the demo."""

from __future__ import annotations

import argparse
import sys

from mtrl_robot.cli import demo, puck, reaching, recordings, results, robots, tools
from mtrl_robot.core.errors import ConfigError, JointVectorError


def build_parser() -> argparse.ArgumentParser:
    """One sub-command group per module of this package, in the order ``--help`` lists them."""
    parser = argparse.ArgumentParser(prog="mtrl-robot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (robots, reaching, puck, tools, recordings, results, demo):
        group.add_commands(sub)
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
