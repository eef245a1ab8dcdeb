"""Puck hitting: hitting motions, the Gymnasium task in MuJoCo and PyBullet, and the motion VAE."""

from __future__ import annotations

import numpy as np
import pytest

from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import CompiledChain
from mtrl_robot.backends.limits import MotionLimits, check_motion
from mtrl_robot.backends.trajectory import check_trajectory
from mtrl_robot.hardware.presets import load_preset
from mtrl_robot.models.hitting_vae import HittingVAE, hitting_dataset, reconstruction_error, train_hitting_vae
from mtrl_robot.motions.hitting import (
    ANGLE_RANGE,
    CLEARANCE,
    SPEED_RANGE,
    HittingMotionGenerator,
    paddle_arm,
    published_limits,
    with_paddle,
)
from mtrl_robot.motions.path_timing import MotionRefused
from mtrl_robot.scenes.puck_table import PAIR_FRICTION_ORDER, load_scene
from mtrl_robot.tasks.puck import CONDITIONS, EVAL_PUCK_MASS, PuckHittingEnv
from mtrl_robot.tools.bench.hitting_bench import bench_hitting

SCENE = with_paddle(load_scene())


@pytest.fixture(scope="module")
def generator():
    return HittingMotionGenerator(load_family("panda"), SCENE)


@pytest.fixture(scope="module")
def env():
    environment = PuckHittingEnv("panda")
    yield environment
    environment.close()


@pytest.fixture(scope="module")
def vae(generator):
    return train_hitting_vae(generator, n_motions=3000, steps=600, seed=0, progress=False)


def same_limits(a: MotionLimits, b: MotionLimits) -> bool:
    return a.control_period == b.control_period and all(
        np.array_equal(getattr(a, q), getattr(b, q)) for q in ("velocity", "acceleration", "jerk"))


def angle_of(vector) -> float:
    return float(np.arctan2(vector[1], vector[0]))


def test_motions_respect_limits_and_sweep_through_the_puck(generator):
    angles, speeds = (a.ravel() for a in np.meshgrid(np.linspace(*ANGLE_RANGE, 7), np.linspace(*SPEED_RANGE, 4)))
    motions = generator.motions(angles, speeds)
    kin = CompiledChain(paddle_arm(generator.arm, SCENE))
    puck, height = np.array(SCENE.puck_start), SCENE.table_top + SCENE.puck_height / 2
    real = load_preset("franka_panda_hitting").safety_limits().motion  # the real Panda's published limits
    for i in range(len(motions)):
        trajectory = check_trajectory(motions.trajectory(i), generator.limits)  # raises past any limit
        check_motion(trajectory, real)  # velocity, acceleration and jerk of what the controller commands
        assert len(trajectory.times) == generator.n_waypoints
        np.testing.assert_allclose(trajectory.velocities[[0, -1]], 0.0, atol=1e-9)  # starts and ends at rest
        times = np.linspace(0.0, trajectory.duration, 1500)
        paddle = kin.frames(trajectory.sample(times)[0])[..., -1, :3, 3]
        assert np.abs(paddle[:, 2] - height).max() < 1e-3  # at the puck's mid-height throughout
        assert np.linalg.norm(paddle[:, :2] - puck, axis=1).min() < 1e-3  # passes through the puck's position
        gap = np.linalg.norm(paddle[0, :2] - puck) - SCENE.puck_radius - SCENE.paddle_radius
        assert gap > CLEARANCE - 1e-3  # starts clear of the puck's position noise
        # Speed along the hitting direction at the moment of contact is the requested strength.
        k = np.searchsorted(times, motions.contact_times[i])
        direction = np.array([np.cos(angles[i]), np.sin(angles[i])])
        speed = (paddle[k + 5, :2] - paddle[k - 5, :2]) @ direction / (times[k + 5] - times[k - 5])
        assert speed == pytest.approx(speeds[i], rel=0.03)


def test_motions_are_timed_to_the_limits_they_are_given(generator):
    assert same_limits(generator.path.limits, published_limits(generator.arm))  # by default: the family's published
    published = published_limits(generator.arm)
    np.testing.assert_array_equal(published.jerk, [7500, 3750, 5000, 6250, 7500, 10000, 10000])
    half = MotionLimits(published.velocity / 2, published.acceleration / 2, published.jerk / 2, 1e-3)
    slower = HittingMotionGenerator(generator.arm, SCENE, half)
    motion = slower.motion(0.5, 0.4)
    check_motion(motion, half)
    assert motion.duration > generator.motion(0.5, 0.4).duration
    with pytest.raises(MotionRefused, match=r"panda_joint4: a paddle speed of 0.600 m/s needs .* over its velocity"):
        slower.motion(0.0, 0.6)  # half the published velocity caps the paddle near 0.53 m/s


def test_hitting_parameters_out_of_range_are_refused(generator, env):
    for angle, speed in ((ANGLE_RANGE[1] + 0.1, 0.5), (0.0, SPEED_RANGE[0] / 2), (0.0, np.nan)):
        with pytest.raises(ValueError, match="outside"):
            generator.motion(angle, speed)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="strength"):
        env.step(np.array([0.0, 5.0]))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.array([0.0, 0.5, 1.0]))


def test_hits_go_in_the_requested_direction_and_stronger_goes_farther(env):
    for angle in (-0.8, 0.0, 0.6):
        distances = []
        for strength in (0.4, 0.9):
            env.reset(seed=1, options={"condition": "iso_medium"})
            *_, info = env.step(np.array([angle, strength]))
            travel = info["puck_final"] - info["puck_start"]
            assert info["rested"] and not info["off_table"]
            assert abs(angle_of(travel) - angle) < np.radians(20)
            distances.append(np.linalg.norm(travel))
        assert distances[1] > distances[0] + 0.03


def test_reward_is_minus_the_final_distance_to_the_goal(env):
    obs, _ = env.reset(seed=2, options={"goal": (0.7, 0.1)})
    np.testing.assert_array_equal(obs, [0.7, 0.1])
    obs, reward, terminated, truncated, info = env.step(np.array([0.3, 0.7]))
    assert terminated and not truncated
    assert reward == pytest.approx(-np.linalg.norm(info["puck_final"] - [0.7, 0.1]))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0.3, 0.7]))  # one episode is one hit


def test_randomization_is_read_back_from_the_engine_and_in_range(env):
    m, backend = env.backend.model, env.backend
    pair, puck = m.pair("puck_table").id, m.body("puck").id
    env.reset(seed=3)
    for _ in range(20):
        _, info = env.reset()
        values = info["randomization"]
        friction = [values[f"puck.friction.{n}"] for n in PAIR_FRICTION_ORDER]
        np.testing.assert_allclose(m.pair_friction[pair], friction)  # what the engine holds
        assert m.body_mass[puck] == pytest.approx(values["puck.mass"])
        assert 0.15 <= values["puck.friction.slide_x"] <= 0.95
        assert 0.7 <= values["puck.friction.slide_y"] / values["puck.friction.slide_x"] <= 1.3
        assert 0.001 <= values["puck.friction.torsional"] <= 0.05
        assert 0.01 <= values["puck.friction.roll_x"] <= 0.3 and 0.01 <= values["puck.friction.roll_y"] <= 0.3
        assert 0.05 <= values["puck.mass"] <= 0.5
        assert abs(values["puck.offset_x"]) < 0.1 and abs(values["puck.offset_y"]) < 0.1
        *_, step_info = env.step(env.action_space.sample())
        assert step_info["randomization"] == values
        np.testing.assert_allclose(step_info["puck_start"], np.add(SCENE.puck_start, (values["puck.offset_x"],
                                                                                     values["puck.offset_y"])),
                                   atol=2e-3)
        assert backend.time > 0


def test_fixed_conditions_are_applied(env):
    m = env.backend.model
    pair = m.pair("puck_table").id
    for name, condition in CONDITIONS.items():
        _, info = env.reset(seed=4, options={"condition": name})
        assert info["condition"] == name
        assert info["randomization"]["puck.mass"] == pytest.approx(EVAL_PUCK_MASS)
        for key, value in condition.items():
            assert info["randomization"][key] == pytest.approx(value, abs=1e-12), key
        assert m.pair_friction[pair, :2].tolist() == pytest.approx([condition["puck.friction.slide_y"],
                                                                    condition["puck.friction.slide_x"]])
    assert CONDITIONS["aniso_low_x"]["puck.friction.slide_x"] < CONDITIONS["aniso_low_x"]["puck.friction.slide_y"]
    assert CONDITIONS["aniso_low_y"]["puck.friction.slide_y"] < CONDITIONS["aniso_low_y"]["puck.friction.slide_x"]


def test_unphysical_conditions_and_bad_goals_are_refused(env):
    with pytest.raises(ValueError, match="slide_x"):
        env.reset(options={"condition": {"puck.friction.slide_x": -0.2}})
    with pytest.raises(ValueError, match="puck.mass"):
        env.reset(options={"condition": {"puck.mass": 0.0}})
    with pytest.raises(ValueError, match="unknown condition"):
        env.reset(options={"condition": "icy"})
    with pytest.raises(ValueError, match="off the table"):
        env.reset(options={"goal": (1.5, 0.0)})
    with pytest.raises(ValueError, match="finite"):
        env.reset(options={"goal": (np.nan, 0.0)})


def test_same_seed_same_outcome(env):
    outcomes = []
    for seed in (5, 5, 6):
        env.reset(seed=seed)
        env.action_space.seed(seed)
        outcomes.append(env.step(env.action_space.sample())[4])
    np.testing.assert_array_equal(outcomes[0]["puck_final"], outcomes[1]["puck_final"])
    assert outcomes[0]["randomization"] == outcomes[1]["randomization"]
    assert outcomes[0]["randomization"] != outcomes[2]["randomization"]


def test_pybullet_runs_the_same_task():
    environment = PuckHittingEnv("panda", backend="pybullet", condition="iso_medium")
    try:
        _, info = environment.reset(seed=0)
        assert info["randomization"]["puck.friction.slide_x"] == pytest.approx(0.5)
        *_, info = environment.step(np.array([0.3, 0.8]))
    finally:
        environment.close()
    travel = info["puck_final"] - info["puck_start"]
    assert np.linalg.norm(travel) > 0.05
    assert abs(angle_of(travel) - 0.3) < np.radians(20)  # PyBullet's friction bends paths towards its axes


def test_vae_reconstructs_hitting_motions(generator, vae):
    postures, speeds = hitting_dataset(generator, 300, seed=123)  # not the training draws
    error = reconstruction_error(vae, generator, postures, speeds)
    assert error.paddle_rms < 0.003 and error.paddle_max < 0.015  # m
    assert error.joint_rms < 0.005 and error.speed_max < 0.05  # rad, m/s
    low, high = vae.latent_low.numpy(), vae.latent_high.numpy()
    assert vae.latent_dim == 2 and np.all(high > low)
    assert not any(p.requires_grad for p in vae.parameters())  # frozen
    for z in np.random.default_rng(0).uniform(low, high, size=(25, 2)):
        trajectory = vae.decode_motion(z)
        check_trajectory(trajectory, generator.limits)
        check_motion(trajectory, generator.path.limits)  # timed within the limits, by the generator's timing


def test_latent_out_of_the_box_is_refused_and_nan_is_an_error(vae, tmp_path):
    high = vae.latent_high.numpy().astype(float)
    with pytest.raises(MotionRefused, match=r"outside the trained box: component 0 is .*, the box holds"):
        vae.decode_motion(high + [0.01, 0.0])
    vae.decode_motion(high)  # the edge is inside
    with pytest.raises(ValueError, match="NaN"):
        vae.decode_motion([np.nan, 0.0])
    with pytest.raises(ValueError, match="shape"):
        vae.decode_motion([0.0, 0.0, 0.0])
    loaded = HittingVAE.load(vae.save(tmp_path / "vae" / "hitting.pt"))
    np.testing.assert_array_equal(loaded.decode_motion([0.3, -0.2]).positions, vae.decode_motion([0.3, -0.2]).positions)
    assert same_limits(loaded.path.limits, vae.path.limits)
    assert [p.name for p in tmp_path.joinpath("vae").iterdir()] == ["hitting.pt"]  # no temporary file left
    (tmp_path / "vae" / "torn.pt").write_bytes(tmp_path.joinpath("vae", "hitting.pt").read_bytes()[:500])
    with pytest.raises(ValueError, match="not a readable torch hitting VAE"):
        HittingVAE.load(tmp_path / "vae" / "torn.pt")
    with pytest.raises(ValueError, match="no such hitting VAE file"):
        HittingVAE.load(tmp_path / "vae" / "missing.pt")


def test_env_acts_in_the_vae_latent_space(vae):
    environment = PuckHittingEnv("panda", condition="iso_low", motion_vae=vae)
    try:
        np.testing.assert_array_equal(environment.action_space.high, vae.latent_high.numpy())
        environment.reset(seed=0)
        *_, inside = environment.step(np.zeros(2))
        environment.reset(seed=0)
        with pytest.raises(MotionRefused, match="outside the trained box"):
            environment.step(vae.latent_high.numpy() + 5.0)
    finally:
        environment.close()
    assert np.linalg.norm(inside["puck_final"] - inside["puck_start"]) > 0.05  # the decoded motion hits the puck


def test_vae_for_another_arm_is_refused(vae):
    with pytest.raises(ValueError, match="joints"):
        PuckHittingEnv("gen3", motion_vae=vae)


def test_bench_reports_hits_per_second():
    figures = bench_hitting(seconds=0.2)
    assert figures["hits_per_second"] > 0 and figures["episodes"] >= 75
    assert figures["hit_cost_in_bare_steps"] > 50  # a hit simulates ~100 steps of the arm and more of the puck
