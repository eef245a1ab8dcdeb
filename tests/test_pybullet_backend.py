"""The PyBullet backend: kinematics agree with numpy FK, trajectories run, randomization is read back."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pybullet as p
import pytest
from arm_variants import perturbed

from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.backends.pybullet_backend import PybulletBackend
from mtrl_robot.backends.trajectory import GOAL_TOLERANCE, JointTrajectory, TrajectoryError
from mtrl_robot.scenes.puck_table import load_scene

FAMILIES = ["baxter", "gen3", "panda", "yumi", "ur5e"]


def smooth_move(arm, q0, q1, duration=1.5, points=31) -> JointTrajectory:
    s = np.linspace(0.0, 1.0, points)[:, None]
    return JointTrajectory(arm.joint_names, np.linspace(0.0, duration, points), q0 + (3 * s**2 - 2 * s**3) * (q1 - q0))


@pytest.fixture
def panda_scene():
    backend = PybulletBackend(load_family("panda"), load_scene())
    yield backend
    backend.close()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("perturb", [False, True], ids=["nominal", "perturbed"])
def test_flange_matches_numpy_fk(family, perturb):
    arm = load_family(family)
    arm = perturbed(arm) if perturb else arm
    backend = PybulletBackend(arm)
    try:
        for q in np.random.default_rng(2).uniform(arm.lower, arm.upper, (30, arm.dof)):
            backend.reset(q)
            assert np.abs(backend.flange_position() - flange_position(arm, q)).max() < 1e-3
    finally:
        backend.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_trajectory_reaches_its_goal(family):
    arm = load_family(family)
    backend = PybulletBackend(arm, load_scene())
    try:
        q0 = arm.home_q
        q1 = np.clip(q0 + np.random.default_rng(3).uniform(-0.5, 0.5, arm.dof), arm.lower, arm.upper)
        start = backend.time
        result = backend.execute(smooth_move(arm, q0, q1))
        assert result.success, result.message
        assert np.abs(result.final_error).max() <= GOAL_TOLERANCE and result.duration == pytest.approx(1.5, abs=0.1)
        assert not backend.is_executing() and backend.time - start == pytest.approx(result.duration)
        scene = load_scene()
        base = np.array([0.0, 0.0, scene.table_top + scene.mount_height(family)])
        assert np.abs(backend.flange_position() - base - flange_position(arm, q1)).max() < 1e-3
        assert np.allclose(backend.read_state().positions, q1, atol=1e-3)
    finally:
        backend.close()


def test_bad_trajectories_raise_and_leave_the_arm_idle(panda_scene):
    arm = panda_scene.arm
    q0 = arm.home_q
    outside = q0.copy()
    outside[3] = arm.upper[3] + 0.2
    with pytest.raises(TrajectoryError, match="panda_joint4.*outside"):
        panda_scene.send_trajectory(smooth_move(arm, q0, outside))
    with pytest.raises(TrajectoryError, match="panda_joint1: velocity"):
        panda_scene.send_trajectory(smooth_move(arm, q0, q0 + np.array([2.0, 0, 0, 0, 0, 0, 0]), duration=0.2))
    renamed = dataclasses.replace(smooth_move(arm, q0, q0), joint_names=("j1",) + arm.joint_names[1:])
    with pytest.raises(TrajectoryError, match="unknown joints"):
        panda_scene.send_trajectory(renamed)
    assert not panda_scene.is_executing()
    assert "no trajectory" in panda_scene.wait().message


def test_trajectory_by_name_timeout_and_stop(panda_scene):
    arm = panda_scene.arm
    q1 = arm.home_q + 0.3
    order = [6, 0, 5, 1, 4, 2, 3]
    move = smooth_move(arm, arm.home_q, q1, duration=2.0)
    shuffled = JointTrajectory(tuple(arm.joint_names[i] for i in order), move.times, move.positions[:, order])
    assert panda_scene.execute(shuffled).success
    assert np.allclose(panda_scene.read_state().positions, q1, atol=GOAL_TOLERANCE)
    panda_scene.send_trajectory(smooth_move(arm, q1, arm.home_q, duration=2.0))
    result = panda_scene.wait(timeout=0.5)
    assert not result.success and "timed out" in result.message and panda_scene.is_executing()
    assert result.duration == pytest.approx(0.5, abs=0.01)
    panda_scene.stop()
    held = panda_scene.read_state().positions
    assert not panda_scene.is_executing() and panda_scene.wait().message == "stopped"
    assert panda_scene.wait().message == "no trajectory to wait for"
    panda_scene.step(240)
    assert np.abs(panda_scene.read_state().positions - held).max() < 2e-3


def test_a_first_point_after_time_zero_starts_from_the_current_position(panda_scene):
    arm = panda_scene.arm
    goal = arm.home_q + 0.2
    late_start = JointTrajectory(arm.joint_names, np.array([1.0]), goal[None, :])
    assert panda_scene.execute(late_start).success
    assert np.allclose(panda_scene.read_state().positions, goal, atol=GOAL_TOLERANCE)
    with pytest.raises(TrajectoryError, match=r"panda_joint\d: first point .* at time 0 is 0.1000 rad"):
        panda_scene.send_trajectory(JointTrajectory(arm.joint_names, np.array([0.0, 1.0]), np.stack([goal + 0.1] * 2)))
    with pytest.raises(TrajectoryError, match="moving from the current position to the first point: .*velocity"):
        panda_scene.send_trajectory(JointTrajectory(arm.joint_names, np.array([0.05]), arm.home_q[None, :]))


def test_randomization_is_read_back_and_nominal_restored(panda_scene):
    fresh = p.getDynamicsInfo(panda_scene.puck, -1, physicsClientId=panda_scene.client)
    assert (fresh[1], fresh[6], fresh[7]) == pytest.approx((0.5, 0.05, 0.005))  # the scene's, from the start
    nominal = panda_scene.apply_randomization({})
    scene_nominal = load_scene().nominal_parameters() | {"arm.friction_scale": math.nan}  # not modelled
    assert panda_scene.nominal_parameters() == load_scene().nominal_parameters()
    assert nominal == pytest.approx(scene_nominal, abs=1e-12, nan_ok=True)
    sample = {"puck.friction.slide_x": 0.3, "puck.friction.slide_y": 0.36, "puck.friction.torsional": 0.02,
              "puck.friction.roll_x": 0.1, "puck.friction.roll_y": 0.2, "puck.mass": 0.25,
              "puck.offset_x": 0.015, "puck.offset_y": -0.01, "arm.damping_scale": 1.7, "arm.mass_scale": 1.2}
    got = panda_scene.apply_randomization(sample)
    expected = sample | {"puck.friction.roll_x": 0.15, "puck.friction.roll_y": 0.15,  # one rolling coefficient
                         "arm.friction_scale": math.nan}
    assert got == pytest.approx(expected, abs=1e-9, nan_ok=True)
    client, puck, robot = panda_scene.client, panda_scene.puck, panda_scene.robot
    info = p.getDynamicsInfo(puck, -1, physicsClientId=client)
    assert (info[0], info[1], info[6], info[7]) == pytest.approx((0.25, 0.3, 0.15, 0.02))
    link1 = p.getJointInfo(robot, 1, physicsClientId=client)
    assert link1[1] == b"panda_joint1" and link1[6] == pytest.approx(0.5 * 1.7)
    assert p.getDynamicsInfo(robot, 1, physicsClientId=client)[0] == pytest.approx(2.7907 * 1.2)
    panda_scene.reset()
    puck_xy = p.getBasePositionAndOrientation(puck, physicsClientId=client)[0][:2]
    assert puck_xy == pytest.approx((0.45 + 0.015, -0.01))
    # A sample that names only the mass leaves everything else at its nominal value.
    again = panda_scene.apply_randomization({"puck.mass": 0.4})
    assert again == pytest.approx(nominal | {"puck.mass": 0.4}, abs=1e-9, nan_ok=True)
    assert p.getDynamicsInfo(robot, 1, physicsClientId=client)[0] == pytest.approx(2.7907)


def test_friction_scale_is_not_modelled_and_bad_samples_refused(panda_scene):
    assert math.isnan(panda_scene.apply_randomization({"arm.friction_scale": 2.0})["arm.friction_scale"])
    with pytest.raises(ValueError, match="unknown randomization parameters"):
        panda_scene.apply_randomization({"puck.colour": 1.0})
    with pytest.raises(ValueError, match="puck.mass = -0.1 is not allowed"):
        panda_scene.apply_randomization({"puck.mass": -0.1})
    with pytest.raises(ValueError, match="slide_y > 0 needs slide_x > 0"):
        panda_scene.apply_randomization({"puck.friction.slide_x": 0.0, "arm.mass_scale": 2.0})
    assert p.getDynamicsInfo(panda_scene.robot, 1, physicsClientId=panda_scene.client)[0] == pytest.approx(2.7907)
    arm_only = PybulletBackend(load_family("gen3"))
    try:
        with pytest.raises(ValueError, match="puck scene"):
            arm_only.apply_randomization({"puck.mass": 0.2})
        assert arm_only.apply_randomization({"arm.mass_scale": 0.9})["arm.mass_scale"] == pytest.approx(0.9)
    finally:
        arm_only.close()


def slide_distance(backend, velocity) -> float:
    """How far the puck slides on the table from ``velocity`` (m/s) in one second."""
    backend.reset()
    start = np.array(p.getBasePositionAndOrientation(backend.puck, physicsClientId=backend.client)[0])
    p.resetBaseVelocity(backend.puck, velocity, [0, 0, 0], physicsClientId=backend.client)
    backend.step(240)
    end = np.array(p.getBasePositionAndOrientation(backend.puck, physicsClientId=backend.client)[0])
    return float(np.linalg.norm(end - start))


def test_anisotropic_friction_slows_the_puck_along_y(panda_scene):
    panda_scene.apply_randomization({"puck.friction.slide_x": 0.3, "puck.friction.slide_y": 0.6})
    along_x = slide_distance(panda_scene, [-0.5, 0, 0])
    along_y = slide_distance(panda_scene, [0, 0.5, 0])
    expected_x = 0.5**2 / (2 * 0.3 * 9.81)  # v² / (2 μ g)
    assert along_x == pytest.approx(expected_x, rel=0.05) and along_y == pytest.approx(expected_x / 2, rel=0.05)


def test_backends_coexist_and_close_cleans_up():
    arm = load_family("yumi")
    first, second = PybulletBackend(arm), PybulletBackend(arm)
    assert first.client != second.client
    first.execute(smooth_move(arm, arm.home_q, arm.home_q + 0.2))
    assert np.allclose(second.read_state().positions, arm.home_q, atol=1e-3)
    path = first.urdf_path
    assert path.is_file()
    first.close()
    first.close()
    assert not path.exists() and not p.isConnected(physicsClientId=first.client)
    assert np.allclose(second.reset().positions, arm.home_q)
    second.close()
