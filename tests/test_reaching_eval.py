"""The reaching verbs end to end on a tiny run, through the command line: train, adapt, and the evaluation (MuJoCo
execution, every method at K = 0 and after adaptation, the fine-tuning step size tuned on validation robots, table
and plot)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.fk import CompiledChain
from mtrl_robot.cli.main import main
from mtrl_robot.learning.reaching.checkpoint import load, model_file_path
from mtrl_robot.learning.reaching.evaluate import LABELS, METHODS, NOT_TRAINED, VALIDATION_ROBOTS
from mtrl_robot.learning.reaching.predict import predict_positions
from mtrl_robot.models.model_file import load_model_file
from mtrl_robot.motions.dataset import load as load_demos

TINY = """\
name: tiny
data:
  families: [panda]
  robots_per_family: 4
  held_out_per_family: 1
  demos_per_robot: 6
model:
  latent_dim: 4
  vae_hidden: [32]
  policy_hidden: [32, 32]
pretrain:
  nominal_demos: 40
  vae_steps: 20
  policy_steps: 40
  batch_size: 32
meta:
  adapt_only: [policy.head]
  k_support: 2
  k_query: 3
  inner_steps: 1
  meta_batch_size: 2
  meta_steps: 4
  checkpoint_every: 4
adapt:
  steps: 3
  k: 2
compute:
  workers: 1
  threads: 1
"""


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("reaching")
    (root / "tiny.yaml").write_text(TINY)
    run, out = root / "run", root / "eval"
    assert main(["reaching", "train", str(root / "tiny.yaml"), "-o", str(run)]) == 0
    assert main(["reaching", "evaluate", str(run), "-o", str(out), "--ks", "0", "1", "2", "--targets", "2", "--seed",
                 "7", "--scratch-steps", "30", "--multitask-budget", "0.5", "--finetune-lrs", "0.001", "0.01",
                 "--per-robot", "--set", "compute.workers=1"]) == 0  # one held-out robot: no process pool
    paths = out / "reaching.md", out / "reaching.png", out / "reaching.json"
    return paths, json.loads(paths[2].read_text()), run


def test_adapt_command_writes_an_adapted_checkpoint_for_a_held_out_robot(evaluated, tmp_path, capsys):
    run = evaluated[2]
    robot = load(run / "checkpoints" / "panda.pt").info["held_out"][0]
    out = tmp_path / "adapted.pt"
    assert main(["reaching", "adapt", str(run), str(run / "demos.npz"), "--robot", robot, "-k", "2", "-o",
                 str(out)]) == 0
    printed = capsys.readouterr().out
    assert load(out).info["adaptation"]["robot_id"] == robot and str(out) in printed
    guard = load(out).info["adaptation"]["guard"]  # what the adaptation guard did: said, and kept in the checkpoint
    assert guard["k"] == 2 and guard["outcome"] in ("adapted", "shrunk", "fell back")
    assert printed.splitlines()[0].startswith("adaptation guard: ")
    assert printed.splitlines()[1].startswith("kinematics calibrated from 2 demo(s): their last postures put the "
                                              "flange within ")
    # the model file carries the calibrated chain, and its predictions end on the target through it
    model = load_model_file(model_file_path(out))
    demos = load_demos(run / "demos.npz").for_robot(robot)
    targets = demos.targets[2:5]  # demos it did not adapt on
    ends = predict_positions(model, demos.robots[0], targets)[:, -1]
    reached = CompiledChain(Arm.from_dict(model.kinematics)).flange_positions(ends)
    assert np.abs(reached - targets).max() < 1e-5
    assert main(["reaching", "adapt", str(run), str(run / "demos.npz"), "--robot", robot, "-k", "2", "-o",
                 str(out)]) == 2  # never overwrites
    assert "never overwrites" in capsys.readouterr().err


def test_the_training_report_holds_held_out_errors_for_fresh_targets(evaluated):
    run = evaluated[2]
    report = json.loads((run / "report.json").read_text())["panda"]["held_out"]
    assert report["k"] == 2 and set(report["errors_cm"]) == {"no_adaptation", "maml"}
    assert all(len(v) == report["targets_per_robot"] for v in report["errors_cm"].values())
    assert "| panda | " in (run / "report.md").read_text()


def test_files_and_rows(evaluated):
    (table, plot, data), results, _ = evaluated
    assert table.is_file() and plot.is_file() and plot.stat().st_size > 1000
    text = table.read_text()
    assert "| K = 0 | K = 1 | K = 2 |" in text
    for method in METHODS:
        assert f"| panda | {LABELS[method]} |" in text
    # no probabilistic checkpoint in this run: listed, not measured
    assert NOT_TRAINED in text and results["skipped"]["panda"]["pmaml"] == NOT_TRAINED
    # the guard's decision for every held-out robot and K, counted above the table
    decisions = [d for robot in results["per_robot_cm"].values() for d in robot["guard"]["maml"].values()]
    assert len(decisions) == 2 and sum(results["guard"]["panda"]["maml"]["1"].values()) == 1
    assert "Adaptation guard" in text.split("| family |")[0]
    robot = next(iter(results["per_robot_cm"]))  # --per-robot: each held-out robot's mean error, method by method
    assert f"| {robot} | " in text and "| robot | no adaptation (meta-trained init) | fine-tune" in text


def test_numbers_finite_and_oracle_is_floor(evaluated):
    _, results, _ = evaluated
    panda = results["summary"]["panda"]
    assert set(panda) == set(METHODS) - {"pmaml"}
    for by_k in panda.values():
        for k in ("1", "2"):
            assert by_k[k]["n"] == 2 and math.isfinite(by_k[k]["mean"]) and by_k[k]["mean"] >= 0
    oracle = panda["ik_oracle"]["1"]["mean"]
    assert oracle < 1.0  # executed in MuJoCo: the executor tracks a planned trajectory to within a centimetre
    for method in ("no_adaptation", "finetune", "scratch", "maml"):
        for k in ("1", "2"):
            assert oracle < panda[method][k]["mean"], method
    # the same two demos calibrate the kinematics that place the adapted path's end: far closer than the tiny model
    assert panda["maml_calibrated"]["2"]["mean"] < panda["maml"]["2"]["mean"] / 3


def test_k_0_is_every_model_as_trained(evaluated):
    (table, _, _), results, _ = evaluated
    panda = results["summary"]["panda"]
    assert panda["maml"]["0"] == panda["no_adaptation"]["0"]  # MAML without demos: the meta-trained init
    assert panda["finetune"]["0"]["n"] == 2 and "0" not in panda["scratch"]  # nothing to train from scratch on
    assert f"| panda | {LABELS['scratch']} | – | " in table.read_text()


def test_fine_tuning_takes_the_step_size_chosen_on_robots_the_run_never_saw(evaluated, tmp_path):
    (table, _, _), results, run = evaluated
    tuned = results["finetune_lr"]["panda"]
    sweep = json.loads((table.parent / "finetune_sweep" / "panda" / "finetune_sweep.json").read_text())
    assert tuned == sweep["chosen"] and set(tuned) == {"1", "2"} and set(tuned.values()) <= {0.001, 0.01}
    assert all(min(sweep["errors_cm"], key=lambda lr, k=k: sweep["errors_cm"][lr][k]["mean"]) == str(lr)
               for k, lr in tuned.items())  # the lowest mean error on the validation robots
    validation = results["validation"]["robots"]["panda"]
    state = load(run / "checkpoints" / "panda.pt")
    assert len(validation) == VALIDATION_ROBOTS and sweep["validation_robots"] == {"panda": validation}
    assert not set(validation) & {*state.info["robot_ids"], *state.info["held_out"]}
    assert f"panda K = 1 {tuned['1']:g}, K = 2 {tuned['2']:g}" in table.read_text()

    # a second evaluation into the same folder reuses the sweep (here tampered with, to see it is not measured again)
    out = tmp_path / "eval"
    shutil.copytree(table.parent, out)
    other = "0.001" if tuned["1"] == 0.01 else "0.01"
    sweep["errors_cm"][other]["1"]["mean"] = -1.0
    (out / "finetune_sweep" / "panda" / "finetune_sweep.json").write_text(json.dumps(sweep))
    assert main(["reaching", "evaluate", str(run), "-o", str(out), "--ks", "1", "--targets", "1", "--seed", "7",
                 "--methods", "finetune", "--finetune-lrs", "0.001", "0.01", "--set",
                 "compute.workers=1"]) == 0
    again = json.loads((out / "reaching.json").read_text())
    assert again["finetune_lr"] == {"panda": {"1": float(other)}}
    # another grid is another sweep: measured, and the tampered number gone
    assert main(["reaching", "evaluate", str(run), "-o", str(out), "--ks", "1", "--targets", "1", "--seed", "7",
                 "--methods", "finetune", "--finetune-lrs", "0.001", "0.01", "0.1", "--set",
                 "compute.workers=1"]) == 0
    remeasured = json.loads((out / "finetune_sweep" / "panda" / "finetune_sweep.json").read_text())
    assert remeasured["step_sizes"] == [0.001, 0.01, 0.1] and remeasured["errors_cm"]["0.001"]["1"]["mean"] > 0


def test_video_shows_a_held_out_robot_before_and_after_adaptation(evaluated, tmp_path, capsys):
    import imageio_ffmpeg
    import numpy as np

    from mtrl_robot.evaluation.video import FPS, HOLD, PANEL_SIZE
    from mtrl_robot.learning.reaching.evaluate import VIDEO_TARGETS

    run = evaluated[2]
    assert main(["reaching", "evaluate", str(run), "-o", str(tmp_path), "--ks", "2", "--targets", "1", "--methods",
                 "maml", "--video"]) == 0
    video = tmp_path / "reaching_panda.mp4"
    assert f"videos: {video}" in capsys.readouterr().out
    reader = imageio_ffmpeg.read_frames(str(video))
    meta = reader.__next__()
    assert tuple(meta["size"]) == (2 * PANEL_SIZE[0], PANEL_SIZE[1]) and meta["fps"] == FPS
    frames = [np.frombuffer(f, np.uint8).reshape(PANEL_SIZE[1], 2 * PANEL_SIZE[0], 3) for f in reader]
    assert len(frames) >= VIDEO_TARGETS * HOLD * FPS  # every clip, each held at rest at its end
    first, last = frames[0].astype(int), frames[-1].astype(int)
    assert np.abs(first[:, :PANEL_SIZE[0]] - first[:, PANEL_SIZE[0]:]).mean() < 2  # both start at home
    assert np.abs(last[:, :PANEL_SIZE[0]] - last[:, PANEL_SIZE[0]:]).mean() > 0.05  # and end apart
    assert np.abs(first - last).mean() > 1  # the arm moved
    green = (first[..., 1] > 150) & (first[..., 0] < 80) & (first[..., 2] < 100)
    assert green[:, :PANEL_SIZE[0]].sum() > 20 and green[:, PANEL_SIZE[0]:].sum() > 20  # the target in both panels


def test_the_one_demo_confidence_is_measured_on_validation_robots(evaluated, tmp_path, capsys):
    from mtrl_robot.learning.reaching.single_demo import CHECK_CHAINS
    from mtrl_robot.learning.reaching.single_demo_confidence import CONFIDENCES, kept

    run = evaluated[2]
    assert main(["reaching", "single-demo", str(run), "-o", str(tmp_path), "--validation-robots", "2", "--targets",
                 "2"]) == 0
    results = json.loads((tmp_path / "single_demo.json").read_text())
    cases = results["cases"]["panda"]
    assert [c["robot"] for c in cases] == ["panda-004", "panda-005"]  # after the run's 4 robots: never seen by it
    rows = results["confidences"]
    assert [r["confidence"] for r in rows] == [None, *CONFIDENCES] and len(cases[0]["adapted"]) == 2
    judged = [c["judged"] for c in cases if c["judged"] is not None]
    assert judged and all(len(j[0]) == len(j[1]) == CHECK_CHAINS for j in judged)  # one prediction per chain
    for row in rows:  # a robot is worse when the model the confidence keeps ends worse than the initialisation
        assert row["worse"] == [c["robot"] for c in cases if np.mean(kept(c, row["confidence"])) >
                                np.mean(c["no_adaptation"])]
    for c in cases:  # a share of 0 always adapts; a share of 1 adapts only when every chain predicts it better
        assert kept(c, 0.0) == c["adapted"]
        everywhere = c["judged"] is None or min(np.subtract(*c["judged"])) >= results["check_margin_cm"]
        assert kept(c, 1.0) == (c["adapted"] if everywhere else c["no_adaptation"])
    chosen = next((r for r in rows[1:] if r["confidence"] == results["chosen"]), None)
    assert chosen is None or chosen["all"]["mean"] <= rows[0]["all"]["mean"]  # gives up none of the mean gain
    assert "| no adaptation (meta-trained init) |" in capsys.readouterr().out


def test_a_robot_is_worse_than_the_same_method_without_adapting_where_the_table_has_it():
    """Probabilistic MAML's robot is judged against its own prior (K = 0 column), not MAML's initialisation: r1 ends
    at 2 cm after one demo, better than its prior's 3 cm but worse than MAML's 1 cm. Without a K = 0 column, MAML's
    initialisation is the reference for every method."""
    from mtrl_robot.learning.reaching.evaluate import robots_note

    per_robot = {"r1": {"no_adaptation": {"0": [1.0], "1": [1.0]}, "maml": {"0": [1.0], "1": [1.5]},
                        "pmaml": {"0": [3.0], "1": [2.0]}},
                 "r2": {"no_adaptation": {"0": [4.0], "1": [4.0]}, "maml": {"0": [4.0], "1": [0.5]},
                        "pmaml": {"0": [1.0], "1": [1.2]}}}
    results = {"methods": ["no_adaptation", "maml", "pmaml"], "ks": [0, 1], "per_robot_cm": per_robot}
    note = robots_note(results)
    assert "(the same method at K = 0; the meta-trained initialisation for MAML)" in note
    assert f"{LABELS['maml']}: K = 1 r1 1.50 (1 worse than without adapting: r1)" in note
    assert f"{LABELS['pmaml']}: K = 1 r1 2.00 (1 worse than without adapting: r2)" in note
    without_k0 = {r: {m: {"1": e[m]["1"]} for m in e} for r, e in per_robot.items()}
    note = robots_note({**results, "ks": [1], "per_robot_cm": without_k0})
    assert "K = 0" not in note and f"{LABELS['pmaml']}: K = 1 r1 2.00 (1 worse than without adapting: r1)" in note
