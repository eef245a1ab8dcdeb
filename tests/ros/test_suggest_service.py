"""The adaptation node's ``~/suggest``: the next target to demonstrate, answered by a real node process.

A tiny probabilistic run (seconds), with a spread calibration written into it, is the checkpoint; with no episodes
recorded the node suggests from the prior's calibrated draws, exactly what
:func:`~mtrl_robot.learning.reaching.suggest.suggest_next` gives; with a plain MAML checkpoint and no episodes it says
in one line what it needs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from node_process import NodeProcess
from std_srvs.srv import Trigger
from test_reaching_eval import TINY

from mtrl_robot.arms.loader import load_arm
from mtrl_robot.cli.main import main
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.suggest import suggest_next
from mtrl_robot.ros.run import node_command


def _checkpoint(root: Path, *overrides: str) -> Path:
    (root / "tiny.yaml").write_text(TINY)
    sets = [arg for override in overrides for arg in ("--set", override)]
    assert main(["reaching", "train", str(root / "tiny.yaml"), "-o", str(root / "run"), *sets]) == 0
    return root / "run" / "checkpoints" / "panda.pt"


@pytest.fixture(scope="module")
def probabilistic(tmp_path_factory) -> Path:
    path = _checkpoint(tmp_path_factory.mktemp("pmaml"), "meta.variant=probabilistic")
    state = checkpoints.load(path)
    state.info["spread_calibration"] = {"ks": [0, 2], "scales": [4.0, 2.0], "noises": [0.05, 0.01],
                                        "step": state.learner.step}
    state.save(path)
    return path


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("maml"))


def _ask(ros_client, ros_env, tmp_path: Path, checkpoint: Path) -> tuple[Trigger.Response, str]:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    node = NodeProcess(node_command("adaptation_node", {"checkpoint": checkpoint, "recordings_dir": recordings,
                                                        "robot": "panda", "suggest_candidates": 30,
                                                        "suggest_samples": 8, "suggest_seed": 4}),
                       tmp_path / "adaptation.log", ros_env)
    service = ros_client.node.create_client(Trigger, "/adaptation_node/suggest")
    try:
        assert service.wait_for_service(timeout_sec=30.0), node.output()
        reply = ros_client.wait(service.call_async(Trigger.Request()), 30.0)
    finally:
        ros_client.destroy(service)
        code = node.stop()
    assert code == 0, node.output()
    return reply, node.output()


def test_suggest_service_answers_the_most_uncertain_target(probabilistic, ros_client, ros_env, tmp_path):
    reply, log = _ask(ros_client, ros_env, tmp_path, probabilistic)
    assert reply.success, reply.message + log
    answer = json.loads(reply.message)
    state = checkpoints.load(probabilistic)
    arm = load_arm("panda", "", "", "")
    n_waypoints = int(state.info["n_waypoints"])
    expected = suggest_next(state, arm, torch.zeros((0, 3)), torch.zeros((0, n_waypoints, arm.dof)), 30, 8, 4)
    assert answer == expected.to_dict() and answer["demos"] == 0 and answer["measure"] == "latent draws (calibrated)"
    assert np.isfinite(answer["target"]).all() and "next target for panda" in log


def test_suggest_service_says_what_plain_maml_needs(plain, ros_client, ros_env, tmp_path):
    reply, log = _ask(ros_client, ros_env, tmp_path, plain)
    assert not reply.success and "needs at least 2 demos (got 0)" in reply.message
    assert len(reply.message.splitlines()) == 1 and "Traceback" not in log
