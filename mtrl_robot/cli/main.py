"""The ``mtrl-robot`` command: populations, robots, randomization, reaching and puck learning, results, the demo."""

from __future__ import annotations

import argparse
import sys
import typing

from mtrl_robot.cli import arm, demo, puck, reaching, recordings, results, robots, teach, tools
from mtrl_robot.core.errors import ConfigError, JointVectorError
from mtrl_robot.core.interrupt import Interrupted, raise_on_signals, signals_prevail
from mtrl_robot.distributed.compute import WorkerLost


class Parser(argparse.ArgumentParser):
    """A parser (and its sub-command parsers) that refuses bad arguments in one line, without the usage."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """One sub-command group per module of this package, in the order ``--help`` lists them."""
    parser = Parser(prog="mtrl-robot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (robots, arm, reaching, puck, tools, teach, recordings, results, demo):
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input, an OS error (e.g. an unwritable folder) or SIGINT/SIGTERM end it in one line."""
    args = build_parser().parse_args(argv)
    again = " (continue with --resume)" if getattr(args, "resume", None) is not None else ""
    raise_on_signals()
    try:
        with signals_prevail():
            args.func(args)
    except (ConfigError, JointVectorError, KeyError, ValueError, OSError) as exc:
        print(f"mtrl-robot: error: {_one_line(exc)}{again if isinstance(exc, WorkerLost) else ''}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"mtrl-robot: {exc}; files being written were discarded{again}", file=sys.stderr)
        return exc.exit_code
    return 0


def _one_line(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return str(exc.args[0])
    if isinstance(exc, OSError) and exc.filename is not None:  # "[Errno 13] Permission denied: 'x'" → "x: ..."
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
