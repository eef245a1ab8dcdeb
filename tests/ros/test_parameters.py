"""Node parameters declared from a table: types and ranges checked by rclpy at declaration, choices and topic names
by the table, unknown names refused; each node stopped in one line by a bad value in its parameter file."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import rclpy
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter

from mtrl_robot.core.errors import ConfigError
from mtrl_robot.ros.parameter_files import NODES, parameter_file
from mtrl_robot.ros.parameters import OneOf, Range, TopicName, declare_parameters, parameter_specs
from mtrl_robot.ros.run import node_command

STARTUP_TIMEOUT = 60.0  # s for a node process to start and refuse its parameters (on a loaded machine)
TABLE = {
    "rate": (250.0, "Hz", Range(1.0, 10_000.0)),
    "k": (5, "episodes", Range(1, 100)),
    "engine": ("mujoco", "physics engine", OneOf(("mujoco", "pybullet"))),
    "gain": (1.0, "changeable at run time", False),
    "offset": (Parameter.Type.DOUBLE, "unset by default"),
}


@pytest.fixture
def context(ros_env) -> Iterator[Context]:
    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


def declared(context: Context, **overrides: object) -> dict[str, object]:
    node = Node("parameters_test", context=context,
                parameter_overrides=[Parameter(name, value=value) for name, value in overrides.items()])
    try:
        return declare_parameters(node, TABLE)
    finally:
        node.destroy_node()


def test_values_within_range_and_choices_are_declared_with_their_descriptors(context):
    assert declared(context) == {"rate": 250.0, "k": 5, "engine": "mujoco", "gain": 1.0, "offset": None}
    assert declared(context, rate=1.0, k=100, engine="pybullet", offset=-0.5)["offset"] == -0.5  # edges included
    node = Node("descriptors_test", context=context)
    declare_parameters(node, TABLE)
    rate, k, gain = (node.describe_parameter(n) for n in ("rate", "k", "gain"))
    assert (rate.floating_point_range[0].from_value, rate.floating_point_range[0].to_value) == (1.0, 10_000.0)
    assert (k.integer_range[0].from_value, k.integer_range[0].to_value) == (1, 100)
    assert rate.read_only and not gain.read_only and rate.description == "Hz"
    node.destroy_node()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"rate": 0.0}, "parameter rate: 0.0 is out of range [1, 10000]"),
    ({"rate": 1e9}, "parameter rate: 1000000000.0 is out of range [1, 10000]"),
    ({"rate": float("nan")}, "parameter rate: nan is out of range [1, 10000]"),
    ({"rate": float("inf")}, "parameter rate: inf is out of range [1, 10000]"),
    ({"k": 0}, "parameter k: 0 is out of range [1, 100]"),
    ({"rate": 1000}, "parameter rate: expected a double, got an integer 1000 (write 1000.0)"),
    ({"k": 2.5}, "parameter k: expected an integer, got a double 2.5"),
    ({"engine": True}, "parameter engine: expected a string, got a bool True"),
    ({"offset": "left"}, "parameter offset: expected a double, got a string 'left'"),
    ({"gian": 2.0}, "parameter gian: not a parameter of parameters_test (did you mean 'gain'?)"),
    ({"zzz": 2.0}, "parameter zzz: not a parameter of parameters_test (parameters_test's parameters: rate, k, "),
])
def test_values_of_the_wrong_type_out_of_range_or_unknown_are_refused_at_declaration(context, overrides, message):
    with pytest.raises(ConfigError) as caught:
        declared(context, **overrides)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_value_outside_the_choices_is_refused_naming_the_parameter(context):
    with pytest.raises(ConfigError, match="parameter engine: expected one of mujoco, pybullet, got 'bullet'"):
        declared(context, engine="bullet")


@pytest.mark.parametrize("name", ["bad name!", "1st", "", "arm/"])
def test_a_topic_name_parameter_is_checked_with_rclpys_validation(context, name):
    node = Node("topic_name_test", context=context, parameter_overrides=[Parameter("controller", value=name)])
    try:
        with pytest.raises(ConfigError, match=f"parameter controller: '{name}' is not a valid ROS topic name: ") \
                as caught:
            declare_parameters(node, {"controller": ("joint_trajectory_controller", "prefix", TopicName())})
    finally:
        node.destroy_node()
    assert "\n" not in str(caught.value)
    valid = Node("topic_name_valid", context=context, parameter_overrides=[Parameter("controller", value="~/arm_1")])
    assert declare_parameters(valid, {"controller": ("c", "prefix", TopicName())}) == {"controller": "~/arm_1"}
    valid.destroy_node()


def run_node(ros_env: dict[str, str], module: str, parameters: dict[str, object] | None = None,
             files: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    command = node_command(module, parameters, "/parameters_bad")
    for path in files:
        command += ["--params-file", path]
    return subprocess.run(command, env=ros_env, capture_output=True, text=True, timeout=STARTUP_TIMEOUT)


def assert_refused_in_one_line(done: subprocess.CompletedProcess, message: str) -> None:
    assert done.returncode == 1, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize(("module", "parameters", "message"), [
    ("arm_node", {"joint_states_rate": 0.0}, "arm_node: parameter joint_states_rate: 0.0 is out of range"),
    ("arm_node", {"controller_name": "bad name!"},
     "arm_node: parameter controller_name: 'bad name!' is not a valid ROS topic name: "),
    ("arm_node", {"backend": "gazebo"}, "arm_node: parameter backend: expected one of mujoco, pybullet, got 'gazebo'"),
    ("arm_node", {"joint_states_rate": 1000}, "arm_node: parameter joint_states_rate: expected a double, got an "
                                              "integer 1000 (write 1000.0)"),
    ("adaptation_node", {"k": 0}, "adaptation_node: parameter k: 0 is out of range [1, 10000]"),
])
def test_nodes_refuse_parameters_out_of_range_in_one_line(ros_env, module, parameters, message):
    assert_refused_in_one_line(run_node(ros_env, module, parameters), message)


BAD_FILES = {  # node: (line of its parameter file, the line replacing it, what the node says)
    "arm_node": ("    joint_states_rate: 250.0", "    joint_states_rate: 1000",
                 "parameter joint_states_rate: expected a double, got an integer 1000 (write 1000.0)"),
    "policy_node": ('    model: ""', '    model: ""\n    modle: "reach.model.pt"',
                    "parameter modle: not a parameter of policy_node (did you mean 'model'?)"),
    "adaptation_node": ("    k: 5", "    k: 0", "parameter k: 0 is out of range [1, 10000]"),
    "demo_recorder": ('    joint_states_topic: "/joint_states"', '    joint_states_topic: "/joint states"',
                      "parameter joint_states_topic: '/joint states' is not a valid ROS topic name: "),
    "perception_node": ("    # camera_xyz:", '    camera_xyz: "above the table"',
                        "parameter camera_xyz: expected a double array, got a string 'above the table'"),
    "puck_node": ('    policy: "meta"', '    policy: "metaa"',
                  "parameter policy: expected one of meta, baseline, got 'metaa'"),
    "training_node": ('    task: "reaching"', '    task: "walking"',
                      "parameter task: expected one of reaching, puck, got 'walking'"),
    "hil_suite": ("    sim: true", '    sim: "yes"', "parameter sim: expected a bool"),
}


def test_every_node_has_a_bad_file_case():
    assert set(BAD_FILES) == set(NODES)


@pytest.mark.parametrize("module", sorted(BAD_FILES))
def test_each_node_stops_in_one_line_on_a_bad_value_in_its_parameter_file(ros_env, tmp_path, module):
    line, bad, message = BAD_FILES[module]
    text = parameter_file(module).read_text()
    assert text.count(f"{line}\n") == 1
    path = tmp_path / f"{module}.yaml"
    path.write_text(text.replace(f"{line}\n", f"{bad}\n"))
    assert_refused_in_one_line(run_node(ros_env, module, files=(str(path),)), f"{module}: {message}")


def test_a_parameter_file_that_is_not_yaml_stops_the_node_naming_the_file(ros_env, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("/**/arm_node:\n  ros__parameters:\n    seed: [1\n")
    assert_refused_in_one_line(run_node(ros_env, "arm_node", files=(str(path),)),
                               f"arm_node: {path}: line 4: not YAML: ")
    assert_refused_in_one_line(run_node(ros_env, "arm_node", files=(str(tmp_path / "none.yaml"),)),
                               f"arm_node: {tmp_path / 'none.yaml'}: cannot read the parameter file: ")


@pytest.mark.parametrize("module", NODES)
def test_each_nodes_parameter_file_gives_its_defaults_through_rcl(ros_env, module):
    import importlib

    table = importlib.import_module(f"mtrl_robot.ros.{module}").PARAMETERS
    context = Context()
    rclpy.init(context=context, args=["--ros-args", "-r", "__ns:=/robot1", "--params-file",
                                      str(parameter_file(module))])
    node = Node(module, context=context)
    try:
        assert declare_parameters(node, table) == {s.name: s.default if s.is_set else None
                                                   for s in parameter_specs(table)}
        assert len(node._parameter_overrides) == sum(s.is_set for s in parameter_specs(table))  # the file applied
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)
