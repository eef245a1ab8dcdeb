"""The compute setting: local processes by default (Ray never imported then), checked like every config field, and
a Ray cluster that cannot be reached named in one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mtrl_robot
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.distributed.compute import ComputeConfig, ordered_map
from mtrl_robot.learning.puck import presets as puck
from mtrl_robot.learning.reaching import presets as reaching

ROOT = Path(mtrl_robot.__file__).parents[1]


def _run(code: str, timeout: float = 300, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env_vars}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_a_local_run_never_imports_ray(tmp_path):
    done = _run(f"""
        import sys
        from mtrl_robot.cli.main import main
        if __name__ == "__main__":
            assert main(["reaching", "train", "small", "-o", {str(tmp_path / "run")!r},
                  "--set", "data.families=[panda]", "--set", "data.robots_per_family=5",
                  "--set", "data.held_out_per_family=2", "--set", "data.demos_per_robot=6",
                  "--set", "pretrain.nominal_demos=40", "--set", "pretrain.vae_steps=20",
                  "--set", "pretrain.policy_steps=40", "--set", "pretrain.batch_size=32",
                  "--set", "meta.meta_batch_size=2", "--set", "meta.meta_steps=2", "--set", "meta.k_support=2",
                  "--set", "meta.k_query=3", "--set", "adapt.k=2",
                  "--set", "compute.workers=2"]) == 0
            assert main(["reaching", "evaluate", {str(tmp_path / "run")!r}, "-o", {str(tmp_path / "eval")!r},
                  "--ks", "1", "--targets", "1", "--methods", "maml", "ik_oracle", "--set", "compute.workers=2"]) == 0
            print(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "eval" / "reaching.md").is_file()


def _square(x: int) -> int:
    return x * x


def test_ordered_map_gives_the_results_in_the_items_order_for_any_worker_count():
    items = list(range(7))
    for workers in (1, 3):
        assert ordered_map(ComputeConfig(workers=workers), _square, items, desc="squares",
                           progress=False) == [x * x for x in items]
    with pytest.raises(ValueError, match="2 sizes for 7 items"):
        ordered_map(ComputeConfig(workers=1), _square, items, desc="squares", sizes=[1, 2])


def _killed_at_one(x: int) -> int:
    if x == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer would
    return x


def test_a_worker_that_dies_ends_the_map_in_one_line_instead_of_a_wait_for_its_work():
    done = _run("""
        from test_compute import _killed_at_one
        from mtrl_robot.distributed.compute import ComputeConfig, WorkerLost, ordered_map
        if __name__ == "__main__":
            try:
                ordered_map(ComputeConfig(workers=2), _killed_at_one, list(range(4)), desc="numbers", progress=False)
            except WorkerLost as lost:
                print(lost)
    """, timeout=120, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == ("numbers: a worker process died (killed by a signal, or by the out-of-memory "
                                   "killer); its work was not done")


@pytest.mark.parametrize("override, field, problem", [
    ("compute.backend=spark", "compute.backend", "expected one of local, ray, got 'spark'"),
    ("compute.address=headnode", "compute.address", "expected auto or host:port, got 'headnode'"),
    ("compute.address=head:99999", "compute.address", "expected auto or host:port"),
    ("compute.workers=0", "compute.workers", "must be > 0"),
])
def test_a_bad_compute_setting_is_named_in_every_preset(override, field, problem):
    for load, where in [(lambda: reaching.load_preset("small", [override]), field),
                        (lambda: puck.load_preset("small", overrides=[override]), f"small.{field}")]:
        with pytest.raises(ConfigError) as caught:
            load()
        assert caught.value.field == where and problem in caught.value.problem, str(caught.value)
        assert caught.value.source == "--set"


def test_the_compute_setting_reads_from_every_preset_and_the_command_line():
    preset = reaching.load_preset("small", ["compute.backend=ray", "compute.address=10.0.0.5:6379"])
    assert (preset.compute.backend, preset.compute.address) == ("ray", "10.0.0.5:6379")
    assert reaching.load_preset("full").compute == ComputeConfig(workers=2, threads=1, backend="local", address="auto")
    assert puck.load_preset("small", overrides=["compute.backend=ray"]).compute.backend == "ray"
    assert puck.load_preset("default").compute.backend == "local"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: nothing listens there


@pytest.mark.parametrize("address", [f"127.0.0.1:{_closed_port()}", "auto"])
def test_an_unreachable_cluster_is_named_in_one_line_without_a_trace(tmp_path, address):
    # auto: the cluster Ray records for this machine, here (RAY_ADDRESS) one where nothing listens
    done = _run(f"""
        import sys
        from mtrl_robot.cli.main import main
        sys.exit(main(["reaching", "train", "small", "-o", {str(tmp_path / "run")!r},
                       "--set", "compute.backend=ray", "--set", "compute.address={address}"]))
    """, timeout=120, RAY_ADDRESS=f"127.0.0.1:{_closed_port()}")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"mtrl-robot: error: compute.address {address}: cannot reach a Ray cluster there")
    assert not (tmp_path / "run").exists()  # refused before the run's first step
