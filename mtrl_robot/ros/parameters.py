"""Node parameters declared from one table of ``name: (default, description[, read_only][, Range, OneOf or
TopicName])``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import NameValidationException
from rclpy.node import Node
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


def declare_parameters(node: Node, table: Mapping[str, tuple]) -> dict[str, Any]:
    """Declare every parameter of ``table`` on ``node`` with its description (read-only unless the table says
    otherwise; a default may be a ``Parameter.Type`` for a parameter unset by default) and its range, choices or
    name check; return their values."""
    values = {}
    for name, (default, description, *options) in table.items():
        read_only = next((o for o in options if isinstance(o, bool)), True)
        descriptor = ParameterDescriptor(description=description, read_only=read_only)
        bounds = next((o for o in options if isinstance(o, Range)), None)
        if bounds is not None:
            if isinstance(default, int) and not isinstance(default, bool):
                descriptor.integer_range = [IntegerRange(from_value=int(bounds.low), to_value=int(bounds.high))]
            else:
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(bounds.low),
                                                                      to_value=float(bounds.high))]
        values[name] = node.declare_parameter(name, default, descriptor).value
        choices = next((o for o in options if isinstance(o, OneOf)), None)
        if choices is not None and values[name] not in choices.values:
            raise ConfigError(None, name, f"expected one of {', '.join(choices.values)}, got {values[name]!r}")
        if any(isinstance(o, TopicName) for o in options):
            try:
                validate_topic_name(values[name])
            except NameValidationException as exc:  # its message spans lines, pointing at the character with ^
                reason = str(exc).splitlines()[0].split(": ", 1)[-1].rstrip(":")
                raise ConfigError(None, name, f"{values[name]!r} is not a valid ROS topic name: {reason}") from None
    return values
