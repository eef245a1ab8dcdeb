"""The nodes' parameter files: generated from their tables (the committed files must match), and the check of a
parameter file a node is started with."""

from __future__ import annotations

import pytest
import yaml
from rclpy.parameter import Parameter

from mtrl_robot.cli.main import main
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.ros.parameter_files import NODES, check_params_files, parameter_file, render, stale_files
from mtrl_robot.ros.parameters import OneOf, Range, TopicName, parameter_specs

TABLE = {
    "rate": (250.0, "Rate in Hz", Range(1.0, 10_000.0)),
    "engine": ("mujoco", "Physics engine", OneOf(("mujoco", "pybullet"))),
    "topic": ("/joint_states", "Input", TopicName()),
    "gain": (2, "Changeable", False, Range(0, 10)),
    "empty": ("", "Nothing by default"),
    "flag": (False, "A switch"),
    "offset": (Parameter.Type.DOUBLE_ARRAY, "Unset by default"),
}


def test_committed_parameter_files_match_the_node_tables():
    assert stale_files() == [], "run: mtrl-robot ros params --write"
    assert main(["ros", "params"]) == 0


def test_every_node_file_holds_its_table_defaults_under_its_name():
    import importlib

    for node in NODES:
        table = importlib.import_module(f"mtrl_robot.ros.{node}").PARAMETERS
        data = yaml.safe_load(parameter_file(node).read_text())
        assert list(data) == [f"/**/{node}"]
        expected = {s.name: s.default for s in parameter_specs(table) if s.is_set}
        assert data[f"/**/{node}"]["ros__parameters"] == expected


def test_a_rendered_file_documents_type_range_choices_and_read_only():
    text = render("test_node", "A node for tests.", TABLE)
    lines = text.splitlines()
    assert lines[0].startswith("# test_node: A node for tests.")
    comment = {lines[k + 1].strip(" #:").split(":")[0]: lines[k] for k in range(len(lines) - 1)
               if lines[k].lstrip().startswith("# (")}
    assert comment["rate"] == "    # (double in [1, 10000]; read-only) Rate in Hz"
    assert comment["engine"] == "    # (string, one of mujoco, pybullet; read-only) Physics engine"
    assert comment["topic"] == "    # (string, a topic name; read-only) Input"
    assert comment["gain"] == "    # (integer in [0, 10]; can change while the node runs) Changeable"
    assert comment["offset"] == "    # (double array, unset by default; read-only) Unset by default"
    assert "    # offset:" in lines
    values = yaml.safe_load(text)["/**/test_node"]["ros__parameters"]
    assert values == {"rate": 250.0, "engine": "mujoco", "topic": "/joint_states", "gain": 2, "empty": "",
                      "flag": False}
    assert isinstance(values["rate"], float) and isinstance(values["gain"], int)


@pytest.mark.parametrize(("text", "message"), [
    ("arm_node:\n  ros__parameters:\n    k: [1\n", r"bad.yaml: line 4: not YAML: "),
    ("- 1\n- 2\n", r"bad.yaml: expected node names, each with ros__parameters"),
    ("", r"bad.yaml: expected node names, each with ros__parameters"),
    ("arm_node:\n  k: 3\n", r"bad.yaml: arm_node: 'k' is not under ros__parameters"),
    ("arm_node:\n  ros__parameters:\n    k:\n", r"bad.yaml: arm_node: k: no value"),
    ("arm_node:\n  ros__parameters:\n    k: 1\n  other: 2\n", r"bad.yaml: arm_node: expected only ros__parameters"),
])
def test_a_malformed_parameter_file_is_refused_naming_it(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        check_params_files(["node", "--ros-args", "--params-file", str(path)])
    assert "\n" not in str(caught.value)


def test_missing_file_refused_and_well_formed_files_pass(tmp_path):
    with pytest.raises(ConfigError, match=r"missing.yaml: cannot read the parameter file: No such file"):
        check_params_files(["--params-file", str(tmp_path / "missing.yaml")])
    nested = tmp_path / "nested.yaml"
    nested.write_text("robot1:\n  arm_node:\n    ros__parameters:\n      seed: 3\n")
    check_params_files(["--ros-args", "--params-file", str(parameter_file("arm_node")), "--params-file", str(nested)])
