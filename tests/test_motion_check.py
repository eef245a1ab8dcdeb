"""Every motion of a dense grid over the hitting VAE's latent box, judged by a real preset's safety layer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from executed_motion import commanded_peaks

from mtrl_robot.arms.families import load_family
from mtrl_robot.cli.main import main
from mtrl_robot.hardware.presets import hardware_dir, load_preset
from mtrl_robot.learning.puck.motion_check import check_latent_grid
from mtrl_robot.learning.puck.presets import load_preset as load_puck_preset
from mtrl_robot.learning.puck.train import VAE_FILE
from mtrl_robot.models.hitting_vae import train_hitting_vae
from mtrl_robot.motions.hitting import HittingMotionGenerator, with_paddle
from mtrl_robot.scenes.puck_table import load_scene


@pytest.fixture(scope="module")
def vae():
    """The hitting VAE of the small puck preset, trained as ``mtrl-robot puck train --preset small`` trains it."""
    config = load_puck_preset("small")
    generator = HittingMotionGenerator(load_family(config.arm), with_paddle(load_scene()))
    return train_hitting_vae(generator, config.vae_motions, config.vae_steps, seed=config.seed, progress=False)


def test_every_motion_of_the_latent_box_passes_the_real_panda_safety_layer(vae):
    check = check_latent_grid(vae, load_preset("franka_panda_hitting"), per_axis=32)
    assert check.latents == 1024 and (check.passed, check.refused) == (1024, 0), check.summary()
    for quantity in ("velocity", "acceleration", "jerk"):
        assert 0 < check.worst[quantity].ratio <= 1 + 1e-6, check.summary()
    assert check.worst["acceleration"].ratio > 0.9  # the motions use what the arm allows
    assert check.longest_motion_s < 1.5


def test_what_the_controller_commands_for_decoded_motions_stays_inside_the_published_limits(vae):
    """Measured independently of the safety layer's bounds: differences of the positions a 1 kHz controller
    commands, at two clock phases, for latents all over the box."""
    limits = load_preset("franka_panda_hitting").safety_limits().motion
    low, high = vae.latent_low.numpy(), vae.latent_high.numpy()
    for z in np.random.default_rng(1).uniform(low, high, size=(12, 2)):
        motion = vae.decode_motion(z)
        for phase in (0.0, 0.0005):
            peaks = commanded_peaks(motion, 0.001, phase)
            for quantity in ("velocity", "acceleration", "jerk"):
                assert np.all(peaks[quantity] <= getattr(limits, quantity) * (1 + 1e-6)), (quantity, z, phase)


def test_a_preset_with_tighter_limits_refuses_and_counts_the_fast_motions(vae, tmp_path):
    check = check_latent_grid(vae, load_preset("franka_panda"), per_axis=6)  # half the published limits
    assert (check.passed, check.refused) == (0, 36)  # its workspace box is the reaching cell's, above the paddle
    assert check.worst["velocity"].ratio > 1 and check.worst["velocity"].joint.startswith("panda_joint")
    half = (hardware_dir() / "franka_panda.yaml").read_text().replace(  # the puck cell's box, half the limits
        "workspace: {min: [-0.2, -0.6, 0.15], max: [0.8, 0.6, 1.0]}",
        "workspace: {min: [-0.2, -0.6, 0.12], max: [1.0, 0.6, 1.0]}")
    (tmp_path / "half_panda.yaml").write_text(half)
    check = check_latent_grid(vae, load_preset(tmp_path / "half_panda.yaml"), per_axis=6)
    assert (check.passed, check.refused) == (0, 36)  # every hit is timed to the published accelerations
    assert all(reason.startswith("safety layer: panda_joint") for reason in check.refusals), check.refusals


def test_check_motions_command_prints_and_writes_the_figures(vae, tmp_path, capsys):
    run = tmp_path / "run"
    vae.save(run / VAE_FILE)
    assert main(["puck", "check-motions", str(run), "--per-axis", "3"]) == 0
    out = capsys.readouterr().out
    assert "9 latents on the preset franka_panda_hitting: 9 passed, 0 refused" in out
    figures = json.loads((run / "motion_check_franka_panda_hitting.json").read_text())
    assert figures["passed"] == 9 and set(figures["worst"]) == {"velocity", "acceleration", "jerk"}
    assert figures["worst"]["jerk"]["ratio"] <= 1


def test_check_motions_bad_input_is_one_line(vae, tmp_path, capsys):
    assert main(["puck", "check-motions", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err == f"mtrl-robot: error: {tmp_path / 'nowhere'}: no such puck training run folder\n"
    (tmp_path / "empty").mkdir()
    assert main(["puck", "check-motions", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtrl-robot: error:") and "no such hitting VAE file" in err and err.count("\n") == 1
    run = tmp_path / "run"
    vae.save(run / VAE_FILE)
    assert main(["puck", "check-motions", str(run), "--preset", "ur5"]) == 2
    assert "unknown hardware preset 'ur5'" in capsys.readouterr().err
    assert main(["puck", "check-motions", str(run), "--preset", "kinova_gen3", "--per-axis", "2"]) == 2
    assert "drives joints" in capsys.readouterr().err
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert main(["puck", "check-motions", str(run), "--per-axis", "2", "-o", str(blocked / "x.json")]) == 2
    assert capsys.readouterr().err.startswith("mtrl-robot: error:")
    with pytest.raises(SystemExit):
        main(["puck", "check-motions", str(run), "--per-axis", "1"])
    assert "--per-axis: must be >= 2" in capsys.readouterr().err
