"""Which demonstration next: the most uncertain candidate, seeded; bad input in one line; suggested vs random."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_reaching_eval import TINY

from mtrl_robot.cli.main import main
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching import suggest
from mtrl_robot.learning.reaching.data import to_tensors
from mtrl_robot.meta.probabilistic import SpreadCalibration
from mtrl_robot.motions.dataset import load as load_demos


def _train(root, name: str, *overrides: str):
    (root / "tiny.yaml").write_text(TINY)
    run = root / name
    sets = [arg for override in overrides for arg in ("--set", override)]
    assert main(["reaching", "train", str(root / "tiny.yaml"), "-o", str(run), *sets]) == 0
    return run


@pytest.fixture(scope="module")
def probabilistic_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("suggest"), "pmaml", "meta.variant=probabilistic")


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("suggest"), "maml")


def _held_out(run, k: int):
    state = checkpoints.load(run / "checkpoints" / "panda.pt")
    robot = state.info["held_out"][0]
    demos = load_demos(run / "demos.npz").for_robot(robot)
    data = to_tensors(demos, state.joint_names, int(state.info["n_waypoints"]))
    return state, demos.robots[0], data.targets[:k], data.offsets[:k]


@pytest.mark.parametrize("k", [0, 2])
def test_the_suggestion_is_the_best_candidate_by_its_criterion_and_seeded(probabilistic_run, k):
    state, arm, targets, offsets = _held_out(probabilistic_run, k)
    candidates = suggest.candidate_targets(arm, 40, 5)
    state.learner.generator.manual_seed(5)
    finals = suggest.final_flange_samples(state, arm, targets, offsets, candidates, 16)
    spreads = suggest.spread(finals)
    assert spreads.max() > spreads.min() > 0.0  # the candidates differ: choosing among them means something
    for criterion, score in (("spread", spreads), ("variance_reduction", suggest.variance_reduction(finals))):
        suggestion = suggest.suggest_next(state, arm, targets, offsets, 40, 16, 5, criterion)
        best = int(np.argmax(score))
        assert np.array_equal(suggestion.target, candidates[best]) and suggestion.criterion == criterion
        assert suggestion.spread_m == pytest.approx(spreads[best]) and suggestion.demos == k
        again = suggest.suggest_next(state, arm, targets, offsets, 40, 16, 5, criterion)
        assert np.array_equal(again.target, suggestion.target) and again.spread_m == suggestion.spread_m
        other = suggest.suggest_next(state, arm, targets, offsets, 40, 16, 6, criterion)
        assert not np.array_equal(other.target, suggestion.target)


def test_a_calibrated_model_suggests_from_its_widened_draws(probabilistic_run):
    state, arm, targets, offsets = _held_out(probabilistic_run, 2)
    candidates = suggest.candidate_targets(arm, 30, 5)
    state.learner.generator.manual_seed(5)
    raw = suggest.spread(suggest.final_flange_samples(state, arm, targets, offsets, candidates, 16))
    assert suggest.suggest_next(state, arm, targets, offsets, 30, 16, 5).measure == "latent draws"
    state.learner.spread_calibration = SpreadCalibration((0, 5), (3.0, 3.0), (0.0, 0.0))
    state.learner.generator.manual_seed(5)  # the same latent draws, three times as far from their mean
    widened = suggest.spread(suggest.final_flange_samples(state, arm, targets, offsets, candidates, 16))
    assert 2.0 < np.median(widened / raw) < 4.0
    assert suggest.suggest_next(state, arm, targets, offsets, 30, 16, 5).measure == "latent draws (calibrated)"


def test_variance_reduction_prefers_a_target_whose_uncertainty_is_shared():
    rng = np.random.default_rng(0)
    shared = rng.normal(0.0, 0.01, (64, 1, 3))  # three candidates move together, a fourth alone (more)
    finals = np.concatenate([shared, shared, shared, rng.normal(0.0, 0.015, (64, 1, 3))], axis=1)
    assert np.argmax(suggest.spread(finals)) == 3 and np.argmax(suggest.variance_reduction(finals)) < 3


def test_plain_maml_uses_leave_one_out_and_refuses_one_demo(plain_run):
    state, arm, targets, offsets = _held_out(plain_run, 3)
    suggestion = suggest.suggest_next(state, arm, targets, offsets, candidates=30, seed=1)
    assert suggestion.measure == "leave-one-out" and suggestion.spread_m > 0.0
    with pytest.raises(ValueError, match="leave-one-out adaptation, which needs at least 2 demos"):
        suggest.suggest_next(state, arm, targets[:1], offsets[:1], candidates=30, seed=1)


def test_suggest_command_prints_the_target_as_json(probabilistic_run, capsys):
    state, arm, _, _ = _held_out(probabilistic_run, 0)
    demos = probabilistic_run / "demos.npz"
    assert main(["reaching", "suggest", str(probabilistic_run), "--demos", str(demos), "--robot", arm.robot_id,
                 "--candidates", "20", "--samples", "8", "--seed", "3"]) == 0
    line, reply = capsys.readouterr().out.strip().splitlines()
    printed = json.loads(reply)
    expected = suggest.suggest_cli(probabilistic_run, demos, arm.robot_id, candidates=20, samples=8, seed=3)
    assert printed == expected.to_dict() and printed["demos"] == 6
    assert line.startswith(f"next target for {arm.robot_id}")


@pytest.mark.parametrize(("args", "problem"), [
    (["--demos", "{run}/missing.npz"], "missing.npz"),
    (["--demos", "{run}/demos.npz"], "holds 4 robots; name one with --robot"),
    (["--demos", "{run}/demos.npz", "--robot", "nobody"], "nobody"),
    (["--demos", "{run}/demos.npz", "--robot", "x", "--candidates", "0"], "--candidates"),
])
def test_suggest_bad_input_is_one_line(probabilistic_run, capsys, args, problem):
    argv = ["reaching", "suggest", str(probabilistic_run), *(a.format(run=probabilistic_run) for a in args)]
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse refuses a bad option value itself
        status = exit_.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and problem in err and "Traceback" not in err


def test_suggest_compare_measures_suggested_and_random_demos(probabilistic_run, tmp_path, capsys):
    assert main(["reaching", "suggest-compare", str(probabilistic_run), "-o", str(tmp_path), "--ks", "1", "2",
                 "--targets", "2", "--candidates", "20", "--samples", "8"]) == 0
    assert "| all | suggested: variance reduction |" in capsys.readouterr().out
    results = json.loads((tmp_path / "suggest.json").read_text())
    (robot, measured), = results["per_robot"].items()
    names = ("random", "variance_reduction", "spread")
    assert set(measured["errors_cm"]) == set(names) and len(measured["suggested"]["spread"]["targets"]) == 2
    assert all(len(measured["errors_cm"][name][k]) == 2 for name in names for k in ("1", "2"))
    assert (tmp_path / "suggest.png").stat().st_size > 0 and (tmp_path / "suggest.md").is_file()
