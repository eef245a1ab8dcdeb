"""The UR5e family against Universal Robots' own standard-DH parameterisation, and its six joints end to end."""

import json
import subprocess
import sys

import numpy as np
import pytest
from side_by_side import side_by_side

from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import flange_pose
from mtrl_robot.arms.population import default_config_path, generate, load_config
from mtrl_robot.backends.trajectory import check_trajectory
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.distributed.compute import ComputeConfig
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.presets import load_preset as load_training_preset
from mtrl_robot.motions.dataset import DatasetError
from mtrl_robot.motions.dataset import load as load_demos
from mtrl_robot.motions.generate import generate_demos
from mtrl_robot.motions.path_timing import MotionRefused
from mtrl_robot.tasks.puck import PuckHittingEnv

# Universal Robots, "DH Parameters for calculations of kinematics and dynamics", UR5e (standard DH).
DH_A = (0.0, -0.425, -0.3922, 0.0, 0.0, 0.0)  # m
DH_D = (0.1625, 0.0, 0.0, 0.1333, 0.0997, 0.0996)  # m
DH_ALPHA = (np.pi / 2, 0.0, 0.0, np.pi / 2, -np.pi / 2, 0.0)  # rad
BASE_LINK_FROM_BASE = np.diag([-1.0, -1.0, 1.0, 1.0])  # ROS base_link = UR controller `base` turned by π about z


def dh_flange(q: np.ndarray) -> np.ndarray:
    """UR `base` → flange, the product of Rz(θᵢ)·Tz(dᵢ)·Tx(aᵢ)·Rx(αᵢ) with θᵢ = qᵢ."""
    pose = np.eye(4)
    for theta, a, d, alpha in zip(q, DH_A, DH_D, DH_ALPHA, strict=True):
        ct, st, ca, sa = np.cos(theta), np.sin(theta), np.cos(alpha), np.sin(alpha)
        pose = pose @ np.array([[ct, -st * ca, st * sa, a * ct],
                                [st, ct * ca, -ct * sa, a * st],
                                [0.0, sa, ca, d],
                                [0.0, 0.0, 0.0, 1.0]])
    return pose


def test_fk_agrees_with_the_manufacturer_dh_table():
    arm = load_family("ur5e")
    rng = np.random.default_rng(0)
    qs = rng.uniform(arm.lower, arm.upper, size=(1000, arm.dof))
    project = flange_pose(arm, qs)
    reference = np.stack([BASE_LINK_FROM_BASE @ dh_flange(q) for q in qs])
    position_error = np.linalg.norm(project[:, :3, 3] - reference[:, :3, 3], axis=-1)
    assert position_error.max() < 1e-3  # m
    assert np.abs(project[:, :3, :3] - reference[:, :3, :3]).max() < 1e-6
    # the published check point: flange at q = 0 is (−a2 − a3, d4 + d6, d1 − d5) in base_link
    np.testing.assert_allclose(flange_pose(arm, np.zeros(6))[:3, 3], [0.8172, 0.2329, 0.0628], atol=1e-9)


def test_six_joints_with_published_limits():
    arm = load_family("ur5e")
    assert arm.joint_names == ("shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint",
                               "wrist_1_joint", "wrist_2_joint", "wrist_3_joint")
    np.testing.assert_allclose(arm.velocity_limits, np.pi)
    assert [j.effort for j in arm.joints] == [150, 150, 150, 28, 28, 28]
    assert (arm.joints[2].lower, arm.joints[2].upper) == (-np.pi, np.pi)
    assert [link.mass for link in arm.links] == [3.761, 8.058, 2.846, 1.37, 1.3, 0.365]


def test_a_population_file_without_families_keeps_the_four_seven_joint_families(tmp_path):
    config = tmp_path / "population.yaml"
    config.write_text("robots_per_family: 2\n")
    assert load_config(config).families == ("panda", "gen3", "yumi", "baxter")
    assert load_config(default_config_path()).families == ("panda", "gen3", "yumi", "baxter")
    assert load_training_preset("small").data.families == ("panda", "gen3")


# ---- six joints end to end through the command line: population, demos, training, adaptation, evaluation

TINY = ["--set", "data.families=[ur5e]", "--set", "data.robots_per_family=6", "--set", "data.held_out_per_family=2",
        "--set", "data.demos_per_robot=16", "--set", "pretrain.nominal_demos=60", "--set", "pretrain.vae_steps=20",
        "--set", "pretrain.policy_steps=20", "--set", "meta.meta_steps=10", "--set", "meta.checkpoint_every=5"]


def cli(*args, cwd=None):
    done = subprocess.run([sys.executable, "-m", "mtrl_robot.cli.main", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def test_population_demos_training_adaptation_and_evaluation_with_six_joints(tmp_path):
    population, maml, pmaml = tmp_path / "population.json", tmp_path / "maml", tmp_path / "pmaml"
    side_by_side(lambda args: cli(*args), [  # independent commands side by side
        ("population", "generate", "--families", "ur5e", "--per-family", 3, "-o", population),
        ("reaching", "train", "small", "-o", maml, *TINY),
        ("reaching", "train", "small", "-o", pmaml, *TINY, "--set", "meta.variant=probabilistic")])
    robots = json.loads(population.read_text())["robots"]
    assert [r["robot_id"] for r in robots] == ["ur5e-000", "ur5e-001", "ur5e-002"]
    assert all(len(r["joints"]) == 6 for r in robots)

    demos = load_demos(maml / "demos.npz")
    assert demos.positions.shape[-1] == 6 and demos.joint_names == load_family("ur5e").joint_names
    state = checkpoints.load(maml / "checkpoints" / "ur5e.pt")
    assert state.info["family"] == "ur5e" and len(state.info["joint_names"]) == 6
    robot = state.info["held_out"][0]

    adapted, evaluation = tmp_path / "adapted.pt", tmp_path / "evaluation"
    side_by_side(lambda args: cli(*args), [
        ("reaching", "adapt", maml, maml / "demos.npz", "--robot", robot, "-k", 5, "-o", adapted),
        ("reaching", "evaluate", maml, "-o", evaluation, "--ks", 5, "--targets", 3, "--pmaml-run", pmaml,
         "--methods", "no_adaptation", "maml", "pmaml", "ik_oracle")])
    assert checkpoints.load(adapted).info["adaptation"]["robot_id"] == robot
    report = json.loads((evaluation / "reaching.json").read_text())
    summary = report["summary"]["ur5e"]
    assert set(summary) == {"no_adaptation", "maml", "pmaml", "ik_oracle"}
    assert all(np.isfinite(summary[m]["5"]["mean"]) and summary[m]["5"]["n"] == 6 for m in summary)
    assert summary["ik_oracle"]["5"]["mean"] < 0.5  # cm: the six-joint demos execute in MuJoCo where IK says


def test_six_and_seven_joints_in_one_dataset_or_a_probabilistic_pooled_run_are_refused_in_one_line():
    population = generate(load_config(families=["panda", "ur5e"], robots_per_family=1))
    with pytest.raises(DatasetError, match="one number of joints, but these families differ: panda 7, ur5e 6"):
        generate_demos(population, 2, seed=0, compute=ComputeConfig(workers=1), progress=False)
    with pytest.raises(ConfigError, match=r"meta.variant: .*different joint counts \(panda 7, ur5e 6\)"):
        load_training_preset("small", ["data.families=[panda,ur5e]", "data.pooled=true",
                                       "meta.variant=probabilistic"])


def test_the_ur5e_hits_the_puck_where_it_is_aimed():
    """The puck scene does not assume a Panda: six-joint hitting motions within the limits, a hit goes its way."""
    env = PuckHittingEnv("ur5e")
    try:
        motions = env.generator.motions(np.array([-0.6, 0.0, 0.6]), np.array([0.6, 0.6, 0.6]))
        for i in range(len(motions)):
            check_trajectory(motions.trajectory(i), env.generator.limits)  # raises past any limit
        # UR publishes no acceleration limit; at the 5 rad/s² used, 0.8 m/s needs more run-up than the line has
        with pytest.raises(MotionRefused, match="a paddle speed of 0.800 m/s needs a run-up"):
            env.generator.motions(np.array([0.0]), np.array([0.8]))
        for angle in (-0.6, 0.6):
            env.reset(seed=1, options={"condition": "iso_medium"})
            *_, info = env.step(np.array([angle, 0.6]))
            travel = info["puck_final"] - info["puck_start"]
            assert info["rested"] and np.linalg.norm(travel) > 0.05
            assert abs(np.arctan2(travel[1], travel[0]) - angle) < np.radians(20)
    finally:
        env.close()
