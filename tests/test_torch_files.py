"""The one torch file loader: intact archives only, finite numbers only, one clear line naming the file."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
import torch

from mtrl_robot.core.torch_files import CheckpointError, first_non_finite, load_torch_file


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.pt"
    torch.save({"weights": {"layer.weight": torch.arange(4096, dtype=torch.float32)}, "step": 3,
                "names": ["a", "b"], "generator": torch.Generator().get_state()}, path)
    return path


def _data_member(path: Path) -> zipfile.ZipInfo:
    """The archive member holding the tensor bytes (the largest one)."""
    with zipfile.ZipFile(path) as archive:
        return max(archive.infolist(), key=lambda info: info.file_size)


def test_a_good_file_loads(good):
    content = load_torch_file(good)
    assert content["step"] == 3 and content["names"] == ["a", "b"]
    torch.testing.assert_close(content["weights"]["layer.weight"], torch.arange(4096, dtype=torch.float32))


def test_bytes_overwritten_inside_the_weights_fail_the_crc_check(good):
    member = _data_member(good)
    data = bytearray(good.read_bytes())
    start = member.header_offset + 30 + len(member.filename) + len(member.extra) + 1000  # inside the tensor bytes
    data[start:start + 64] = bytes(64)
    good.write_bytes(bytes(data))
    torch.load(good, weights_only=True)  # torch itself does not notice
    message = rf"{re.escape(str(good))}: corrupt model: the archive member .* fails its CRC check"
    with pytest.raises(CheckpointError, match=message):
        load_torch_file(good, "model")


def test_nan_or_inf_weights_are_refused_naming_the_tensor(tmp_path):
    for value in (float("nan"), float("inf")):
        path = tmp_path / "bad.pt"
        torch.save({"weights": {"ok": torch.zeros(3), "layer.bias": torch.tensor([0.0, value])}}, path)
        message = rf"{re.escape(str(path))}: the checkpoint holds NaN or inf in weights\.layer\.bias"
        with pytest.raises(CheckpointError, match=message):
            load_torch_file(path)


def test_truncated_missing_and_foreign_files(good, tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "text.pt"
    text.write_text("not a torch file\n")
    foreign_zip = tmp_path / "foreign.pt"
    with zipfile.ZipFile(foreign_zip, "w") as archive:
        archive.writestr("hello.txt", "a zip, but no torch archive")
    for path in (truncated, text, foreign_zip):
        with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: not a readable torch checkpoint") as info:
            load_torch_file(path)
        assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(tmp_path / 'missing.pt'))}: no such policy file$"):
        load_torch_file(tmp_path / "missing.pt", "policy")


def test_first_non_finite_walks_nested_containers():
    assert first_non_finite({"a": [torch.zeros(2), {"b": torch.tensor([1.0, float("nan")])}]}) == "a.1.b"
    assert first_non_finite({"ints": torch.arange(3), "text": "nan", "number": 1.0}) is None
