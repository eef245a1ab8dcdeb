"""The CPU wake-up latency request: written as Linux reads it, held only while the block runs, refused in one line."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from mtrl_robot.ros.realtime import CPU_LATENCY_DEVICE, cpus_awake


def _open_files() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_request_is_written_and_released(tmp_path: Path):
    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(b"")
    before = _open_files()
    with cpus_awake(device) as refusal:
        assert refusal is None
        assert device.read_bytes() == struct.pack("i", 0)
        assert len(_open_files() - before) == 1  # held open: the request lasts as long as the file is open
    assert _open_files() == before


@pytest.mark.parametrize("make", ["missing", "folder"])
def test_refusal_names_the_device(tmp_path: Path, make: str):
    device = tmp_path / "cpu_dma_latency"
    if make == "folder":
        device.mkdir()
    before = _open_files()
    with cpus_awake(device) as refusal:
        assert refusal is not None and str(device) in refusal and "left as it is" in refusal
    assert _open_files() == before


@pytest.mark.skipif(not os.access(CPU_LATENCY_DEVICE, os.W_OK), reason="no permission to request a CPU latency")
def test_the_kernel_applies_the_request():
    def current() -> int:
        return struct.unpack("i", CPU_LATENCY_DEVICE.read_bytes()[:4])[0]

    before = current()
    with cpus_awake() as refusal:
        assert refusal is None and current() == 0
    assert current() == before  # the request ended with the block
