"""The sim-training and HIL launch files, run by the launch runner as a user runs them: real node processes, real
training, real arm nodes; results checked in the files they write and on /diagnostics."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from ros_events import Messages

from mtrl_robot.core.paths import data_dir
from mtrl_robot.learning.reaching import checkpoint as checkpoints

LAUNCH = Path(__file__).resolve().parents[2] / "launch"
if TYPE_CHECKING:  # tests/ros/conftest.py; imported by name only for types (tests/hil has a conftest too)
    from ros_client import RosClient

RUN_TIMEOUT = 300.0  # s for a launch to end on a loaded machine
META_STEPS = 200  # of the interrupted run: about two seconds, so that Ctrl-C comes before its end


def wait_for_file(path: Path, process: subprocess.Popen, timeout: float = RUN_TIMEOUT) -> None:
    """Until ``path`` exists; fails if ``process`` ends first or after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert process.poll() is None, f"ended before {path} was written:\n{process.communicate()[0]}"
        assert time.monotonic() < deadline, f"no {path} within {timeout} s"
        time.sleep(0.02)


def run_launch(name: str, env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtrl_robot.tools.launch_runner", str(LAUNCH / name), *arguments],
                          env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)


def start_launch(name: str, env: dict[str, str], *arguments: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mtrl_robot.tools.launch_runner", str(LAUNCH / name),
                             *arguments], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def statuses(messages: Messages[DiagnosticArray]) -> list[dict[str, str]]:
    return [{"message": s.message, **{kv.key: kv.value for kv in s.values}}
            for m in list(messages.messages) for s in m.status if s.name == "training_node: reaching"]


def test_sim_training_launch_trains_checkpoints_and_evaluates_through_arm_nodes(ros_env, ros_client: RosClient,
                                                                                  tmp_path: Path):
    diagnostics: Messages[DiagnosticArray] = Messages()
    subscription = ros_client.between_waits(
        lambda: ros_client.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics, 100))
    out = tmp_path / "run"
    try:
        result = run_launch("sim_training.launch.xml", ros_env, "preset:=small", f"output:={out}",
                            "eval_robots:=1", "eval_targets:=1")
    finally:
        ros_client.destroy(subscription)
    assert result.returncode == 0, result.stdout + result.stderr
    for family in ("panda", "gen3"):
        assert checkpoints.load(out / "checkpoints" / f"{family}.pt").learner.step == 40
    assert "| panda |" in (out / "report.md").read_text()
    evaluation = json.loads((out / "arm_node_eval.json").read_text())
    assert set(evaluation) == {"panda", "gen3"}
    for family, entry in evaluation.items():
        (robot_id, errors), = entry["robots"].items()
        assert robot_id.startswith(family) and robot_id in checkpoints.load(
            out / "checkpoints" / f"{family}.pt").info["held_out"]
        assert all(e is None or 0.0 <= e < 20.0 for method in ("no_adaptation", "maml") for e in errors[method]), \
            errors
        assert len(errors["maml"]) == 1
    table = (out / "arm_node_eval.md").read_text()
    assert "| panda | panda-" in table and "| gen3 | gen3-" in table
    assert "arm_node_eval.md" in result.stderr and "meta-train panda: 40/40, loss" in result.stderr
    seen = statuses(diagnostics)
    assert any(s["stage"] == "meta-train panda" and s["total"] == "40" for s in seen), seen
    assert seen[-1]["stage"] == "done" and seen[-1]["checkpoint"].endswith(".pt")


def test_ctrl_c_keeps_the_last_checkpoint_and_resume_finishes_the_run(ros_env, tmp_path: Path):
    preset = yaml.safe_load((data_dir("config") / "training" / "small.yaml").read_text())
    preset["data"]["families"] = ["panda"]
    preset["meta"].update(meta_steps=META_STEPS, checkpoint_every=5)
    preset_file = tmp_path / "longer.yaml"
    preset_file.write_text(yaml.safe_dump(preset))
    out = tmp_path / "run"
    checkpoint = out / "checkpoints" / "panda.pt"
    launch = start_launch("sim_training.launch.xml", ros_env, f"preset:={preset_file}", f"output:={out}",
                          "eval_robots:=0")
    try:
        wait_for_file(checkpoint, launch)
        launch.send_signal(signal.SIGINT)
        output = launch.communicate(timeout=60)[0]
    finally:
        launch.kill()
    assert f"interrupted by SIGINT; the last complete checkpoint is {checkpoint}" in output, output
    assert launch.returncode == 130, output  # the run's exit status
    assert not [p for p in out.rglob("*") if ".tmp" in p.name], "a half-written file stayed"
    step = checkpoints.load(checkpoint).learner.step
    assert 0 < step < META_STEPS and step % 5 == 0, step

    result = run_launch("sim_training.launch.xml", ros_env, f"preset:={preset_file}", f"output:={out}",
                        "resume:=true", "eval_robots:=0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(resuming)" in result.stderr
    assert checkpoints.load(checkpoint).learner.step == META_STEPS
    logged = [int(row.split(",")[0]) for row in (out / "logs" / "panda.csv").read_text().splitlines()[1:]]
    assert logged == list(range(1, META_STEPS + 1)) or logged == list(range(META_STEPS)), logged[:10]
    assert "| panda |" in (out / "report.md").read_text()


def test_sim_training_launch_names_bad_input_in_one_line(ros_env, tmp_path: Path):
    result = run_launch("sim_training.launch.xml", ros_env, "preset:=no_such_preset", f"output:={tmp_path}")
    assert result.returncode == 1
    failure = [line for line in result.stderr.splitlines() if "failed:" in line]
    assert len(failure) == 1 and "no_such_preset" in failure[0], result.stderr
    assert "Traceback" not in result.stderr


def test_sim_training_launch_trains_and_evaluates_puck_hitting(ros_env, tmp_path: Path):
    refused = run_launch("sim_training.launch.xml", ros_env, "task:=puck", f"output:={tmp_path}", "resume:=true")
    assert refused.returncode == 1 and "resume: puck training has no resume" in refused.stderr
    assert "Traceback" not in refused.stderr
    result = run_launch("sim_training.launch.xml", ros_env, "task:=puck", "preset:=small", f"output:={tmp_path}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "meta_policy.pt").is_file() and (tmp_path / "baseline_policy.pt").is_file()
    assert "| iso_low | meta |" in (tmp_path / "puck_eval_sim.md").read_text()
    assert "puck meta policy: 2/2" in result.stderr


def hil_report(out: Path) -> tuple[dict[str, str], str]:
    """Each test case of the JUnit XML → passed, failed or skipped; and the Markdown report."""
    cases = {}
    for case in ET.parse(out / "hil_junit.xml").getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        cases[case.get("name")] = ("failed" if kinds & {"failure", "error"} else
                                   "skipped" if "skipped" in kinds else "passed")
    return cases, (out / "hil_report.md").read_text()


def test_hil_launch_passes_against_the_simulated_arm(ros_env, tmp_path: Path):
    result = run_launch("hil_test.launch.xml", ros_env, f"output_dir:={tmp_path}")
    assert result.returncode == 0, result.stdout + result.stderr
    cases, report = hil_report(tmp_path)
    assert set(cases.values()) == {"passed"} and len(cases) == 5, cases
    assert "| test_joint_states_rate | joint_states rate |" in report and "≥ 200 Hz | pass" in report
    assert "peak tracking error" in report and "5 passed, 0 failed, 0 skipped" in report


def test_hil_launch_fails_naming_the_check_against_an_arm_below_the_preset_rate(ros_env, tmp_path: Path):
    result = run_launch("hil_test.launch.xml", ros_env, f"output_dir:={tmp_path}", "joint_states_rate:=60.0")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "hil_suite: FAILED test_joint_states_rate: AssertionError: joint states at" in result.stderr
    cases, report = hil_report(tmp_path)
    assert cases.pop("test_joint_states_rate") == "failed" and set(cases.values()) == {"passed"}, cases
    row = next(line for line in report.splitlines() if line.startswith("| test_joint_states_rate |"))
    measured = float(row.split("|")[3].split()[0])
    assert 40.0 < measured < 80.0 and "≥ 200 Hz | FAIL" in row, row


def test_hil_launch_on_a_real_arm_moves_nothing_without_confirmation(ros_env, launcher, tmp_path: Path):
    """sim:=false with allow_motion:=true but no terminal to confirm on: motion checks are skipped, and reported."""
    launcher.start(robot="panda")  # stands in for a real arm's driver; stopped after the test
    result = run_launch("hil_test.launch.xml", ros_env, f"output_dir:={tmp_path}", "sim:=false",
                        "allow_motion:=true")
    assert result.returncode == 0, result.stdout + result.stderr
    cases, report = hil_report(tmp_path)
    assert cases["test_small_motion_tracks"] == cases["test_stop_mid_motion"] == "skipped", cases
    assert "no terminal to confirm motion on" in report and "0 failed, 2 skipped" in report
    assert "goals reaching the controller | 0 goals" in report


@pytest.mark.parametrize("preset", ["no_such_preset"])
def test_hil_suite_names_a_bad_preset_in_one_line(ros_env, preset: str):
    result = subprocess.run([sys.executable, "-m", "mtrl_robot.ros.hil_suite", "--ros-args", "-p",
                             f"preset:={preset}"], env=ros_env, capture_output=True, text=True,
                            timeout=RUN_TIMEOUT)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "unknown hardware preset 'no_such_preset'" in result.stderr
