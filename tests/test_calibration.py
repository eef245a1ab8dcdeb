"""Calibration of probabilistic MAML's predictive spread: the coverage computation, and the command on a tiny run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_reaching_eval import TINY

from mtrl_robot.cli.main import main
from mtrl_robot.learning.reaching.calibration import LEVELS, coverage


def _ranks(truth_std: float, n: int = 4000, samples: int = 200) -> np.ndarray:
    rng = np.random.default_rng(0)
    predicted = rng.normal(0.0, 1.0, (samples, n))
    truth = rng.normal(0.0, truth_std, n)
    return (predicted < truth).mean(axis=0)


def test_coverage_is_nominal_for_a_calibrated_prediction_and_low_for_an_overconfident_one():
    assert np.abs(coverage(_ranks(1.0)) - LEVELS).max() < 0.03
    overconfident = coverage(_ranks(3.0))
    assert np.all(overconfident < LEVELS - 0.05)
    assert np.all(coverage(_ranks(0.3)) > LEVELS) and coverage(np.array([0.5]))[0] == 1.0


@pytest.fixture(scope="module")
def probabilistic_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibration")
    (root / "tiny.yaml").write_text(TINY)
    run = root / "run"
    assert main(["reaching", "train", str(root / "tiny.yaml"), "-o", str(run), "--set",
                 "meta.variant=probabilistic"]) == 0
    return run


def test_calibrate_writes_coverage_per_k(probabilistic_run, tmp_path, capsys):
    assert main(["reaching", "calibrate", str(probabilistic_run), "-o", str(tmp_path), "--ks", "0", "1", "2",
                 "--targets", "3", "--samples", "16", "--seed", "3"]) == 0
    assert "| K = 0 |" in capsys.readouterr().out
    results = json.loads((tmp_path / "calibration.json").read_text())
    assert results["ks"] == [0, 1, 2] and results["cases"]["1"] == 3 * 3  # 1 held-out robot × 3 targets × 3 axes
    for values in results["coverage"].values():
        assert all(0.0 <= v <= 1.0 for v in values) and values == sorted(values)  # nested intervals
    assert (tmp_path / "calibration.png").stat().st_size > 1000
    again = tmp_path / "again"
    assert main(["reaching", "calibrate", str(probabilistic_run), "-o", str(again), "--ks", "0", "1", "2",
                 "--targets", "3", "--samples", "16", "--seed", "3"]) == 0
    assert json.loads((again / "calibration.json").read_text())["coverage"] == results["coverage"]  # seeded


def test_calibrate_needs_a_probabilistic_run(tmp_path, capsys):
    (tmp_path / "checkpoints").mkdir()
    assert main(["reaching", "calibrate", str(tmp_path), "-o", str(tmp_path / "out")]) == 2
    assert "no checkpoint of the probabilistic variant" in capsys.readouterr().err
