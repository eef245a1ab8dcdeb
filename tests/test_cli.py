"""The mtrl-robot command, run as a user runs it: in a subprocess, on real files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from side_by_side import side_by_side

TINY = Path(__file__).parent / "data" / "tiny_preset.yaml"  # a run of a few seconds: 3 Panda robots, 4 meta-steps


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "run"
    done = run("reaching", "train", TINY, "-o", out, cwd=out.parent)
    assert done.returncode == 0, done.stderr
    return out


def run(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "mtrl_robot.cli.main", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def test_generate_inspect_show(tmp_path):
    pop = tmp_path / "pop.json"
    done = run("population", "generate", "--per-family", 3, "--families", "panda", "yumi", "--seed", 5, "-o", pop)
    assert done.returncode == 0, done.stderr
    data = json.loads(pop.read_text())
    assert [r["robot_id"] for r in data["robots"]] == [f"{f}-00{i}" for f in ("panda", "yumi") for i in range(3)]
    inspect = run("population", "inspect", pop)
    assert inspect.returncode == 0 and "yumi" in inspect.stdout and "6 robots" in inspect.stdout
    show = run("show", "yumi-002", "--population", pop)
    assert show.returncode == 0 and "yumi_joint_7_r" in show.stdout and "flange at q" in show.stdout


def test_randomize_reads_back_from_pybullet(tmp_path):
    log = tmp_path / "dr.jsonl"
    done = run("randomize", "-n", 3, "--apply", "pybullet", "--seed", 2, "--log", log)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 3 and lines[0]["engine"] == "pybullet"
    assert all(0.05 <= line["values"]["puck.mass"] <= 0.5 for line in lines)


@pytest.mark.parametrize("args, message", [
    (("show", "kuka"), "unknown arm family 'kuka'"),
    (("show", "panda", "--q", 0, 0, 0), "must have 7 values"),
    (("show", "panda", "--q", 0, 0, 0, "nan", 0, 0, 0), "NaN or inf at panda_joint4"),
    (("show", "--urdf", "missing.urdf", "--flange", "tool0"), "missing.urdf"),
    (("population", "inspect", "missing.json"), "population file not found"),
])
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    done = run(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


CYCLIC_URDF = """<robot name="cyclic"><link name="base"/><link name="a"/><link name="b"/>
  <joint name="a_to_b" type="fixed"><parent link="a"/><child link="b"/></joint>
  <joint name="b_to_a" type="fixed"><parent link="b"/><child link="a"/></joint></robot>"""


def test_a_cyclic_urdf_is_refused_in_one_line(tmp_path):
    (tmp_path / "cyclic.urdf").write_text(CYCLIC_URDF)
    done = run("show", "--urdf", "cyclic.urdf", "--flange", "b", cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "cyclic.urdf: joint[@name='a_to_b']: the joints 'a_to_b', 'b_to_a' form a cycle" in done.stderr


def test_bad_population_config_names_field(tmp_path):
    config = tmp_path / "population.yaml"
    config.write_text("perturbation:\n  link_mass: {distribution: uniform, range: [1.2, 0.8]}\n")
    done = run("population", "generate", "--config", config, "-o", tmp_path / "p.json")
    assert done.returncode == 2
    assert f"{config}: perturbation.link_mass.range: min 1.2 is greater than max 0.8" in done.stderr
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("args, message", [
    (("reaching", "train", "huge"), "unknown training preset 'huge'"),
    (("reaching", "evaluate", "no_such_run"), "no_such_run: no such training run folder"),
    (("reaching", "adapt", "no_such_run", "missing.npz"), "no_such_run: no such checkpoint file or training run"),
    (("reaching", "adapt", "empty_run", "missing.npz"), "missing.npz: no such demonstrations file"),
    (("puck", "train", "--preset", "huge"), "huge"),
    (("puck", "evaluate", "no_such_run"), "no_such_run: no such puck training run folder"),
    (("puck", "evaluate", "empty_run", "--methods", "meta", "oracle"), "unknown, repeated or no methods"),
    (("puck", "evaluate", "empty_run", "--backend", "pybullet", "--camera"), "camera mode"),
])
def test_learning_verbs_report_bad_input_in_one_line(tmp_path, args, message):
    (tmp_path / "empty_run").mkdir()
    done = run(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_old_top_level_learning_verbs_are_gone(tmp_path):
    for verb in ("train", "adapt", "evaluate"):
        done = run(verb, "--help", cwd=tmp_path)
        assert done.returncode == 2 and "invalid choice" in done.stderr
    reaching = "{train,adapt,evaluate,sweep,lofo,calibrate,single-demo,suggest,suggest-compare,export}"
    for group, verbs in (("reaching", reaching), ("puck", "{train,train-history,adapt,evaluate,check-motions}")):
        done = run(group, "--help", cwd=tmp_path)
        assert done.returncode == 0 and verbs in done.stdout


@pytest.mark.parametrize("args, option, problem", [
    (("population", "generate", "--per-family", "1e14"), "--per-family",
     "must be <= 10000 (every robot's parameters (and demonstrations) are made and held in memory), "
     "got 100000000000000"),
    (("population", "generate", "--per-family", 0), "--per-family", "must be > 0, got 0"),
    (("population", "generate", "--seed", -1), "--seed", "must be >= 0, got -1"),
    (("population", "generate", "--seed", 2**32), "--seed", "must be <= 4294967295 (seeds are 32-bit)"),
    (("population", "generate", "--families", "panda", "panda"), "--families", "repeated panda"),
    (("randomize", "-n", -5), "-n", "must be > 0, got -5"),
    (("randomize", "-n", "1e9"), "-n", "must be <= 1000000 (each episode is printed"),
    (("randomize", "--seed", -3), "--seed", "must be >= 0, got -3"),
    (("render", "--per-family", "1e6"), "--per-family", "must be <= 10000"),
    (("reaching", "adapt", "run", "demos.npz", "--steps", "1e9"), "--steps",
     "must be <= 1000000 (more steps would run for weeks), got 1000000000"),
    (("reaching", "adapt", "run", "demos.npz", "-k", 0), "-k", "must be > 0, got 0"),
    (("reaching", "evaluate", "run", "--ks", 1, "nan"), "--ks", "expected an integer, got 'nan'"),
    (("reaching", "evaluate", "run", "--ks", 0, -1), "--ks", "must be >= 0, got -1"),
    (("reaching", "evaluate", "run", "--finetune-lrs", "0.001", 0), "--finetune-lrs", "must be > 0"),
    (("reaching", "evaluate", "run", "--seed", -1), "--seed", "must be >= 0"),
    (("reaching", "evaluate", "run", "--scratch-steps", "1e12"), "--scratch-steps", "must be <= 1000000"),
    (("reaching", "evaluate", "run", "--multitask-budget", "inf"), "--multitask-budget", "expected a number"),
    (("puck", "adapt", "run", "-o", "out", "--steps", 10**6), "--steps", "must be <= 1000"),
    (("puck", "adapt", "run", "-o", "out", "--seed", -2), "--seed", "must be >= 0"),
    (("puck", "evaluate", "run", "--repeats", 1), "--repeats", "must be >= 2, got 1"),
])
def test_values_beyond_their_range_are_refused_in_one_line_naming_the_option(tmp_path, args, option, problem):
    done = run(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"error: argument {option}: " in done.stderr and problem in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_population_config_beyond_what_a_run_holds_or_with_a_family_twice_is_refused(tmp_path):
    cases = {"robots_per_family: 1000000000000": "robots_per_family: must be <= 10000",
             "robots_per_family: 1e12": "robots_per_family: must be <= 10000",
             "seed: -4": "seed: must be >= 0, got -4",
             "families: [panda, gen3, panda]": "families[2]: 'panda' is listed twice"}
    configs = [tmp_path / f"population{i}.yaml" for i in range(len(cases))]
    for config, text in zip(configs, cases, strict=True):
        config.write_text(text + "\n")
    runs = side_by_side(lambda config: run("population", "generate", "--config", config, "-o", tmp_path / "p.json",
                                           cwd=tmp_path), configs)
    for config, message, done in zip(configs, cases.values(), runs, strict=True):
        assert done.returncode == 2, done.stderr
        assert f"{config}: {message}" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "p.json").exists()


def unwritable(tmp_path: Path) -> Path:
    """A folder no file can be made in: read-only, or, as root (whom permissions do not stop), a path beneath a
    regular file."""
    if os.geteuid() == 0:
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        return blocker / "out"
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder / "out"


def test_unwritable_output_folders_are_one_line_naming_the_folder_and_the_os_error(tmp_path, tiny_run):
    folder = unwritable(tmp_path)
    problem = "Not a directory" if os.geteuid() == 0 else "Permission denied"
    commands = [("population", "generate", "--per-family", 1, "--families", "panda", "-o", folder / "pop.json"),
                ("render", "--per-family", 1, "-o", folder / "robots.png"),
                ("randomize", "-n", 2, "--log", folder / "samples.jsonl"),
                ("reaching", "adapt", tiny_run / "checkpoints" / "panda.pt", tiny_run / "demos.npz", "--robot",
                 "panda-000", "-k", 3, "-o", folder / "adapted.pt"),
                ("reaching", "train", TINY, "-o", folder / "run")]
    for done in side_by_side(lambda args: run(*args, cwd=tmp_path), commands):
        assert done.returncode == 2, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert "Traceback" not in done.stderr and last.startswith("mtrl-robot: error: "), done.stderr
        assert str(folder) in last and problem in last, done.stderr


def test_adapt_refuses_demos_beyond_the_joint_limits_and_a_diverging_adaptation_writing_nothing(tmp_path, tiny_run):
    import numpy as np
    import torch

    from mtrl_robot.learning.reaching.checkpoint import load

    with np.load(tiny_run / "demos.npz") as archive:
        content = {k: archive[k] for k in archive.files}
    content["positions"][1, 3, 0] = 1e6
    far = tmp_path / "far.npz"
    np.savez(far, **content)
    state = load(tiny_run / "checkpoints" / "panda.pt")
    with torch.no_grad():  # step sizes no adaptation survives; the weights themselves are finite
        for name, value in state.learner.meta.named_parameters():
            if not name.startswith("model."):
                value.fill_(1e30)
    huge = state.save(tmp_path / "huge.pt")
    beyond, diverging = side_by_side(lambda args: run(*args, cwd=tmp_path), [
        ("reaching", "adapt", tiny_run / "checkpoints" / "panda.pt", far, "--robot", "panda-000", "-k", 3,
         "-o", tmp_path / "a.pt"),
        ("reaching", "adapt", huge, tiny_run / "demos.npz", "--robot", "panda-000", "-k", 3,
         "-o", tmp_path / "adapted.pt")])
    assert beyond.returncode == 2 and len(beyond.stderr.strip().splitlines()) == 1, beyond.stderr
    assert f"{far}: demo 1 (robot panda-000): panda_joint1 is at 1e+06 rad at waypoint 3, outside its limits" \
        in beyond.stderr

    assert diverging.returncode == 2 and len(diverging.stderr.strip().splitlines()) == 1, diverging.stderr
    assert (f"adapting {huge} to panda-000 diverged: 2 steps on 3 demos gave NaN or inf in policy.head"
            in diverging.stderr), diverging.stderr
    assert "nothing written" in diverging.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["far.npz", "huge.pt"]
