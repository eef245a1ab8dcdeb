"""Our ROS nodes as subprocesses in tests, and the ROS environment the tests and those nodes share.

A node's output (stdout and stderr) goes to a file; stopping it sends SIGTERM, then SIGKILL if it has not exited
within :data:`STOP_TIMEOUT`. Used by ``tests/ros`` and ``tests/hil`` (``pythonpath`` in ``pyproject.toml`` puts this
folder on ``sys.path``).
"""

from __future__ import annotations

import os
import subprocess
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from mtrl_robot.tools.bench.ros_bench import stop_process

STOP_TIMEOUT = 10.0  # s for a node to exit after SIGTERM before it is killed


class NodeProcess:
    """A node subprocess running ``command`` with its output in ``log_path``."""

    def __init__(self, command: list[str], log_path: Path, env: Mapping[str, str] | None = None):
        self.log_path = log_path
        with log_path.open("w") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        """Everything the node has written so far."""
        return self.log_path.read_text()

    def stop(self) -> int:
        """SIGTERM the node, wait for it (SIGKILL it if it hangs) and return its exit code."""
        stop_process(self.process, STOP_TIMEOUT)
        return self.process.returncode


def killable(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a node a test kills or freezes on purpose: Fast DDS over UDP only.

    A process killed or stopped (SIGKILL, SIGSTOP) while it holds the lock of a shared-memory port leaves every
    process that then opens that port waiting for it, a new node in the same domain too; over UDP nothing is shared.
    """
    return {**env, "FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"}


def domain_id(first: int, key: str = "") -> int:
    """A ROS domain in ``first`` to ``first + 99``, chosen by this process's id and ``key``."""
    return first + (zlib.crc32(key.encode()) + os.getpid()) % 100


@contextmanager
def ros_environment(log_dir: Path, domain: int | None) -> Iterator[dict[str, str]]:
    """``os.environ`` with ROS logs in ``log_dir`` (and ``domain`` with localhost discovery) until exit; yields it."""
    values = {"ROS_LOG_DIR": str(log_dir)}
    if domain is not None:
        values.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in values.items():
            patch.setenv(key, value)
        yield dict(os.environ)
