"""The mtrl-robot command, run as a user runs it: in a subprocess, on real files."""

import json
import subprocess
import sys

import pytest


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
    (("reaching", "evaluate", "no_such_run"), "no_such_run"),
    (("reaching", "adapt", "no_such_run", "missing.npz"), "missing.npz"),
    (("puck", "train", "--preset", "huge"), "huge"),
    (("puck", "evaluate", "no_such_run"), "no_such_run"),
])
def test_learning_verbs_report_bad_input_in_one_line(tmp_path, args, message):
    done = run(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_old_top_level_learning_verbs_are_gone(tmp_path):
    for verb in ("train", "adapt", "evaluate"):
        done = run(verb, "--help", cwd=tmp_path)
        assert done.returncode == 2 and "invalid choice" in done.stderr
    for group in ("reaching", "puck"):
        done = run(group, "--help", cwd=tmp_path)
        assert done.returncode == 0 and "{train,adapt,evaluate}" in done.stdout
