"""The teaching procedure behind ``mtrl-robot teach`` (mtrl_robot/motions/teaching.py), without ROS or a terminal:
keys and replies in, requests out, on real episode bags."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.motions.dataset import DatasetError
from mtrl_robot.motions.reach import plan_reach
from mtrl_robot.motions.recording import Episode, write_recording
from mtrl_robot.motions.teaching import (
    Activate,
    Adapt,
    Reach,
    Reply,
    Stage,
    StartEpisode,
    StopEpisode,
    Suggest,
    Teaching,
    discard_bag,
    summarize_episode,
    workspace_targets,
)

ARM = load_family("panda")


def planned_bag(folder: Path, name: str, target: np.ndarray) -> Path:
    """A bag like the recorder's: one episode, the planned move home → ``target``, joints in reverse order."""
    demo = plan_reach(ARM, target[None])
    order = list(reversed(range(ARM.dof)))
    episode = Episode(target, tuple(ARM.joint_names[i] for i in order), demo.times[0],
                      demo.positions[0][:, order], demo.velocities[0][:, order])
    return write_recording(folder / name, [episode])


def record(teaching: Teaching, folder: Path, name: str) -> Path:
    """The person records one demonstration of the shown target (through the replies the nodes would give)."""
    start = teaching.press("r")
    assert start == StartEpisode(teaching.target) and teaching.keys() == ()
    teaching.reply(Reply(start, True, str(folder / name)))
    assert teaching.stage is Stage.RECORDING
    stop = teaching.press("s")
    assert stop == StopEpisode()
    bag = planned_bag(folder, name, start.target)
    teaching.reply(Reply(stop, True, str(bag)))
    assert teaching.stage is Stage.REVIEW and not teaching.problem, teaching.notice
    return bag


def test_workspace_targets_depend_on_the_seed_only():
    first = list(itertools.islice(workspace_targets(ARM, 3), 4))
    again = list(itertools.islice(workspace_targets(ARM, 3), 4))
    other = next(workspace_targets(ARM, 4))
    assert np.array_equal(first, again) and len({tuple(t) for t in first}) == 4
    assert not np.array_equal(first[0], other)


def test_summary_of_a_recorded_episode(tmp_path):
    target = next(workspace_targets(ARM, 0))
    bag = planned_bag(tmp_path, "demo_1", target)
    demo = plan_reach(ARM, target[None])
    summary = summarize_episode(bag, ARM)
    assert summary.samples == demo.times.shape[1] and summary.duration == pytest.approx(demo.times[0, -1], abs=1e-9)
    assert np.allclose(summary.start, flange_position(ARM, ARM.home_q), atol=1e-9)
    assert np.allclose(summary.target, target) and summary.distance < 1e-3


def test_summary_names_a_joint_the_recording_lacks(tmp_path):
    episode = Episode(np.zeros(3), ARM.joint_names[:-1], np.array([0.0, 0.1]), np.zeros((2, ARM.dof - 1)))
    bag = write_recording(tmp_path / "short", [episode])
    with pytest.raises(DatasetError, match=f"short: joint {ARM.joint_names[-1]} of panda-nominal not in the recorded"):
        summarize_episode(bag, ARM)


def test_discard_moves_the_bag_aside(tmp_path):
    bag = planned_bag(tmp_path, "demo_1", next(workspace_targets(ARM, 0)))
    moved = discard_bag(bag)
    assert moved == tmp_path / "discarded" / "demo_1" and (moved / "metadata.yaml").is_file() and not bag.exists()


def test_k_demonstrations_one_discarded_then_adapt_and_test(tmp_path):
    teaching = Teaching(ARM, 2, workspace_targets(ARM, 0))
    assert teaching.stage is Stage.TARGET and [k for k, _ in teaching.keys()] == ["r", "n", "q"]
    assert teaching.press("a") is None and teaching.press("s") is None  # not now: ignored

    shown = teaching.target
    assert teaching.press("n") is None and not np.array_equal(teaching.target, shown)
    first = record(teaching, tmp_path, "demo_1")
    assert teaching.press("d") is None and teaching.stage is Stage.TARGET
    assert not first.exists() and teaching.discarded == [tmp_path / "discarded" / "demo_1"]
    for name in ("demo_2", "demo_3"):
        record(teaching, tmp_path, name)
        teaching.press("k")
    assert [d.bag.name for d in teaching.kept] == ["demo_2", "demo_3"] and teaching.can_adapt
    assert "press a to adapt" in teaching.notice

    adapt = teaching.press("a")
    assert adapt == Adapt() and teaching.press("t") is None
    teaching.reply(Reply(adapt, False, "2 episodes needed, 1 recorded"))
    assert teaching.stage is Stage.TARGET and teaching.problem and "2 episodes needed" in teaching.notice
    adapt = teaching.press("a")
    teaching.reply(Reply(adapt, True, "out/panda-k2.model.pt"))
    assert teaching.stage is Stage.TESTING and teaching.model == "out/panda-k2.model.pt"

    reach = teaching.press("t")
    assert isinstance(reach, Reach) and np.array_equal(reach.target, teaching.target)
    teaching.reply(Reply(reach, True, reached=reach.target + [0.0, 0.003, 0.004]))
    assert teaching.tests[-1].error == pytest.approx(0.005) and "0.50 cm" in teaching.notice
    assert not np.array_equal(teaching.target, reach.target)
    failed = teaching.press("t")
    teaching.reply(Reply(failed, False, "policy_node: no reached point within 60 s"))
    assert teaching.tests[-1].error is None and teaching.problem and teaching.stage is Stage.TESTING

    activate = teaching.press("p")  # a real arm's policy node waits inactive until a person activates it
    assert activate == Activate() and teaching.keys() == ()
    teaching.reply(Reply(activate, False, "/policy_node refused or failed to activate; it is inactive"))
    assert teaching.problem and "refused" in teaching.notice and teaching.stage is Stage.TESTING
    teaching.reply(Reply(teaching.press("p"), True, "active"))
    assert not teaching.problem and teaching.notice == "policy node: active"

    assert teaching.press("r") is None and teaching.stage is Stage.TARGET  # record more, adapt again
    assert "a" in [k for k, _ in teaching.keys()]
    teaching.press("q")
    assert teaching.stage is Stage.DONE


def test_demonstration_targets_are_the_adaptation_nodes_suggestions_or_else_workspace_samples(tmp_path):
    samples = workspace_targets(ARM, 0)
    teaching = Teaching(ARM, 2, workspace_targets(ARM, 0), suggestions=True, sample_source="workspace sample, seed 0")
    first_sample = next(samples)
    ask = teaching.start()
    assert ask == Suggest() and teaching.keys() == () and "asking" in teaching.notice  # the person waits
    suggested = flange_position(ARM, ARM.home_q + 0.2)
    teaching.reply(Reply(ask, True, json.dumps({"target": suggested.tolist(), "spread_m": 0.0123, "demos": 0})))
    assert np.array_equal(teaching.target, suggested) and not np.array_equal(suggested, first_sample)
    assert teaching.target_source == "suggested by the adaptation node: predicted spread 1.23 cm, 0 demos"
    bag = record(teaching, tmp_path, "demo_0")
    assert np.array_equal(summarize_episode(bag, ARM).target, suggested)  # the suggested target is demonstrated
    ask = teaching.press("k")
    assert ask == Suggest() and teaching.stage is Stage.TARGET and "press" not in teaching.notice  # no key works yet
    teaching.reply(Reply(ask, False, "adaptation_node: service /adaptation_node/suggest is not available"))
    assert np.array_equal(teaching.target, next(samples)) and not teaching.problem and "kept" in teaching.notice
    assert teaching.target_source == ("workspace sample, seed 0; no suggestion: adaptation_node: service "
                                      "/adaptation_node/suggest is not available")
    ask = teaching.press("n")
    teaching.reply(Reply(ask, True, '{"target": [0.1, "x"]}'))
    assert np.array_equal(teaching.target, next(samples)) and "unreadable suggestion" in teaching.target_source
    assert teaching.notice == "new target"


def test_without_suggestions_nothing_is_asked():
    teaching = Teaching(ARM, 1, workspace_targets(ARM, 0))
    assert teaching.start() is None and teaching.press("n") is None and teaching.target_source == "workspace sample"


def test_failed_requests_leave_the_procedure_where_it_was(tmp_path):
    teaching = Teaching(ARM, 1, workspace_targets(ARM, 0))
    start = teaching.press("r")
    teaching.reply(Reply(start, False, "no target received on /demo_target yet"))
    assert teaching.stage is Stage.TARGET and teaching.problem and "/demo_target" in teaching.notice
    teaching.reply(Reply(teaching.press("r"), True))
    stop = teaching.press("s")
    teaching.reply(Reply(stop, False, "demo_recorder: service /demo_recorder/stop_episode not available"))
    assert teaching.stage is Stage.TARGET and "stop_episode" in teaching.notice
    teaching.reply(Reply(teaching.press("r"), True))
    stop = teaching.press("s")
    unreadable = tmp_path / "demo_9"
    unreadable.mkdir()
    teaching.reply(Reply(stop, True, str(unreadable)))
    assert teaching.stage is Stage.TARGET and teaching.problem and "unreadable" in teaching.notice
    assert teaching.discarded == [tmp_path / "discarded" / "demo_9"] and not teaching.kept


def test_interrupt_discards_the_open_and_the_undecided_episode(tmp_path):
    teaching = Teaching(ARM, 5, workspace_targets(ARM, 0))
    record(teaching, tmp_path, "demo_1")
    teaching.press("k")
    record(teaching, tmp_path, "demo_2")  # shown for review, not kept
    assert teaching.interrupt() is None and teaching.stage is Stage.DONE
    assert teaching.discarded == [tmp_path / "discarded" / "demo_2"]

    teaching = Teaching(ARM, 5, workspace_targets(ARM, 0))
    teaching.reply(Reply(teaching.press("r"), True))
    stop = teaching.interrupt()
    assert stop == StopEpisode()
    teaching.reply(Reply(stop, True, str(planned_bag(tmp_path, "demo_3", teaching.target))))
    assert teaching.discarded == [tmp_path / "discarded" / "demo_3"] and teaching.stage is Stage.DONE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo_1", "discarded"]
    assert Teaching(ARM, 5, workspace_targets(ARM, 0)).interrupt() is None


def test_the_launch_log_names_a_node_that_failed():
    from mtrl_robot.cli.teach import node_failures

    log = ("[launch] started demo_recorder (pid 1): demo_recorder --ros-args\n"
           "[INFO] [1.0] [arm_node]: panda on mujoco\n"
           "demo_recorder: output_dir: rec is not a writable folder: File exists\n"
           "[launch] demo_recorder exited with code 1\n"
           "[launch] arm_node exited with code 0\n")
    assert node_failures(log) == ["demo_recorder exited with code 1 (demo_recorder: output_dir: rec is not a "
                                  "writable folder: File exists)"]
