"""``mtrl-robot teach``: teaching an arm by demonstration in one terminal, over the few-shot adaptation launch.

It starts ``launch/few_shot_adaptation.launch.xml`` with the given ``NAME:=VALUE`` arguments (its output goes to a
log file, named on the screen), waits for its nodes, then guides the person through the procedure of
:mod:`mtrl_robot.motions.teaching` on a full-screen ``rich`` display, one key at a time; the requests go to the nodes
through :class:`~mtrl_robot.ros.teach_client.TeachClient`. With ``--no-launch`` it uses nodes started elsewhere
(give the same arguments, which say the robot, K and the recordings folder). On leaving, the screen's tables are
printed and the launch is stopped. Ctrl-C stops and discards an episode being recorded, and one not yet kept.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import signal
import subprocess
import sys
import termios
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.interrupt import Interrupted
from mtrl_robot.core.paths import data_dir

LAUNCH_FILE = "few_shot_adaptation.launch.xml"
STARTUP_TIMEOUT = 120.0  # s for the launch's nodes to come up (they import torch and load the model)
STOP_TIMEOUT = 30.0  # s for the launch to stop its nodes after SIGINT
POLL = 0.1  # s between screen updates while no key is pressed
_NODE_EXIT = re.compile(r"^\[launch\] (\S+) exited with code (-?\d+)$", re.MULTILINE)


class TeachError(Exception):
    """Teaching cannot go on; the message is one line naming the node, service or file."""


def launch_settings(file: Path, arguments: dict[str, str]) -> dict[str, str]:
    """The adaptation node's parameters in the launch file with ``arguments``: the robot, K and the recordings."""
    from mtrl_robot.tools.launch_runner import parse_launch

    for node in parse_launch(file, arguments):
        if node.label == "adaptation_node":
            return dict(node.parameters)
    raise ConfigError(file, "adaptation_node", "the launch file starts no adaptation_node")


def node_failures(log: str) -> list[str]:
    """Nodes the launch runner reports as ended with a non-zero code, each with the last line it printed."""
    failures = []
    for match in _NODE_EXIT.finditer(log):
        name, code = match.group(1), int(match.group(2))
        if code != 0:
            said = [line for line in log[:match.start()].splitlines() if line.startswith(f"{name}: ")]
            failures.append(f"{name} exited with code {code}" + (f" ({said[-1]})" if said else ""))
    return failures


class Launch:
    """The few-shot launch as a child process in a session of its own (so Ctrl-C reaches teach alone), its output in
    ``log``; it gets SIGTERM should this process die."""

    def __init__(self, file: Path, arguments: list[str], log: Path) -> None:
        from mtrl_robot.tools.launch_runner import die_with_parent

        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "mtrl_robot.tools.launch_runner", str(file),
                                             *arguments], stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)

    def problem(self) -> str | None:
        """Why the launch cannot serve teaching now (it ended, or one of its nodes did), or None."""
        failures = node_failures(self.log.read_text())
        if failures:
            return f"{failures[0]}; the launch's output is in {self.log}"
        if self.process.poll() is not None:
            return f"the launch ended with code {self.process.returncode}; its output is in {self.log}"
        return None

    def stop(self) -> int:
        """SIGINT the launch (it stops its nodes), SIGKILL it if it has not ended within ``STOP_TIMEOUT``."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


@contextmanager
def keys() -> Iterator:
    """The terminal in cbreak mode (keys arrive as pressed, unechoed; Ctrl-C still interrupts); yields
    ``read(timeout)``, the next key or '' after ``timeout`` s."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def read(timeout: float) -> str:
        if not select.select([fd], [], [], timeout)[0]:
            return ""
        return os.read(fd, 1).decode(errors="replace").lower()

    try:
        yield read
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _xyz(point) -> str:
    return "(" + ", ".join(f"{v:+.3f}" for v in point) + ")"


def tables(teaching) -> list:
    """The kept demonstrations and the test targets as rich tables."""
    from rich.table import Table

    demos = Table(title=f"demonstrations kept ({len(teaching.kept)} of K = {teaching.k})", title_justify="left")
    for column in ("#", "bag", "duration s", "samples", "flange start (m)", "flange end (m)", "to target cm"):
        demos.add_column(column, justify="left" if column in ("bag",) else "right")
    for i, demo in enumerate(teaching.kept, 1):
        demos.add_row(str(i), demo.bag.name, f"{demo.duration:.2f}", str(demo.samples), _xyz(demo.start),
                      _xyz(demo.end), f"{demo.distance * 100:.2f}")
    tests = Table(title="test targets", title_justify="left")
    for column in ("#", "target (m)", "flange reached (m)", "error cm"):
        tests.add_column(column, justify="right")
    for i, test in enumerate(teaching.tests, 1):
        tests.add_row(str(i), _xyz(test.target), _xyz(test.reached) if test.reached is not None else test.message,
                      f"{test.error * 100:.2f}" if test.error is not None else "-")
    return [demos, tests]


def screen(teaching, header: str, source: str, waiting: list | None = None):
    """Everything the person needs now: where they are, the target, what happened last, the tables, the keys."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    from mtrl_robot.motions.teaching import Stage

    parts: list = [Text(header, style="bold")]
    if waiting:
        parts.append(Text("waiting for the nodes: " + "; ".join(map(str, waiting)), style="yellow"))
    else:
        if teaching.stage in (Stage.TARGET, Stage.RECORDING, Stage.REVIEW):
            what = f"demonstration {len(teaching.kept) + 1}"
        elif teaching.stage is Stage.TESTING:
            what = f"test target {len(teaching.tests) + 1}"
        else:
            what = teaching.stage.value
        parts.append(Text(f"step: {what} [{teaching.stage.value}]", style="bold cyan"))
        if teaching.stage is not Stage.ADAPTING:
            x, y, z = teaching.target
            shown = source if teaching.stage is Stage.TESTING else teaching.target_source
            parts.append(Text(f"target  x {x:+.3f}  y {y:+.3f}  z {z:+.3f} m  ({shown})", style="bold"))
        parts.append(Text(teaching.notice, style="bold red" if teaching.problem else "green"))
        if teaching.review is not None:
            demo = teaching.review
            review = Table.grid(padding=(0, 2))
            review.add_row("bag", str(demo.bag))
            review.add_row("duration", f"{demo.duration:.2f} s, {demo.samples} samples")
            review.add_row("flange", f"start {_xyz(demo.start)} m → end {_xyz(demo.end)} m")
            review.add_row("to target", f"{demo.distance * 100:.2f} cm")
            parts.append(Panel(review, title="recorded demonstration", title_align="left"))
    if teaching.model:
        parts.append(Text(f"adapted model: {teaching.model}"))
    parts.extend(tables(teaching))
    shown = teaching.keys()
    parts.append(Text("keys: " + ("  ".join(f"[{k}] {what}" for k, what in shown) if shown else "(busy)")
                      + "  Ctrl-C: quit", style="dim"))
    return Group(*parts)


def teach(launch_file: Path | None, arguments: list[str], seed: int, start_launch: bool) -> None:
    from mtrl_robot.arms.loader import load_arm
    from mtrl_robot.tools.launch_runner import parse_assignments

    file = launch_file or data_dir("launch") / LAUNCH_FILE
    settings = launch_settings(file, parse_assignments(arguments))
    arm = load_arm(settings["robot"], settings.get("population_file", ""), settings.get("urdf_file", ""),
                   settings.get("flange_link", ""))
    if not settings["k"].isdigit() or int(settings["k"]) < 1:
        raise ConfigError(file, "k", f"'{settings['k']}' is not a number of episodes (an integer from 1)")
    k = int(settings["k"])
    if not sys.stdin.isatty():
        raise ValueError("mtrl-robot teach reads keys from a terminal; stdin is not one")
    root = Path(os.environ.get("ROS_LOG_DIR") or Path.home() / ".ros" / "log")
    log = root / f"mtrl_teach_{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}.log"
    launch = Launch(file, arguments, log) if start_launch else None
    try:
        _run(arm, k, settings["recordings_dir"], seed, launch)
    except TeachError as exc:
        print(f"mtrl-robot teach: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        if launch is not None:
            print(f"stopping the launch (its output is in {launch.log})", file=sys.stderr)
            launch.stop()


def _run(arm, k: int, recordings: str, seed: int, launch: Launch | None) -> None:
    from rich.console import Console
    from rich.live import Live

    from mtrl_robot.motions.teaching import Stage, StartEpisode, StopEpisode, Teaching, workspace_targets
    from mtrl_robot.ros.teach_client import REPLY_TIMEOUT, TeachClient

    source = f"workspace sample, seed {seed}"
    teaching = Teaching(arm, k, workspace_targets(arm, seed), suggestions=True, sample_source=source)
    header = (f"mtrl-robot teach · {arm.robot_id} · K = {k} · recordings in {recordings}"
              + (f"\nlaunch output: {launch.log}" if launch else ""))
    console = Console()
    client = TeachClient(arm)
    pending = None
    interrupted = False
    try:
        with keys() as read, Live(console=console, screen=True, auto_refresh=False) as live:
            try:
                deadline = time.monotonic() + STARTUP_TIMEOUT
                while missing := client.missing():
                    live.update(screen(teaching, header, source, missing), refresh=True)
                    problem = launch.problem() if launch else None
                    if problem:
                        raise TeachError(problem)
                    if time.monotonic() > deadline:
                        raise TeachError(f"{missing[0]} after {STARTUP_TIMEOUT:.0f} s"
                                         + (f"; the launch's output is in {launch.log}" if launch else ""))
                    read(POLL)
                request = teaching.start()
                if request is not None:
                    pending = client.submit(request)
                while teaching.stage is not Stage.DONE:
                    live.update(screen(teaching, header, source), refresh=True)
                    if pending is not None and pending.done():
                        teaching.reply(pending.result())
                        pending = None
                        continue
                    request = teaching.press(read(POLL))
                    if request is not None:
                        pending = client.submit(request)
            except Interrupted:
                interrupted = True
                try:
                    if pending is not None and isinstance(teaching.pending, (StartEpisode, StopEpisode)):
                        teaching.reply(pending.result(REPLY_TIMEOUT * 2))
                    request = teaching.interrupt()
                    if request is not None:
                        teaching.reply(client.submit(request).result(REPLY_TIMEOUT * 2))
                except TimeoutError:
                    teaching.notice = "the demo recorder did not answer; an open episode may be left in its folder"
                raise
            finally:
                live.update(screen(teaching, header, source), refresh=True)
    finally:
        client.close()
        for table in tables(teaching) if teaching.kept or teaching.tests else []:
            console.print(table)
        if teaching.model:
            console.print(f"adapted model: {teaching.model}")
        if interrupted:
            console.print(teaching.notice)


def add_commands(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("teach", help="teach an arm by demonstration, adapt and test, in one terminal (ROS 2)",
                       description="Start the few-shot adaptation launch and teach the arm: record K "
                       "demonstrations of the targets shown, keep or discard each, adapt, then send test targets and "
                       "see how close the arm gets. Keys are listed on the screen; Ctrl-C discards an unfinished "
                       "demonstration and stops the launch.")
    t.add_argument("arguments", nargs="*", metavar="NAME:=VALUE",
                   help="arguments of the few-shot adaptation launch (robot, population_file, sim, preset, "
                        "checkpoint, model, recordings_dir, k)")
    t.add_argument("--seed", type=int, default=0, help="seed of the workspace targets shown")
    t.add_argument("--launch-file", type=Path, default=None, help=f"launch file to run (default: the package's "
                                                                   f"{LAUNCH_FILE})")
    t.add_argument("--no-launch", action="store_true",
                   help="use nodes started elsewhere (give the launch arguments they were started with)")
    t.set_defaults(func=lambda a: teach(a.launch_file, a.arguments, a.seed, not a.no_launch))
