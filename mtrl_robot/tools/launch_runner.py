"""Runs the project's ROS 2 XML launch files here, where ``launch``/``launch_ros`` cannot be installed.

The subset: ``<launch>``; ``<arg name default>``; ``<node pkg exec name namespace output args on_exit>`` with
``<param name value>``, ``<param from>``, ``<remap from to>`` and ``<env name value>``; ``<include file>`` with
``<arg name value>``; ``<group>`` (scoped); ``<set_env name value>``; ``if``/``unless`` on nodes, includes,
groups and set_env; substitutions ``$(var NAME)`` and ``$(find-pkg-share PKG)``. Anything else is an error
naming the file and line. On a full ROS 2 install ``ros2 launch`` runs the same files.

Every node runs in its own process group. Ctrl-C or SIGTERM stops them all: SIGINT, then SIGTERM, then
SIGKILL after timeouts. When a node marked ``on_exit="shutdown"`` (ROS 1's ``required``) ends, the others are
stopped and the exit code is that node's exit status (128 + the signal number if a signal ended it); after Ctrl-C
or SIGTERM too, a launch with such a node ends with that node's status (a run interrupted by SIGINT: 130).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.paths import data_dir

PACKAGE = "mtrl_robot"
_SUBSTITUTION = re.compile(r"\$\(([^()]*)\)")
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_CONTAINERS = {"arg", "node", "include", "group", "set_env"}  # what <launch> and <group> may hold
_ATTRIBUTES = {
    "launch": {"version"},
    "arg": {"name", "default", "description"},
    "node": {"pkg", "exec", "name", "namespace", "output", "args", "on_exit", "if", "unless"},
    "param": {"name", "value", "from"},
    "remap": {"from", "to"},
    "env": {"name", "value"},
    "include": {"file", "if", "unless"},
    "include/arg": {"name", "value"},
    "group": {"if", "unless"},
    "set_env": {"name", "value", "if", "unless"},
}


@dataclass(frozen=True)
class NodeSpec:
    """One ``<node>``: what to run and with which ROS arguments."""

    package: str
    executable: str
    name: str | None = None
    namespace: str | None = None
    parameters: tuple[tuple[str, str], ...] = ()  # -p name:=value (YAML-typed by rcl), after the files
    param_files: tuple[str, ...] = ()
    remaps: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # set on top of the runner's environment
    arguments: tuple[str, ...] = ()
    output: str = "log"  # "screen": the runner's terminal; "log": a file under ROS_LOG_DIR
    required: bool = False
    origin: str = ""  # file:line of the <node> tag

    @property
    def label(self) -> str:
        return self.name or self.executable

    def ros_arguments(self) -> list[str]:
        args = ["--ros-args"]
        if self.name:
            args += ["-r", f"__node:={self.name}"]
        if self.namespace:
            args += ["-r", f"__ns:={self.namespace}"]
        for path in self.param_files:
            args += ["--params-file", path]
        for name, value in self.parameters:
            args += ["-p", f"{name}:={value if value != '' else repr('')}"]  # rcl refuses an empty override
        for source, target in self.remaps:
            args += ["-r", f"{source}:={target}"]
        return args


@dataclass
class _Element:
    tag: str
    attrs: dict[str, str]
    line: int
    children: list[_Element] = field(default_factory=list)


@dataclass
class _Scope:
    variables: dict[str, str]
    env: dict[str, str]

    def child(self) -> _Scope:
        return _Scope(dict(self.variables), dict(self.env))


def _read_xml(path: Path) -> _Element:
    """Parse with expat, keeping each element's line number."""
    if not path.is_file():
        raise ConfigError(path, None, "launch file not found")
    parser = expat.ParserCreate()
    stack: list[_Element] = []
    roots: list[_Element] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        element = _Element(tag, attrs, parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(element)
        stack.append(element)

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda tag: stack.pop()
    try:
        parser.Parse(path.read_bytes(), True)
    except expat.ExpatError as exc:
        raise ConfigError(f"{path}:{exc.lineno}", None, f"malformed XML: {exc}") from None
    if roots[0].tag != "launch":
        raise ConfigError(f"{path}:{roots[0].line}", f"<{roots[0].tag}>", "the root element must be <launch>")
    return roots[0]


def find_package_share(package: str) -> Path:
    """A package's share folder: ours beside the sources or installed, others from the ament index."""
    if package == PACKAGE:
        return data_dir("config").parent
    prefixes = [sys.prefix, *os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)]
    for prefix in filter(None, prefixes):
        if (Path(prefix) / "share" / "ament_index" / "resource_index" / "packages" / package).is_file():
            return Path(prefix) / "share" / package
    raise FileNotFoundError(f"package '{package}' not found in the ament index of {', '.join(filter(None, prefixes))}")


class _Parser:
    """Walks launch files, collecting nodes; ``given`` are the caller's ``name:=value`` arguments."""

    def __init__(self, given: Mapping[str, str]):
        self.given = dict(given)
        self.declared: set[str] = set()
        self.nodes: list[NodeSpec] = []
        self.files: list[Path] = []

    def error(self, path: Path, element: _Element, problem: str) -> ConfigError:
        return ConfigError(f"{path}:{element.line}", f"<{element.tag}>", problem)

    def launch_file(self, path: Path, scope: _Scope) -> None:
        path = path.resolve()
        if path in self.files:
            raise ConfigError(path, None, f"includes itself (through {' → '.join(map(str, self.files))})")
        self.files.append(path)
        root = _read_xml(path)
        self.check_attributes(path, root, "launch")
        self.actions(path, root, scope)
        self.files.pop()

    def check_attributes(self, path: Path, element: _Element, kind: str) -> None:
        unknown = sorted(set(element.attrs) - _ATTRIBUTES[kind])
        if unknown:
            raise self.error(path, element, f"unknown attribute '{unknown[0]}' "
                                            f"(supported: {', '.join(sorted(_ATTRIBUTES[kind]))})")

    def require(self, path: Path, element: _Element, *names: str) -> None:
        for name in names:
            if name not in element.attrs:
                raise self.error(path, element, f"attribute '{name}' is required")

    def only_children(self, path: Path, element: _Element, allowed: set[str]) -> None:
        for child in element.children:
            if child.tag not in allowed:
                supported = ", ".join(sorted(allowed)) or "none"
                raise self.error(path, child, f"unsupported tag inside <{element.tag}> (supported: {supported})")

    def substitute(self, path: Path, element: _Element, text: str, scope: _Scope) -> str:
        leftover = _SUBSTITUTION.sub("", text)
        if "$(" in leftover:
            raise self.error(path, element, f"unterminated or nested substitution in '{text}'")

        def one(match: re.Match) -> str:
            words = match.group(1).split()
            if len(words) == 2 and words[0] == "var":
                if words[1] not in scope.variables:
                    raise self.error(path, element, f"$(var {words[1]}): no such argument "
                                                    f"(known: {', '.join(sorted(scope.variables)) or 'none'})")
                return scope.variables[words[1]]
            if len(words) == 2 and words[0] == "find-pkg-share":
                try:
                    return str(find_package_share(words[1]))
                except FileNotFoundError as exc:
                    raise self.error(path, element, str(exc)) from None
            raise self.error(path, element, f"unsupported substitution '{match.group(0)}' "
                                            "(supported: $(var NAME), $(find-pkg-share PKG))")

        return _SUBSTITUTION.sub(one, text)

    def attr(self, path: Path, element: _Element, name: str, scope: _Scope, default: str | None = None) -> str | None:
        value = element.attrs.get(name)
        return default if value is None else self.substitute(path, element, value, scope)

    def enabled(self, path: Path, element: _Element, scope: _Scope) -> bool:
        for name, wanted in (("if", True), ("unless", False)):
            if name in element.attrs:
                value = self.attr(path, element, name, scope).strip().lower()
                if value not in ("true", "false", "1", "0"):
                    raise self.error(path, element, f"{name}=\"{element.attrs[name]}\" is '{value}', "
                                                    "not true or false")
                if (value in ("true", "1")) != wanted:
                    return False
        return True

    def actions(self, path: Path, parent: _Element, scope: _Scope) -> None:
        self.only_children(path, parent, _CONTAINERS)
        for element in parent.children:
            self.check_attributes(path, element, element.tag)
            if self.enabled(path, element, scope):
                getattr(self, f"on_{element.tag}")(path, element, scope)

    def on_arg(self, path: Path, element: _Element, scope: _Scope) -> None:
        self.require(path, element, "name")
        self.only_children(path, element, set())
        name = element.attrs["name"]
        self.declared.add(name)
        if name in scope.variables:
            return
        default = self.attr(path, element, "default", scope)
        if default is None:
            raise self.error(path, element, f"argument '{name}' has no default: pass {name}:=VALUE")
        scope.variables[name] = default

    def on_set_env(self, path: Path, element: _Element, scope: _Scope) -> None:
        self.require(path, element, "name", "value")
        self.only_children(path, element, set())
        scope.env[self.attr(path, element, "name", scope)] = self.attr(path, element, "value", scope)

    def on_group(self, path: Path, element: _Element, scope: _Scope) -> None:
        self.actions(path, element, scope.child())

    def on_include(self, path: Path, element: _Element, scope: _Scope) -> None:
        self.require(path, element, "file")
        self.only_children(path, element, {"arg"})
        inner = scope.child()
        for arg in element.children:
            self.check_attributes(path, arg, "include/arg")
            self.require(path, arg, "name", "value")
            self.only_children(path, arg, set())
            inner.variables[arg.attrs["name"]] = self.attr(path, arg, "value", scope)
        target = Path(self.attr(path, element, "file", scope))
        target = target if target.is_absolute() else path.parent / target
        if target.suffix != ".xml":
            raise self.error(path, element, f"'{target}': only XML launch files can be run here")
        if not target.is_file():
            raise self.error(path, element, f"included file '{target}' not found")
        self.launch_file(target, inner)

    def on_node(self, path: Path, element: _Element, scope: _Scope) -> None:
        self.require(path, element, "pkg", "exec")
        self.only_children(path, element, {"param", "remap", "env"})
        output = self.attr(path, element, "output", scope, "log")
        if output not in ("screen", "log"):
            raise self.error(path, element, f"output=\"{output}\" is not supported (screen or log)")
        on_exit = self.attr(path, element, "on_exit", scope)
        if on_exit not in (None, "shutdown"):
            raise self.error(path, element, f"on_exit=\"{on_exit}\" is not supported (only shutdown)")
        parameters, files, remaps, env = [], [], [], dict(scope.env)
        for child in element.children:
            self.check_attributes(path, child, child.tag)
            self.only_children(path, child, set())
            values = {name: self.attr(path, child, name, scope) for name in child.attrs}
            if child.tag == "param" and "from" in values:
                if {"name", "value"} & set(values):
                    raise self.error(path, child, "give either from=FILE or name and value, not both")
                if not Path(values["from"]).is_file():
                    raise self.error(path, child, f"parameter file '{values['from']}' not found")
                files.append(values["from"])
            elif child.tag == "param":
                self.require(path, child, "name", "value")
                parameters.append((values["name"], values["value"]))
            elif child.tag == "remap":
                self.require(path, child, "from", "to")
                remaps.append((values["from"], values["to"]))
            else:
                self.require(path, child, "name", "value")
                env[values["name"]] = values["value"]
        namespace = self.attr(path, element, "namespace", scope)
        self.nodes.append(NodeSpec(
            package=self.attr(path, element, "pkg", scope), executable=self.attr(path, element, "exec", scope),
            name=self.attr(path, element, "name", scope),
            namespace="/" + namespace.lstrip("/") if namespace else None,
            parameters=tuple(parameters), param_files=tuple(files), remaps=tuple(remaps),
            env=tuple(sorted(env.items())), arguments=tuple(shlex.split(self.attr(path, element, "args", scope, ""))),
            output=output, required=on_exit == "shutdown", origin=f"{path}:{element.line}"))


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """``["name:=value", …]`` → ``{"name": "value", …}``."""
    result = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ConfigError(None, item, "launch arguments are written NAME:=VALUE")
        result[name] = value
    return result


def parse_launch(path: str | Path, arguments: Mapping[str, str] | None = None) -> list[NodeSpec]:
    """The nodes a launch file starts, given ``arguments`` for its ``<arg>`` declarations."""
    parser = _Parser(arguments or {})
    parser.launch_file(Path(path), _Scope(dict(parser.given), {}))
    undeclared = sorted(set(parser.given) - parser.declared)
    if undeclared:
        raise ConfigError(path, None, f"argument '{undeclared[0]}' is not declared by this file or its includes "
                                      f"(declared: {', '.join(sorted(parser.declared)) or 'none'})")
    return parser.nodes


def command(node: NodeSpec) -> list[str]:
    """The command line for a node: a script found on the venv's bin, the package's lib folder or PATH,
    else ``python -m mtrl_robot.ros.<exec>`` for our own nodes."""
    prefixes = [sys.prefix, *filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep))]
    folders = [str(Path(sys.prefix) / "bin"), *(str(Path(p) / "lib" / node.package) for p in prefixes),
               os.environ.get("PATH", "")]
    found = shutil.which(node.executable, path=os.pathsep.join(folders))
    tail = [*node.arguments, *node.ros_arguments()]
    if found:
        return [found, *tail]
    module = node.executable.replace("-", "_")
    if node.package == PACKAGE and (Path(__file__).parents[1] / "ros" / f"{module}.py").is_file():
        return [sys.executable, "-m", f"{PACKAGE}.ros.{module}", *tail]
    raise ConfigError(node.origin, "<node>", f"executable '{node.executable}' of package '{node.package}' not found "
                                             f"on {os.pathsep.join(folders[:-1])} or PATH")


def die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the runner dies without stopping us (Linux)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _start(node: NodeSpec, cmd: list[str], log_dir: Path, index: int) -> subprocess.Popen:
    env = {**os.environ, **dict(node.env)}
    options = dict(env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                   preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
    if node.output == "screen":
        return subprocess.Popen(cmd, **options)
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{index:02d}-{node.label}.log", "ab") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **options)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _stop_all(procs: Sequence[subprocess.Popen], sigint_timeout: float, sigterm_timeout: float) -> None:
    """SIGINT every running group, then SIGTERM, then SIGKILL, waiting between steps."""
    for sig, timeout in ((signal.SIGINT, sigint_timeout), (signal.SIGTERM, sigterm_timeout), (signal.SIGKILL, 5.0)):
        alive = [p for p in procs if p.poll() is None]
        for process in alive:
            _signal_group(process, sig)
        deadline = time.monotonic() + timeout
        for process in alive:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass


def _say(text: str) -> None:
    print(f"[launch] {text}", file=sys.stderr, flush=True)


def run(nodes: Sequence[NodeSpec], *, sigint_timeout: float = 10.0, sigterm_timeout: float = 5.0,
        log_dir: Path | None = None, poll: float = 0.05) -> int:
    """Run ``nodes`` until Ctrl-C/SIGTERM, a required node ending, or all ending; return an exit code.

    Call from the main thread (it installs SIGINT and SIGTERM handlers for its duration).
    """
    commands = [command(n) for n in nodes]  # every executable is found before anything starts
    root = Path(os.environ.get("ROS_LOG_DIR", Path.home() / ".ros" / "log"))
    log_dir = log_dir or root / f"mtrl_launch_{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}"
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs: list[subprocess.Popen] = []
    try:
        for i, (node, cmd) in enumerate(zip(nodes, commands, strict=True)):
            procs.append(_start(node, cmd, log_dir, i))
            where = "" if node.output == "screen" else f", output in {log_dir}"
            _say(f"started {node.label} (pid {procs[-1].pid}{where}): {shlex.join(cmd)}")
        code = _supervise(nodes, procs, stop, poll)
    finally:
        _stop_all(procs, sigint_timeout, sigterm_timeout)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code is None:  # stopped on request: a required node's status is the launch's, as it ended
        required = [process for node, process in zip(nodes, procs, strict=True) if node.required]
        code = _exit_status(required[0].returncode) if required else 0
    return code


def _exit_status(returncode: int) -> int:
    """A process's exit status as a shell reports it: its code, or 128 + the signal number that ended it."""
    return returncode if returncode >= 0 else 128 - returncode


def _supervise(nodes: Sequence[NodeSpec], procs: Sequence[subprocess.Popen], stop: threading.Event,
               poll: float) -> int | None:
    """The launch's exit code once a required node or every node has ended; None when a stop was requested."""
    ended: set[int] = set()
    failed = False
    while not stop.wait(poll):
        for i, process in enumerate(procs):
            if i in ended or process.poll() is None:
                continue
            ended.add(i)
            failed |= process.returncode != 0
            _say(f"{nodes[i].label} exited with code {process.returncode}")
            if nodes[i].required:
                _say(f"{nodes[i].label} is required (on_exit=\"shutdown\"): stopping everything")
                return _exit_status(process.returncode)
        if len(ended) == len(procs):
            return int(failed)
    _say("stop requested: stopping every node")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mtrl-robot launch", description="Run a ROS 2 XML launch file.")
    parser.add_argument("file", type=Path)
    parser.add_argument("arguments", nargs="*", metavar="NAME:=VALUE")
    parser.add_argument("--print", action="store_true", help="print each node's command line and exit")
    args = parser.parse_args(argv)
    try:
        nodes = parse_launch(args.file, parse_assignments(args.arguments))
        if args.print:
            for node in nodes:
                print(shlex.join(command(node)))
            return 0
        return run(nodes)
    except (ConfigError, OSError) as exc:
        print(f"mtrl-robot launch: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
