"""Running a node: its command line as a process, and its loop until SIGINT or SIGTERM (exit code 0, 1 on a
configuration error)."""

from __future__ import annotations

import gc
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TypeVar

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import Executor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from mtrl_robot.core.errors import ConfigError
from mtrl_robot.ros.parameter_files import check_params_files

CONFIGURATION_ERRORS = (KeyError, ValueError, ParameterException)  # ConfigError and CheckpointError included
N = TypeVar("N", bound=Node)


def ros_arguments(parameters: Mapping[str, object] | None = None, namespace: str = "") -> list[str]:
    """``--ros-args`` setting ``parameters`` (``-p name:=value``) and ``namespace`` on a node's command line."""
    args = ["--ros-args"]
    if namespace:
        args += ["-r", f"__ns:={namespace}"]
    for name, value in (parameters or {}).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        args += ["-p", f"{name}:={text}"]
    return args


def node_command(module: str, parameters: Mapping[str, object] | None = None, namespace: str = "") -> list[str]:
    """The command line that runs ``mtrl_robot.ros.<module>`` with ROS ``parameters`` in ``namespace``."""
    return [sys.executable, "-m", f"mtrl_robot.ros.{module}", *ros_arguments(parameters, namespace)]


def freeze_heap() -> None:
    """Move every object alive now out of the cyclic garbage collector's reach (``gc.freeze``): a node's start-up
    heap (rclpy, numpy, torch: a few hundred thousand objects) would otherwise be traversed by every full
    collection, a pause of tens of milliseconds in whatever callback triggers it. Reference counting still frees
    these objects; only cycles among them are never collected."""
    gc.freeze()


def run_node(name: str, make_node: Callable[[], N], make_executor: Callable[[], Executor],
             args: list[str] | None = None, before_shutdown: Callable[[N, Executor], None] | None = None) -> int:
    """Spin the node until a signal, then ``before_shutdown(node, executor)``; a configuration error (a bad
    parameter file or value included) returns 1 after one line on stderr."""
    try:
        check_params_files(sys.argv if args is None else args)
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except _rclpy.RCLError as exc:  # rcl refused the command line: "failed to initialize rcl: <why>, at <source>"
        print(f"{name}: {str(exc).split(', at ')[0]}", file=sys.stderr)
        return 1
    executor = make_executor()  # executors need an initialized context
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    node = None
    try:
        node = make_node()
        executor.add_node(node)
        freeze_heap()
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.1)
        if before_shutdown is not None:
            before_shutdown(node, executor)
    except CONFIGURATION_ERRORS as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    finally:
        executor.shutdown(timeout_sec=5.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
