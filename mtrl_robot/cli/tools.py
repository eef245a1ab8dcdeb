"""``mtrl-robot bench|launch|ros``: benchmark suites, the ROS 2 XML launch runner, the nodes' parameter files and
lifecycle states."""

from __future__ import annotations

import argparse
from pathlib import Path


def bench(suite: str, output: Path, seconds: float) -> None:
    from mtrl_robot.tools.bench.report import run_bench

    run_bench(suite, output, seconds=seconds)


def launch(file: Path, arguments: list[str], print_only: bool) -> None:
    from mtrl_robot.tools.launch_runner import main as launch_main

    code = launch_main([str(file), *arguments, *(["--print"] if print_only else [])])
    if code:
        raise SystemExit(code)


def ros_params(write: bool) -> None:
    """Rewrite the nodes' parameter files from their tables, or list those that differ (exit code 1)."""
    from mtrl_robot.ros.parameter_files import NODES, stale_files, write_files

    if write:
        written = write_files()
        print(f"{len(written)} of {len(NODES)} parameter files rewritten" + "".join(f"\n  {p}" for p in written))
        return
    stale = stale_files()
    if stale:
        print("parameter files that differ from their nodes' tables (mtrl-robot ros params --write):"
              + "".join(f"\n  {p}" for p in stale))
        raise SystemExit(1)
    print(f"all {len(NODES)} parameter files match their nodes' tables")


LIFECYCLE_COMMANDS = {  # the standard ~/change_state transitions, and reading the state
    "configure": "managed node: load the model and check the controller (unconfigured → inactive)",
    "activate": "managed node: start sending to the arm (inactive → active)",
    "deactivate": "managed node: stop the arm, send nothing more (active → inactive)",
    "cleanup": "managed node: release the model and the controller client (inactive → unconfigured)",
    "shutdown": "managed node: stop and release everything (→ finalized)",
    "state": "print a managed node's lifecycle state",
}


def ros_lifecycle(node: str, transition: str | None, timeout: float) -> None:
    """Ask a managed node for a lifecycle transition (None: none) and print the state it is in afterwards."""
    from mtrl_robot.ros.lifecycle import change_state

    try:
        print(f"{node}: {change_state(node, transition, timeout)}")
    except RuntimeError as exc:
        raise SystemExit(f"mtrl-robot ros {transition or 'state'}: error: {exc}") from None


def add_commands(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="benchmarks; figures are printed and saved as JSON")
    b.add_argument("suite", choices=["sim", "meta", "ros", "scale"])
    b.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    b.add_argument("-o", "--output", type=Path, default=Path("results"))
    b.set_defaults(func=lambda a: bench(a.suite, a.output, a.seconds))

    la = sub.add_parser("launch", help="run a ROS 2 XML launch file (the subset this package uses)")
    la.add_argument("file", type=Path)
    la.add_argument("arguments", nargs="*", help="launch arguments as name:=value")
    la.add_argument("--print", action="store_true", help="print each node's command line instead of running")
    la.set_defaults(func=lambda a: launch(a.file, a.arguments, a.print))

    r = sub.add_parser("ros", help="ROS 2 nodes' parameter files and lifecycle states")
    ros_sub = r.add_subparsers(dest="ros_command", required=True)
    rp = ros_sub.add_parser("params", help="check config/nodes/<node>.yaml against the nodes' parameter tables")
    rp.add_argument("--write", action="store_true", help="rewrite the files that differ")
    rp.set_defaults(func=lambda a: ros_params(a.write))
    for transition, about in LIFECYCLE_COMMANDS.items():
        rl = ros_sub.add_parser(transition, help=about)
        rl.add_argument("node", help="the managed node, e.g. /policy_node or /puck_node")
        rl.add_argument("--timeout", type=float, default=60.0, help="s to wait for the node and its answer")
        rl.set_defaults(func=lambda a, t=transition: ros_lifecycle(a.node, None if t == "state" else t, a.timeout))
