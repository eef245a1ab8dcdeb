"""Your own arm through the command line alone: a URDF → ``arm init`` → population → demos and training → adaptation
→ evaluation, and bad family files refused in one line with nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from side_by_side import side_by_side
from test_family_file import IIWA_URDF, iiwa_limits

TINY_RUN = ["--set", "data.robots_per_family=5", "--set", "data.held_out_per_family=1", "--set",
            "data.demos_per_robot=12", "--set", "meta.k_query=5", "--set", "meta.meta_steps=4", "--set",
            "meta.checkpoint_every=2", "--set", "pretrain.nominal_demos=60", "--set", "pretrain.vae_steps=10",
            "--set", "pretrain.policy_steps=10"]  # the small preset cut to seconds


def run(*args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtrl_robot.cli.main", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def test_the_iiwa_from_its_urdf_through_population_training_adaptation_and_evaluation(tmp_path):
    init = run("arm", "init", IIWA_URDF, "--flange", "lbr_iiwa_link_7", "-o", "iiwa.yaml", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    family = tmp_path / "iiwa.yaml"
    home = yaml.safe_load(family.read_text())["home"]
    assert f"home chosen: [{', '.join(f'{v:g}' for v in home)}]" in init.stdout
    assert "lbr_iiwa_joint_7 (velocity 10, effort 300)" in init.stderr  # the URDF's placeholders, warned of
    # the user fills in the published limits, as the file asks
    family.write_text(family.read_text().replace("limits: {}", "limits:\n" + iiwa_limits()))

    # independent commands side by side: init again, a population, a training run
    again, generate, train = side_by_side(lambda args: run(*args, cwd=tmp_path), [
        ("arm", "init", IIWA_URDF, "--flange", "lbr_iiwa_link_7", "-o", "iiwa.yaml"),
        ("population", "generate", "--families", "iiwa.yaml", "panda", "--per-family", 3, "-o", "pop.json"),
        ("reaching", "train", "small", "-o", "run", "--set", "data.families=[iiwa.yaml]", *TINY_RUN)])
    assert again.returncode == 2 and "iiwa.yaml exists" in again.stderr and "--force" in again.stderr
    assert "limits:\n" + iiwa_limits() in family.read_text()  # left as it was
    assert generate.returncode == 0 and "placeholder" not in generate.stderr, generate.stderr
    robots = json.loads((tmp_path / "pop.json").read_text())["robots"]
    assert [r["robot_id"] for r in robots] == [f"{f}-00{i}" for f in ("iiwa", "panda") for i in range(3)]
    assert train.returncode == 0, train.stderr
    assert "| iiwa |" in train.stdout and (tmp_path / "run" / "checkpoints" / "iiwa.model.pt").is_file()
    held_out = json.loads((tmp_path / "run" / "report.json").read_text())["iiwa"]["held_out"]
    assert list(held_out["per_robot_cm"]) == ["iiwa-004"]

    show, adapt, evaluate = side_by_side(lambda args: run(*args, cwd=tmp_path), [
        ("show", "iiwa-002", "--population", "pop.json"),
        ("reaching", "adapt", "run", "run/demos.npz", "--robot", "iiwa-004", "-k", 5, "-o", "adapted.pt"),
        ("reaching", "evaluate", "run", "-o", "evaluation", "--ks", 5, "--targets", 3, "--methods", "no_adaptation",
         "maml", "ik_oracle")])
    assert show.returncode == 0 and "lbr_iiwa_joint_7" in show.stdout, show.stderr
    assert adapt.returncode == 0 and (tmp_path / "adapted.pt").is_file(), adapt.stderr
    assert evaluate.returncode == 0, evaluate.stderr
    summary = json.loads((tmp_path / "evaluation" / "reaching.json").read_text())["summary"]["iiwa"]
    assert summary["ik_oracle"]["5"]["mean"] < 0.1  # the demos' own planner reaches: the run executes the iiwa
    assert 0 < summary["maml"]["5"]["mean"] < 100


def test_bad_family_files_are_refused_in_one_line_and_nothing_is_written(tmp_path):
    (tmp_path / "singular.yaml").write_text(f"urdf: {IIWA_URDF}\nflange_link: lbr_iiwa_link_7\n"
                                            "home: [0, 0, 0, 0, 0, 0, 0]\n")
    (tmp_path / "lost.yaml").write_text("urdf: lost.urdf\nflange_link: tool0\n")
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(f"family: twin\nurdf: {IIWA_URDF}\nflange_link: lbr_iiwa_link_7\n")
    cases = [
        (("show", "singular.yaml"), "singular.yaml: home: the home is singular"),
        (("show", "lost.yaml"), "lost.yaml: urdf: no URDF at lost.urdf"),
        (("population", "generate", "--families", "lost.yaml", "-o", "out/pop.json"), "lost.yaml: urdf"),
        (("population", "generate", "--families", "a.yaml", "b.yaml", "-o", "out/pop.json"),
         "families[1]: 'b.yaml' is named 'twin', as an earlier entry is"),
        (("reaching", "train", "small", "-o", "out/run", "--set", "data.families=[singular.yaml]"),
         "singular.yaml: home"),
        (("reaching", "train", "small", "-o", "out/run", "--set", "data.families=[a.yaml, b.yaml]"),
         "data.families[1]: 'b.yaml' is named 'twin'"),
        (("arm", "init", "lost.urdf", "--flange", "tool0", "-o", "out/lost.yaml"), "lost.urdf"),
        (("arm", "init", IIWA_URDF, "--flange", "lbr_iiwa_link_9", "-o", "out/x.yaml"),
         "flange_link: no link 'lbr_iiwa_link_9'"),
        (("arm", "init", IIWA_URDF, "--flange", "lbr_iiwa_link_7", "-o", "out/panda.yaml"),
         "'panda' is a built-in family's"),
    ]
    runs = side_by_side(lambda args: run(*args, cwd=tmp_path, timeout=120), [args for args, _ in cases])
    for (args, message), done in zip(cases, runs, strict=True):
        assert done.returncode == 2, (args, done.stderr)
        lines = [line for line in done.stderr.splitlines() if "placeholders" not in line]
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr, (args, done.stderr)
    assert not (tmp_path / "out").exists(), sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*"))


def test_the_demo_takes_a_family_file(tmp_path):
    (tmp_path / "iiwa.yaml").write_text(f"urdf: {IIWA_URDF}\nflange_link: lbr_iiwa_link_7\nlimits:\n" + iiwa_limits())
    done = run("demo", "--skip-learning", "--families", "iiwa.yaml", "panda", "-o", "demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 families × 100 robots" in done.stdout and "iiwa-007  (lbr_iiwa;" in done.stdout
    assert (tmp_path / "demo" / "robots.png").is_file()


def test_arm_init_takes_a_urdf_shipped_with_pybullet_by_its_name_there(tmp_path):
    done = run("arm", "init", "pybullet_data:kuka_iiwa/model.urdf", "--flange", "lbr_iiwa_link_7", "-o", "iiwa.yaml",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert Path(yaml.safe_load((tmp_path / "iiwa.yaml").read_text())["urdf"]) == IIWA_URDF.resolve()
    missing = run("arm", "init", "pybullet_data:kuka_iiwa/nothing.urdf", "--flange", "lbr_iiwa_link_7", "-o", "x.yaml",
                  cwd=tmp_path)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    assert "nothing.urdf" in missing.stderr and not (tmp_path / "x.yaml").exists()
