"""Node parameters declared from a table: ranges checked by rclpy at declaration, choices by the table."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import rclpy
from rclpy.context import Context
from rclpy.exceptions import InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from mtrl_robot.core.errors import ConfigError
from mtrl_robot.ros.parameters import OneOf, Range, TopicName, declare_parameters
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
    ({"rate": 0.0}, "Parameter rate out of range"),
    ({"rate": 1e9}, "Parameter rate out of range"),
    ({"rate": float("nan")}, "Parameter rate out of range"),
    ({"rate": float("inf")}, "Parameter rate out of range"),
    ({"k": 0}, "Parameter k out of range"),
])
def test_values_out_of_range_are_refused_at_declaration(context, overrides, message):
    with pytest.raises(InvalidParameterValueException, match=message) as caught:
        declared(context, **overrides)
    assert "\n" not in str(caught.value)


def test_a_value_outside_the_choices_is_refused_naming_the_parameter(context):
    with pytest.raises(ConfigError, match="engine: expected one of mujoco, pybullet, got 'bullet'"):
        declared(context, engine="bullet")


@pytest.mark.parametrize("name", ["bad name!", "1st", "", "arm/"])
def test_a_topic_name_parameter_is_checked_with_rclpys_validation(context, name):
    node = Node("topic_name_test", context=context, parameter_overrides=[Parameter("controller", value=name)])
    try:
        with pytest.raises(ConfigError, match=f"controller: '{name}' is not a valid ROS topic name: ") as caught:
            declare_parameters(node, {"controller": ("joint_trajectory_controller", "prefix", TopicName())})
    finally:
        node.destroy_node()
    assert "\n" not in str(caught.value)
    valid = Node("topic_name_valid", context=context, parameter_overrides=[Parameter("controller", value="~/arm_1")])
    assert declare_parameters(valid, {"controller": ("c", "prefix", TopicName())}) == {"controller": "~/arm_1"}
    valid.destroy_node()


@pytest.mark.parametrize(("module", "parameters", "message"), [
    ("arm_node", {"joint_states_rate": 0.0}, "Parameter joint_states_rate out of range"),
    ("arm_node", {"controller_name": "bad name!"}, "controller_name: 'bad name!' is not a valid ROS topic name: "),
    ("arm_node", {"backend": "gazebo"}, "backend: expected one of mujoco, pybullet, got 'gazebo'"),
    ("adaptation_node", {"k": 0}, "Parameter k out of range"),
])
def test_nodes_refuse_parameters_out_of_range_in_one_line(ros_env, module, parameters, message):
    done = subprocess.run(node_command(module, parameters, "/parameters_bad"), env=ros_env, capture_output=True,
                          text=True, timeout=STARTUP_TIMEOUT)
    assert done.returncode == 1, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
