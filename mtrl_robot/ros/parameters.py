"""Node parameters declared from one table of ``name: (default, description[, read_only][, Range, OneOf or
TopicName])`` and validated as they are declared: a value of the wrong type, out of range, outside the choices,
not a topic name, or a name the table does not have (on the command line or in a parameter file) stops the node
with one line naming the parameter."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, NamedTuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException, NameValidationException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.validate_topic_name import validate_topic_name

from mtrl_robot.core.errors import ConfigError


class Range(NamedTuple):
    """Inclusive bounds of a number parameter with a default; rclpy refuses a value outside them (and NaN) at
    declaration."""

    low: float
    high: float


class OneOf(NamedTuple):
    """The values a string parameter may take."""

    values: tuple[str, ...]


class TopicName(NamedTuple):
    """A string parameter that names a topic (or the prefix of topics): checked with rclpy's name validation."""


class ParameterSpec(NamedTuple):
    """One row of a parameter table."""

    name: str
    default: Any  # the value, or a Parameter.Type for a parameter unset by default
    description: str
    read_only: bool = True  # False: may be changed while the node runs
    bounds: Range | None = None
    choices: OneOf | None = None
    topic_name: bool = False

    @property
    def type(self) -> Parameter.Type:
        if isinstance(self.default, Parameter.Type):
            return self.default
        return Parameter.Type.from_parameter_value(self.default)

    @property
    def is_set(self) -> bool:
        """Whether the parameter has a value by default."""
        return not isinstance(self.default, Parameter.Type)


def parameter_specs(table: Mapping[str, tuple]) -> list[ParameterSpec]:
    """The rows of ``table`` in order (read-only unless a row says otherwise)."""
    specs = []
    for name, (default, description, *options) in table.items():
        specs.append(ParameterSpec(
            name, default, description, read_only=next((o for o in options if isinstance(o, bool)), True),
            bounds=next((o for o in options if isinstance(o, Range)), None),
            choices=next((o for o in options if isinstance(o, OneOf)), None),
            topic_name=any(isinstance(o, TopicName) for o in options)))
    return specs


TYPE_NAMES = {Parameter.Type.BOOL: "a bool", Parameter.Type.INTEGER: "an integer", Parameter.Type.DOUBLE: "a double",
              Parameter.Type.STRING: "a string", Parameter.Type.BYTE_ARRAY: "a byte array",
              Parameter.Type.BOOL_ARRAY: "a bool array", Parameter.Type.INTEGER_ARRAY: "an integer array",
              Parameter.Type.DOUBLE_ARRAY: "a double array", Parameter.Type.STRING_ARRAY: "a string array"}


def _descriptor(spec: ParameterSpec) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.bounds is not None:
        low, high = spec.bounds
        if spec.type is Parameter.Type.INTEGER:
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high))]
        else:
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high))]
    return descriptor


def _given(node: Node) -> dict[str, Parameter]:
    """The values given to ``node`` on its command line and in its parameter files (rclpy keeps them in
    ``Node._parameter_overrides`` and offers no public accessor)."""
    return node._parameter_overrides


def _wrong_type(spec: ParameterSpec, value: object) -> ConfigError:
    given = Parameter.Type.from_parameter_value(value)
    integer_for_double = spec.type is Parameter.Type.DOUBLE and given is Parameter.Type.INTEGER
    hint = f" (write {float(value)!r})" if integer_for_double else ""
    return ConfigError(f"parameter {spec.name}", None,
                       f"expected {TYPE_NAMES[spec.type]}, got {TYPE_NAMES.get(given, given.name)} {value!r}{hint}")


def _check_value(spec: ParameterSpec, value: Any) -> None:
    """The checks rclpy does not make: choices and topic names."""
    if spec.choices is not None and value not in spec.choices.values:
        raise ConfigError(f"parameter {spec.name}", None,
                          f"expected one of {', '.join(spec.choices.values)}, got {value!r}")
    if spec.topic_name:
        try:
            validate_topic_name(value)
        except NameValidationException as exc:  # its message spans lines, pointing at the character with ^
            reason = str(exc).splitlines()[0].split(": ", 1)[-1].rstrip(":")
            raise ConfigError(f"parameter {spec.name}", None,
                              f"{value!r} is not a valid ROS topic name: {reason}") from None


def declare_parameters(node: Node, table: Mapping[str, tuple]) -> dict[str, Any]:
    """Declare every parameter of ``table`` on ``node`` with its description, read-only flag and range; check the
    values given against types, ranges, choices and topic names, and refuse names the node does not declare;
    return the values (None for a parameter unset by default and not given)."""
    given = _given(node)
    values = {}
    for spec in parameter_specs(table):
        try:
            values[spec.name] = node.declare_parameter(spec.name, spec.default, _descriptor(spec)).value
        except InvalidParameterTypeException:
            raise _wrong_type(spec, given[spec.name].value) from None
        except InvalidParameterValueException:
            low, high = (f"{v:g}" if isinstance(v, float) else str(v) for v in spec.bounds)
            raise ConfigError(f"parameter {spec.name}", None,
                              f"{given[spec.name].value!r} is out of range [{low}, {high}]") from None
        _check_value(spec, values[spec.name])
    unknown = sorted(name for name in given if not node.has_parameter(name))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(table), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"{node.get_name()}'s parameters: {', '.join(table)}"
        raise ConfigError(f"parameter {unknown[0]}", None, f"not a parameter of {node.get_name()} ({hint})")
    return values
