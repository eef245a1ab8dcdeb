"""``mtrl-robot reaching train`` stopped by SIGTERM or SIGINT: one line, 143/130, no temporary file left, resumable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.interrupt import (
    SIGNALS,
    Interrupted,
    exiting_on_sigterm,
    raise_on_signals,
    signals_noted,
    signals_prevail,
)
from mtrl_robot.learning.reaching.checkpoint import load

TINY = Path(__file__).parent / "data" / "tiny_preset.yaml"
ENDLESS = "meta.meta_steps=1000000"  # a run that only a signal ends
STARTUP_TIMEOUT = 120.0  # s for the run to plan, pretrain and write its first checkpoints on a loaded machine


def train(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mtrl_robot.cli.main", "reaching", "train", str(TINY), "-o",
                             str(out), *extra], cwd=out.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_files(process: subprocess.Popen, paths: list[Path]) -> None:
    """Wait until every path exists, failing at once if the process ends first."""
    waited = 0.0
    while not all(p.exists() for p in paths):
        try:
            process.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            waited += 0.05
            assert waited < STARTUP_TIMEOUT, f"no {[str(p) for p in paths]} after {STARTUP_TIMEOUT} s"
        else:
            pytest.fail(f"the run ended before writing {paths}: {process.communicate()[1]}")


def pool_workers(pid: int) -> list[int]:
    """The ``spawn`` pool workers among the children of ``pid``."""
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_ends_training_in_one_line_leaving_only_complete_files(tmp_path, signum, code):
    out = tmp_path / "run"
    families = ["panda", "gen3"]  # two families in two pool workers: the workers must stop too
    process = train(out, "--set", ENDLESS, "--set", f"data.families={families}".replace("'", ""),
                    "--set", "compute.workers=2")
    checkpoints = [out / "checkpoints" / f"{f}.pt" for f in families]
    wait_for_files(process, checkpoints)
    workers = pool_workers(process.pid)
    assert len(workers) == 2
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=STARTUP_TIMEOUT)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr, stderr
    name = signal.Signals(signum).name
    assert stderr.strip().splitlines()[-1] == (f"mtrl-robot: interrupted by {name}; files being written were "
                                               "discarded (continue with --resume)")
    assert sorted(out.rglob("*.tmp")) == []
    assert not [pid for pid in workers if alive(pid)]
    for checkpoint in checkpoints:
        assert load(checkpoint).learner.step >= 1


def test_a_worker_killed_mid_training_ends_the_run_in_one_line_instead_of_a_wait(tmp_path):
    out = tmp_path / "run"
    families = ["panda", "gen3"]
    process = train(out, "--set", ENDLESS, "--set", f"data.families={families}".replace("'", ""),
                    "--set", "compute.workers=2")
    wait_for_files(process, [out / "checkpoints" / f"{f}.pt" for f in families])
    workers = pool_workers(process.pid)
    os.kill(workers[0], signal.SIGKILL)  # as the out-of-memory killer would
    _, stderr = process.communicate(timeout=STARTUP_TIMEOUT)
    assert process.returncode == 2, stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == ("mtrl-robot: error: families: a worker process died (killed by a "
                                               "signal, or by the out-of-memory killer); its work was not done "
                                               "(continue with --resume)")
    assert sorted(out.rglob("*.tmp")) == []
    assert not [pid for pid in workers if alive(pid)]


def test_resume_removes_the_temporary_files_a_killed_run_left_and_names_them(tmp_path):
    out = tmp_path / "run"
    assert train(out).wait(timeout=STARTUP_TIMEOUT) == 0
    stale = [out / "checkpoints" / ".panda.pt.k1ll3d.tmp", out / "logs" / ".panda.csv.x7f2q9.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    process = train(out, "--resume")
    _, stderr = process.communicate(timeout=STARTUP_TIMEOUT)
    assert process.returncode == 0, stderr
    for path in stale:
        assert not path.exists()
        assert f"removed {path}, the unfinished write of an interrupted run" in stderr
    assert (out / "checkpoints" / "panda.pt").is_file() and sorted(out.rglob("*.tmp")) == []


def test_a_noted_signal_is_acted_on_only_when_asked():
    saved = {signum: signal.getsignal(signum) for signum in SIGNALS}
    raise_on_signals()
    raising = signal.getsignal(signal.SIGINT)
    try:
        with signals_noted() as act:
            act()  # nothing noted yet
            os.kill(os.getpid(), signal.SIGINT)  # delivered at once to this (the main) thread, only noted
            with pytest.raises(Interrupted) as caught:
                act()
        assert caught.value.exit_code == 130
        assert signal.getsignal(signal.SIGINT) is raising  # the handler before is back
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


class SignalOnWrite:
    """A file that sends ``signum`` to this process as its ``nth`` write begins."""

    def __init__(self, file, signum: int, nth: int):
        self.file, self.signum, self.writes_left = file, signum, nth

    def write(self, data: bytes) -> int:
        self.writes_left -= 1
        if self.writes_left == 0:
            os.kill(os.getpid(), self.signum)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def save_interrupted(path: Path, signum: int, nth: int) -> None:
    """A checkpoint written as training writes it, with ``signum`` arriving at its ``nth`` write."""
    write_atomic(path, lambda f: torch.save({"weights": torch.zeros(100)}, SignalOnWrite(f, signum, nth)))


@pytest.mark.parametrize("nth", range(1, 8))
def test_a_signal_while_torch_saves_ends_the_command_as_interrupted_not_as_the_zip_writers_error(tmp_path, nth):
    saved = {signum: signal.getsignal(signum) for signum in SIGNALS}
    raise_on_signals()
    try:
        with pytest.raises(Interrupted), signals_prevail():
            save_interrupted(tmp_path / "model.pt", signal.SIGINT, nth)
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("nth", range(1, 8))
def test_a_pool_workers_sigterm_while_torch_saves_ends_the_worker(tmp_path, nth):
    """Not a RuntimeError, which the pool would take as the job's result, leaving the worker waiting for more."""
    with pytest.raises(SystemExit) as ended, exiting_on_sigterm():
        save_interrupted(tmp_path / "model.pt", signal.SIGTERM, nth)
    assert ended.value.code == 143
    assert list(tmp_path.iterdir()) == []


def test_a_signal_swallowed_inside_still_ends_the_block():
    with pytest.raises(SystemExit), exiting_on_sigterm():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except SystemExit:
            pass
