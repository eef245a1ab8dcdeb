"""Demos, training and a reaching evaluation on a real two-node Ray cluster (a head and a second node, one CPU each,
on the loopback address): the same bytes as the local run, tasks on both nodes, a worker killed mid-task retried,
Ctrl-C leaving only complete files."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_interrupt import ENDLESS, STARTUP_TIMEOUT, train, wait_for_files

import mtrl_robot
from mtrl_robot.arms.population import generate, load_config
from mtrl_robot.cli.main import main
from mtrl_robot.distributed.compute import ComputeConfig
from mtrl_robot.learning.reaching.checkpoint import load
from mtrl_robot.motions.generate import generate_demos

pytestmark = pytest.mark.cluster

RAY = Path(sys.executable).parent / "ray"
TASK_TITLE = "ray::_work_item"  # the process title of a Ray worker while it runs one of our tasks
STARTED = "Ray runtime started"  # what `ray start` prints once its node is up
DEMOS = 8  # per robot
TINY = """\
name: tiny
data: {families: [panda], robots_per_family: 5, held_out_per_family: 3, demos_per_robot: 6}
model: {latent_dim: 4, vae_hidden: [32], policy_hidden: [32, 32]}
pretrain: {nominal_demos: 40, vae_steps: 20, policy_steps: 40, batch_size: 32}
meta: {adapt_only: [policy.head], k_support: 2, k_query: 3, inner_steps: 1, meta_batch_size: 2, meta_steps: 4,
       checkpoint_every: 4}
adapt: {steps: 3, k: 2}
compute: {workers: 1, threads: 1}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_node(arguments: list[str], temp: Path, env: dict[str, str]) -> subprocess.Popen:
    """``ray start --block``: the node's processes live as long as this one, which stops them when terminated."""
    node = subprocess.Popen([str(RAY), "start", "--block", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                             "--disable-usage-stats", *arguments], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=temp)
    seen = []
    for line in node.stdout:
        seen.append(line)
        if STARTED in line:
            threading.Thread(target=node.stdout.read, daemon=True).start()  # keep the pipe drained
            return node
    raise RuntimeError("ray start ended before its node was up:\n" + "".join(seen[-20:]))


def _command_lines() -> Iterator[tuple[int, list[str]]]:
    """(pid, command line) of every process of this machine that can be read."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:  # ended meanwhile
                continue


def _processes_of(temp: Path) -> list[int]:
    """Processes whose command line names the cluster's temporary folder (its daemons and workers)."""
    return [pid for pid, line in _command_lines() if any(str(temp) in part for part in line)]


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def _import_the_work() -> str:
    import ray

    import mtrl_robot.learning.reaching.evaluate  # noqa: F401
    import mtrl_robot.motions.generate  # noqa: F401

    return ray.get_runtime_context().get_node_id()


def _warm_up(ray) -> None:
    """A worker process on each node that has imported the code the tests run: otherwise the first node, whose
    worker is ready first, may take every short task while the other node is still starting its worker."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
    task = ray.remote(num_cpus=1)(_import_the_work)
    ran = ray.get([task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote()
                   for node in nodes])
    assert sorted(ran) == sorted(nodes) and len(nodes) == 2


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """The head's address; every process of the cluster is gone afterwards, whatever the tests did."""
    import ray

    temp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # short: Ray's socket paths are limited in length
    code = os.pathsep.join(str(path) for path in (Path(mtrl_robot.__file__).parents[1], Path(__file__).parent))
    env = {**os.environ, "PYTHONPATH": code, "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "disabled"}  # a cluster on the loopback address for a minute; drivers connect as they are
    port = _free_port()
    nodes = []
    try:
        nodes.append(_start_node(["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}"],
                                 temp, env))
        nodes.append(_start_node([f"--address=127.0.0.1:{port}"], temp, env))
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)  # as the runs of these tests will
        registered = threading.Event()
        for _ in range(600):  # the second node is up; wait until the head counts its CPU (a minute at most)
            if ray.cluster_resources().get("CPU") == 2:
                break
            registered.wait(0.1)
        assert ray.cluster_resources().get("CPU") == 2, ray.nodes()
        _warm_up(ray)
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for node in nodes:
            node.send_signal(signal.SIGTERM)
        for node in nodes:
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        stray = _processes_of(temp)
        for pid in stray:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
        assert not stray, f"processes of the cluster outlived it: {stray}"


class _Killer(threading.Thread):
    """Kills the first worker process seen running one of our tasks (SIGKILL: no chance to clean up)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.done, self.killed = threading.Event(), None

    def run(self) -> None:
        while not self.done.wait(0.02):
            for pid, line in _command_lines():
                if line[0].startswith(TASK_TITLE):
                    os.kill(pid, signal.SIGKILL)
                    self.killed = pid
                    return


def _nodes_used(stderr: str, what: str) -> int:
    found = re.findall(rf"{what}: \d+ Ray tasks on (\d+) node\(s\)", stderr)
    assert found, f"no summary of the Ray tasks of {what} in:\n{stderr[-2000:]}"
    return int(found[-1])


def test_demos_on_two_nodes_are_the_local_bytes_even_with_a_worker_killed(cluster, tmp_path, capfd):
    population = generate(load_config(robots_per_family=4, families=["panda", "gen3", "yumi", "baxter"]))
    local = generate_demos(population, DEMOS, seed=5, compute=ComputeConfig(workers=1), progress=False)
    local.save(tmp_path / "local.npz")
    on_ray = ComputeConfig(workers=2, backend="ray", address=cluster)
    capfd.readouterr()

    generate_demos(population, DEMOS, seed=5, progress=True, compute=on_ray).save(tmp_path / "ray.npz")
    assert _nodes_used(capfd.readouterr().err, "demos") == 2
    assert (tmp_path / "ray.npz").read_bytes() == (tmp_path / "local.npz").read_bytes()

    # A worker killed mid-task: its node starts another one, which may come up after the other node has done every
    # short task, so only the bytes are compared here, not where the tasks ran.
    killer = _Killer()
    killer.start()
    try:
        remote = generate_demos(population, DEMOS, seed=5, progress=False, compute=on_ray)
    finally:
        killer.done.set()
        killer.join()
    remote.save(tmp_path / "ray_killed.npz")
    assert killer.killed is not None, "no task was seen running: nothing was killed"
    assert not _alive(killer.killed)
    assert (tmp_path / "ray_killed.npz").read_bytes() == (tmp_path / "local.npz").read_bytes()


def test_training_and_evaluation_on_two_nodes_write_the_local_files(cluster, tmp_path, capfd):
    (tmp_path / "tiny.yaml").write_text(TINY)
    run, remote_run = tmp_path / "run", tmp_path / "ray_run"
    assert main(["reaching", "train", str(tmp_path / "tiny.yaml"), "-o", str(run)]) == 0
    assert main(["reaching", "train", str(tmp_path / "tiny.yaml"), "-o", str(remote_run), "--set",
                 "compute.workers=2", "--set", "compute.backend=ray", "--set", f"compute.address={cluster}"]) == 0
    files = sorted(p.relative_to(run) for p in run.rglob("*") if p.is_file() and p.suffix in (".npz", ".pt"))
    assert len(files) >= 4  # demos, pretraining, checkpoint, model file
    for file in files:
        assert (remote_run / file).read_bytes() == (run / file).read_bytes(), file
    common = ["--ks", "2", "--targets", "2", "--methods", "no_adaptation", "maml", "scratch", "ik_oracle",
              "--scratch-steps", "20"]
    assert main(["reaching", "evaluate", str(run), "-o", str(tmp_path / "local"), *common,
                 "--set", "compute.workers=1"]) == 0
    capfd.readouterr()
    assert main(["reaching", "evaluate", str(run), "-o", str(tmp_path / "ray"), *common, "--set",
                 "compute.workers=2", "--set", "compute.backend=ray", "--set", f"compute.address={cluster}"]) == 0
    assert _nodes_used(capfd.readouterr().err, "evaluate panda") == 2
    assert (tmp_path / "ray" / "reaching.md").read_bytes() == (tmp_path / "local" / "reaching.md").read_bytes()
    local, remote = (json.loads((tmp_path / side / "reaching.json").read_text()) for side in ("local", "ray"))
    assert local.pop("seconds") and remote.pop("seconds")
    assert remote == local and len(local["per_robot_cm"]) == 3


def test_ctrl_c_stops_the_tasks_on_the_cluster_and_leaves_only_complete_files(cluster, tmp_path):
    out = tmp_path / "run"
    families = ["panda", "gen3"]  # two families, one task each, on the two nodes
    process = train(out, "--set", ENDLESS, "--set", f"data.families={families}".replace("'", ""),
                    "--set", "compute.workers=2", "--set", "compute.backend=ray",
                    "--set", f"compute.address={cluster}")
    checkpoints = [out / "checkpoints" / f"{f}.pt" for f in families]
    wait_for_files(process, checkpoints)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=STARTUP_TIMEOUT)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == ("mtrl-robot: interrupted by SIGINT; files being written were "
                                               "discarded (continue with --resume)"), stderr
    assert "Traceback" not in stderr, stderr
    assert sorted(out.rglob("*.tmp")) == []
    assert not [pid for pid, line in _command_lines() if line[0].startswith(TASK_TITLE)]  # the tasks ended
    for checkpoint in checkpoints:
        assert load(checkpoint).learner.step >= 1
