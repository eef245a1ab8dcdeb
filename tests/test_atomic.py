"""Atomic writes: the target holds the old content or the complete new one, never a temporary file left behind."""

import os
import stat

import pytest

from mtrl_robot.core.atomic import discarding_temporaries, write_atomic


def test_text_bytes_and_writer(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    assert write_atomic(path, "héllo\n") == path
    assert path.read_bytes() == "héllo\n".encode()
    write_atomic(str(path), b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    write_atomic(path, lambda f: f.write(b"from a writer"))
    assert path.read_bytes() == b"from a writer"
    assert os.listdir(path.parent) == ["out.txt"]


def test_failing_writer_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    write_atomic(path, "old")

    def crash(f):
        f.write(b"half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, crash)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]


def test_failing_verify_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    write_atomic(path, "old")
    seen = []

    def reject(tmp):
        seen.append((tmp.parent, tmp.name, tmp.read_text()))
        raise ValueError("bad content")

    with pytest.raises(ValueError, match="bad content"):
        write_atomic(path, "new", verify=reject)
    [(folder, name, text)] = seen
    assert folder == tmp_path and name.startswith(".out.txt.") and name.endswith(".tmp") and text == "new"
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]
    write_atomic(path, "new", verify=lambda tmp: tmp.read_text() == "new")
    assert path.read_text() == "new"


def test_file_is_readable_by_everyone(tmp_path):
    path = write_atomic(tmp_path / "out.txt", "shared")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_work_ended_by_an_interrupt_leaves_only_complete_files(tmp_path):
    write_atomic(tmp_path / "done.txt", "complete")
    killed_writer = tmp_path / "checkpoints" / ".model.pt.abc123.tmp"  # what a worker killed mid-write leaves
    killed_writer.parent.mkdir()
    killed_writer.write_bytes(b"half a file")
    with pytest.raises(KeyboardInterrupt), discarding_temporaries(tmp_path):
        raise KeyboardInterrupt
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["checkpoints", "done.txt"]
    killed_writer.write_bytes(b"half a file")
    with discarding_temporaries(tmp_path):  # work that ends normally leaves the folder alone
        pass
    assert killed_writer.exists()
