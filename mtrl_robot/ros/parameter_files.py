"""The nodes' parameter files (``config/nodes/<node>.yaml``, ROS ``--params-file`` YAML), written from their
parameter tables, and the check of the parameter files a node is started with.

A file holds every parameter of its node at its default, under the key ``/**/<node>`` (the node in any
namespace), each with a comment giving its type, range or choices, whether it can change while the node runs,
and its meaning; a parameter unset by default is shown commented out. The tables are the one source: ``mtrl-robot
ros params --write`` rewrites the files from them, and a test fails when a file differs from what they give.
"""

from __future__ import annotations

import importlib
import json
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.paths import data_dir
from mtrl_robot.ros.parameters import TYPE_NAMES, ParameterSpec, parameter_specs

NODES = ("arm_node", "policy_node", "adaptation_node", "demo_recorder", "perception_node", "puck_node",
         "training_node", "hil_suite")  # = modules
WIDTH = 116  # characters of a comment line


def parameter_file(node: str) -> Path:
    """Where ``node``'s parameter file is (in a checkout: ``config/nodes``; installed: the package's share)."""
    return data_dir("config") / "nodes" / f"{node}.yaml"


def _value(value: object) -> str:
    """A YAML scalar or flow sequence rcl reads back as the same type (strings always quoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return f"[{', '.join(_value(v) for v in value)}]"
    return repr(value)


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _comment(spec: ParameterSpec) -> str:
    kind = TYPE_NAMES[spec.type].split(" ", 1)[1]
    if spec.bounds is not None:
        kind += f" in [{_number(spec.bounds.low)}, {_number(spec.bounds.high)}]"
    if spec.choices is not None:
        kind += f", one of {', '.join(spec.choices.values)}"
    if spec.topic_name:
        kind += ", a topic name"
    if not spec.is_set:
        kind += ", unset by default"
    kind += "; read-only" if spec.read_only else "; can change while the node runs"
    return f"({kind}) {spec.description}"


def render(node: str, summary: str, table: Mapping[str, tuple]) -> str:
    """The parameter file of ``node`` (one line ``summary`` of what it is) from its parameter ``table``."""
    about = (f"{node}: {summary} Every parameter at its default, generated from PARAMETERS in "
             f"mtrl_robot/ros/{node}.py by `mtrl-robot ros params --write` (edit the table, not this file). Start "
             f"the node with a copy holding your values: {node} --ros-args --params-file {node}.yaml [-p "
             "name:=value ...]; a value of the wrong type, out of range or not among the choices, or a name the "
             "node does not have, stops it.")
    lines = [*textwrap.wrap(about, WIDTH, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False),
             f"/**/{node}:", "  ros__parameters:"]
    for spec in parameter_specs(table):
        lines += textwrap.wrap(_comment(spec), WIDTH, initial_indent="    # ", subsequent_indent="    #   ")
        if spec.is_set:
            lines.append(f"    {spec.name}: {_value(spec.default)}")
        else:
            lines.append(f"    # {spec.name}:")
    return "\n".join(lines) + "\n"


def _summary(docstring: str) -> str:
    """The first sentence of a module docstring, without Sphinx roles."""
    first = " ".join(docstring.split("\n\n", 1)[0].split())
    return re.sub(r":\w+:`~?([^`]+)`", r"\1", first)


def rendered(node: str) -> str:
    """``node``'s parameter file as its table gives it now."""
    module = importlib.import_module(f"mtrl_robot.ros.{node}")
    return render(node, _summary(module.__doc__), module.PARAMETERS)


def stale_files() -> list[Path]:
    """The parameter files that differ from (or are missing beside) what their tables give."""
    return [parameter_file(n) for n in NODES
            if not parameter_file(n).is_file() or parameter_file(n).read_text() != rendered(n)]


def write_files() -> list[Path]:
    """Rewrite the parameter files that differ from their tables; return those written."""
    written = []
    for node in NODES:
        path, text = parameter_file(node), rendered(node)
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, text)
            written.append(path)
    return written


def check_params_files(args: Sequence[str]) -> None:
    """Refuse, naming the file, a ``--params-file`` in ``args`` that cannot be read or is not YAML mapping node
    names to their parameters (rcl would stop with a traceback); the values are checked when declared."""
    for flag, path in zip(args, args[1:], strict=False):
        if flag != "--params-file":
            continue
        try:
            data = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(path, None, f"cannot read the parameter file: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}: " if mark is not None else ""
            raise ConfigError(path, None, f"{where}not YAML: {getattr(exc, 'problem', None) or exc}") from None
        if not isinstance(data, dict) or not data:
            raise ConfigError(path, None, "expected node names, each with ros__parameters")
        _check_sections(path, data, [])


def _check_sections(path: str, data: dict, keys: list[str]) -> None:
    """Each node section (nested under namespaces or not) holds a ``ros__parameters`` mapping and nothing else."""
    for key, value in data.items():
        where = "/".join([*keys, str(key)])
        if not isinstance(value, dict):
            raise ConfigError(path, "/".join(keys) or None, f"'{key}' is not under ros__parameters (expected "
                                                            "<node>: ros__parameters: <name>: <value>)")
        if "ros__parameters" in value:
            if set(value) != {"ros__parameters"} or not isinstance(value["ros__parameters"], dict):
                raise ConfigError(path, where, "expected only ros__parameters, a mapping of names to values")
            for name, parameter in value["ros__parameters"].items():
                if parameter is None:
                    raise ConfigError(path, f"{where}: {name}", "no value (give one, or leave the line out)")
        else:
            _check_sections(path, value, [*keys, str(key)])
