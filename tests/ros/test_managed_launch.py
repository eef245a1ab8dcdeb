"""The few-shot adaptation launch with a real arm's preset, its simulated arm standing in for the driver: the
policy node comes up configured but inactive, until a person activates it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from ros_events import logged
from test_managed_nodes import STARTUP_TIMEOUT, mtrl_robot_ros, swing_model

LAUNCH = Path(__file__).resolve().parents[2] / "launch" / "few_shot_adaptation.launch.xml"


def test_few_shot_launch_with_a_real_arms_preset_leaves_the_policy_node_inactive(ros_env, ros_log, tmp_path):
    model = swing_model(tmp_path / "swing.model.pt")
    log = tmp_path / "launch.log"
    start = len(ros_log)
    with log.open("w") as sink:
        launch = subprocess.Popen([sys.executable, "-m", "mtrl_robot.tools.launch_runner", str(LAUNCH),
                                   "preset:=franka_panda", f"model:={model}", f"recordings_dir:={tmp_path / 'rec'}"],
                                  env=ros_env, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT)
    try:
        logged(ros_log, "preset 'franka_panda' is a real arm's: policy_node stays inactive until a person activates "
                        "it (`mtrl-robot ros activate /policy_node`)", STARTUP_TIMEOUT, start)
        state = mtrl_robot_ros(ros_env, "state", "/policy_node")
        assert state.stdout == "/policy_node: inactive\n", state
        activated = mtrl_robot_ros(ros_env, "activate", "/policy_node")
        assert activated.stdout == "/policy_node: active\n", activated
    finally:
        launch.send_signal(signal.SIGINT)
        code = launch.wait(timeout=60)
    assert code == 0, log.read_text()[-3000:]
