"""Puck-hitting adaptation through ROS: the launch file's arm node (puck scene, paddle, camera), perception
node and puck node as real processes; the puck's outcomes come from the camera."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from ros_events import logged

from mtrl_robot.learning.puck.train import META_FILE, load_policy, load_preset, train_puck
from mtrl_robot.scenes.puck_table import load_scene

LAUNCH = Path(__file__).resolve().parents[2] / "launch" / "puck_hitting.launch.xml"
RUN_TIMEOUT = 240.0  # s for start-up and four hits on a loaded machine


def test_puck_hitting_launch_adapts_from_camera_measured_hits(ros_env, ros_log, tmp_path):
    run = train_puck(replace(load_preset("small"), observe_start=True), tmp_path / "run", progress=False)
    out, adapted = tmp_path / "adaptation.json", tmp_path / "adapted.pt"
    log = tmp_path / "launch.log"
    command = [sys.executable, "-m", "mtrl_robot.cli.main", "launch", str(LAUNCH), f"run_dir:={run}", "steps:=1",
               "rollouts:=2", "eval_goals:=1", f"output_file:={out}", f"policy_file:={adapted}"]
    start = len(ros_log)
    with log.open("w") as sink:
        launch = subprocess.Popen(command, env=ros_env, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:  # in slices, to notice a launch that ends early
            try:
                logged(ros_log, "adaptation done", timeout=1.0, start=start)  # logged once the file is written
                break
            except AssertionError:
                assert launch.poll() is None, f"the launch ended early:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"no adaptation result:\n{log.read_text()[-3000:]}"
    finally:
        launch.send_signal(signal.SIGINT)
        code = launch.wait(timeout=30)
    assert code == 0, log.read_text()[-3000:]
    result = json.loads(out.read_text())
    assert (result["hits"], result["refused"]) == (4, 0), result  # 1 scored + 2 exploring + 1 scored
    assert len(result["mean_distance_cm"]) == 2 and all(math.isfinite(d) for d in result["mean_distance_cm"])
    scene = load_scene("puck_table")
    (cx, cy), (sx, sy) = scene.table_center, scene.table_size
    seen = [hit["final"] for hit in result["hit_record"] if hit["final"] is not None]
    assert seen, log.read_text()[-3000:]  # the camera found the puck at rest after at least one hit
    for x, y in seen:
        assert abs(x - cx) <= sx / 2 and abs(y - cy) <= sy / 2  # on the table
        assert math.dist((x, y), scene.puck_start) > 0.02  # and the hit moved it
    assert "hit 4:" in log.read_text()
    # The policy observes the puck's start: the one the camera measured before the first hit (the reset service
    # puts the puck back there), not the nominal start.
    starts = {tuple(hit["start"]) for hit in result["hit_record"]}
    assert len(starts) == 1, result["hit_record"]
    (start,) = starts
    assert start != tuple(scene.puck_start) and math.dist(start, scene.puck_start) <= 0.01
    assert "the policy observes the puck's start, measured at" in log.read_text()
    trained, policy = load_policy(run / META_FILE), load_policy(adapted)  # the policy adapted on the arm, written
    assert result["policy_file"] == str(adapted) and policy.config == trained.config
    assert any(not torch.equal(a, b) for a, b in zip(policy.policy.parameters(), trained.policy.parameters(),
                                                     strict=True))
