"""Node parameters declared from one table of ``name: (default, description[, read_only])``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node


def declare_parameters(node: Node, table: Mapping[str, tuple]) -> dict[str, Any]:
    """Declare every parameter of ``table`` on ``node`` with its description (read-only unless the table says
    otherwise; a default may be a ``Parameter.Type`` for a parameter unset by default); return their values."""
    values = {}
    for name, (default, description, *read_only) in table.items():
        descriptor = ParameterDescriptor(description=description, read_only=read_only[0] if read_only else True)
        values[name] = node.declare_parameter(name, default, descriptor).value
    return values
