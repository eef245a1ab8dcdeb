"""Calibration of probabilistic MAML's predictive spread: the coverage computation, the learner widening its draws,
the calibration stored in the checkpoint, and the command on a tiny run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_reaching_eval import TINY

from mtrl_robot.cli.main import main
from mtrl_robot.core.torch_files import CheckpointError
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.calibration import LEVELS, NOISE_DOF, coverage
from mtrl_robot.meta import MAMLConfig
from mtrl_robot.meta.probabilistic import LATENT, ProbabilisticMAML, SpreadCalibration, noise_draws, widen
from mtrl_robot.models.mlp import mlp


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


def test_the_learner_widens_its_draws_with_its_spread_calibration():
    torch.manual_seed(0)
    learner = ProbabilisticMAML(mlp([1 + 2, 8, 1]), x_dim=1, y_dim=1, config=MAMLConfig(latent_dim=2, inner_steps=1))
    sx, sy, x = torch.randn(2, 1), torch.randn(2, 1), torch.linspace(-1, 1, 5)[:, None]
    learner.generator.manual_seed(0)
    raw = learner.predictive_samples(sx, sy, x, 64).detach()  # no calibration: the raw draws
    noise = torch.randn(raw.shape, generator=learner.generator)
    learner.spread_calibration = SpreadCalibration((0, 4), (3.0, 1.0), (0.0, 0.2))
    assert learner.spread_calibration.at(2) == pytest.approx((2.0, 0.1))
    assert learner.spread_calibration.at(9) == (1.0, 0.2)
    learner.generator.manual_seed(0)
    widened = learner.predictive_samples(sx, sy, x, 64).detach()
    assert torch.allclose(widened, widen(raw, 2.0, 0.1, noise))
    assert torch.allclose(learner.calibrate(raw, 2, output_noise=False), raw.mean(dim=0) + 2 * (raw - raw.mean(dim=0)))
    assert torch.allclose(widened.mean(dim=0), raw.mean(dim=0) + 0.1 * noise.mean(dim=0), atol=1e-6)
    learner.generator.manual_seed(0)
    assert torch.equal(learner.predictive_samples(sx, sy, x, 64, calibrated=False).detach(), raw)
    learner.generator.manual_seed(0)  # the step the guard kept: 0 (fell back) gives the prior's unadapted draws
    shrunk = learner.predictive_samples(sx, sy, x, 64, calibrated=False, step_scale=0.5).detach()
    assert shrunk.shape == raw.shape and not torch.allclose(shrunk, raw)
    learner.generator.manual_seed(0)
    prior = learner.predictive_samples(sx[:0], sy[:0], x, 64, calibrated=False).detach()
    learner.generator.manual_seed(0)
    assert torch.equal(learner.predictive_samples(sx, sy, x, 64, calibrated=False, step_scale=0.0).detach(), prior)
    learner.generator.manual_seed(0)
    _, std = learner.predict_distribution(sx, sy, x, 64)
    assert torch.allclose(std.detach(), widened.std(dim=0))

    learner.spread_calibration = SpreadCalibration((0, 4), (3.0, 1.0), (0.0, 0.2), noise_dof=3)  # Student-t noise
    learner.generator.manual_seed(0)
    raw = learner.predictive_samples(sx, sy, x, 64, calibrated=False).detach()
    heavy = noise_draws(raw.shape, 3, torch.Generator().set_state(learner.generator.get_state()))
    assert torch.allclose(learner.calibrate(raw, 2), widen(raw, 2.0, 0.1, heavy))
    many = noise_draws((20000, 1, 2), 3, torch.Generator().manual_seed(1))  # 20000 points of two outputs
    assert 0.005 < (many.abs() > 5.84).float().mean() < 0.02  # beyond t(3)'s 99 % point: 1 %; a normal's: 6e-9
    assert torch.corrcoef(many.abs().reshape(-1, 2).T)[0, 1] > 0.1  # one scale per point: its outputs large together


def test_a_draw_whose_steps_diverge_is_adapted_with_smaller_steps_or_left_unadapted():
    torch.manual_seed(0)
    sx, sy, x = torch.randn(2, 1), torch.randn(2, 1), torch.linspace(-1, 1, 5)[:, None]
    for inner_lr in (0.01, 1e30):  # steps that adapt every draw; steps that diverge for every draw at any scale
        learner = ProbabilisticMAML(mlp([1 + 2, 8, 1]), x_dim=1, y_dim=1,
                                    config=MAMLConfig(latent_dim=2, inner_steps=3, inner_lr=inner_lr))
        learner.generator.manual_seed(0)
        draws = learner.predictive_samples(sx, sy, x, 64, calibrated=False).detach()
        assert torch.isfinite(draws).all()
        learner.generator.manual_seed(0)  # the same latent draws, each with the meta-trained initialisation
        z = learner._sample(*learner.encode(sx, sy), (64,)).detach()
        with torch.no_grad():
            unadapted = torch.stack([learner.predict({**learner.params(), LATENT: zi}, x) for zi in z])
        if inner_lr < 1.0:
            assert not torch.allclose(draws, unadapted)
        else:
            torch.testing.assert_close(draws, unadapted)


@pytest.mark.parametrize(("ks", "scales", "noises", "dof", "problem"), [
    ((1, 0), (1.0, 1.0), (0.0, 0.0), None, "distinct numbers >= 0 in order"),
    ((0,), (0.0,), (0.0,), None, "scales must be finite and positive"),
    ((0,), (1.0,), (float("nan"),), None, "noises must be finite"),
    ((0, 1), (1.0,), (0.0, 0.0), None, "one scale and one noise per K"),
    ((0,), (1.0,), (0.0,), 0, "noise_dof must be a whole number >= 1"),
    ((0,), (1.0,), (0.0,), 2.5, "noise_dof must be a whole number >= 1"),
])
def test_a_bad_spread_calibration_is_refused(ks, scales, noises, dof, problem):
    with pytest.raises(ValueError, match=problem):
        SpreadCalibration(ks, scales, noises, dof)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A tiny probabilistic run, calibrated: (run, the command's output folder)."""
    root = tmp_path_factory.mktemp("calibration")
    (root / "tiny.yaml").write_text(TINY)
    run = root / "run"
    assert main(["reaching", "train", str(root / "tiny.yaml"), "-o", str(run), "--set",
                 "meta.variant=probabilistic"]) == 0
    out = root / "out"
    assert main(["reaching", "calibrate", str(run), "-o", str(out), "--ks", "0", "1", "2", "--targets", "3",
                 "--samples", "16", "--seed", "3", "--validation-robots", "2", "--test-robots", "1"]) == 0
    return run, out


def test_calibrate_fits_on_validation_robots_and_measures_held_out_ones(calibrated, tmp_path, capsys):
    run, out = calibrated
    results = json.loads((out / "calibration.json").read_text())
    assert results["ks"] == [0, 1, 2] and results["cases"]["1"] == 3 * 3  # 1 held-out robot × 3 targets × 3 axes
    for when in ("before", "after"):
        for values in results["coverage"][when].values():
            assert all(0.0 <= v <= 1.0 for v in values) and values == sorted(values)  # nested intervals
    fitted = results["fitted"]["panda"]
    assert fitted["validation_robots"] == ["panda-004", "panda-005"]  # after the run's 4 robots: none trained on
    assert results["test_robot_ids"] == {"panda": ["panda-006"]}  # after the validation robots
    for k, values in results["coverage_test"].items():
        assert all(0.0 <= v <= 1.0 for v in values) and values == sorted(values) and results["cases_test"][k] == 9
        assert [low for low, _ in results["coverage_interval_test"][k]] == values  # one test robot
    table = (out / "calibration.md").read_text()
    assert (out / "calibration.png").stat().st_size > 1000 and "| K = 0 |" in table and "| panda |" in table
    assert "on 1 test robots per family" in table
    for k, by_level in results["coverage_interval_after"].items():  # one held-out robot: every resample is that robot
        assert [low for low, _ in by_level] == results["coverage"]["after"][k] == [high for _, high in by_level]
        assert results["coverage_interval_by_family"]["panda"][k] == by_level  # one family: its interval is the pool's

    state = checkpoints.load(run / "checkpoints" / "panda.pt")
    calibration = state.learner.spread_calibration
    assert calibration is not None and calibration.ks == (0, 1, 2)
    assert calibration.at(1) == (fitted["1"]["scale"], fitted["1"]["noise"]) and calibration.noise_dof == NOISE_DOF
    assert state.info["spread_calibration"]["step"] == state.learner.step

    again = tmp_path / "again"  # on the calibrated checkpoint: the same fit and coverage (seeded, raw draws)
    assert main(["reaching", "calibrate", str(run), "-o", str(again), "--ks", "0", "1", "2", "--targets", "3",
                 "--samples", "16", "--seed", "3", "--validation-robots", "2", "--test-robots", "1"]) == 0
    repeated = json.loads((again / "calibration.json").read_text())
    assert repeated["coverage"] == results["coverage"] and repeated["fitted"] == results["fitted"]
    assert repeated["coverage_test"] == results["coverage_test"]
    assert "| K = 0 |" in capsys.readouterr().out


def test_no_test_robots_measures_the_held_out_ones_only(calibrated, tmp_path):
    run, out = calibrated
    bare = tmp_path / "bare"
    assert main(["reaching", "calibrate", str(run), "-o", str(bare), "--ks", "0", "1", "2", "--targets", "3",
                 "--samples", "16", "--seed", "3", "--validation-robots", "2", "--test-robots", "0"]) == 0
    results = json.loads((bare / "calibration.json").read_text())
    assert results["test_robots"] == 0 and "coverage_test" not in results
    assert results["coverage"] == json.loads((out / "calibration.json").read_text())["coverage"]
    assert "test robots" not in (bare / "calibration.md").read_text()


def test_a_stale_or_broken_spread_calibration(calibrated, tmp_path):
    state = checkpoints.load(calibrated[0] / "checkpoints" / "panda.pt")
    stale = tmp_path / "stale.pt"  # the learner trained on after the fit: its draws stay raw
    state.info["spread_calibration"] = {**state.info["spread_calibration"], "step": state.learner.step - 1}
    state.save(stale)
    assert checkpoints.load(stale).learner.spread_calibration is None
    broken = tmp_path / "broken.pt"
    state.info["spread_calibration"] = {"ks": [0], "scales": [-1.0], "noises": [0.0], "step": state.learner.step}
    state.save(broken)
    with pytest.raises(CheckpointError, match="broken.pt: spread_calibration: .*scales must be finite and positive"):
        checkpoints.load(broken)


def test_calibrate_needs_a_probabilistic_run(tmp_path, capsys):
    (tmp_path / "checkpoints").mkdir()
    assert main(["reaching", "calibrate", str(tmp_path), "-o", str(tmp_path / "out")]) == 2
    assert "no checkpoint of the probabilistic variant" in capsys.readouterr().err
