"""URDF export and import: round trips of every family (into both simulators), a hand-written URDF, clear errors
for files that are not one tree or carry values no arm can have, and a warning for placeholder limits."""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import mujoco
import numpy as np
import pybullet_data
import pytest
from arm_variants import perturbed

from mtrl_robot.arms.chain import axis_angle_to_matrix, rpy_to_matrix, transform
from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import flange_pose, flange_position, joint_frames
from mtrl_robot.arms.urdf import LimitOverride, arm_to_urdf, load_urdf_arm, matrix_to_rpy
from mtrl_robot.backends.mujoco_backend import MujocoBackend
from mtrl_robot.backends.pybullet_backend import PybulletBackend
from mtrl_robot.backends.trajectory import JointTrajectory
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.scenes.puck_table import load_scene

FAMILIES = ["baxter", "gen3", "panda", "yumi", "ur5e"]


def round_trip(arm, tmp_path):
    path = tmp_path / f"{arm.robot_id}.urdf"
    path.write_text(arm_to_urdf(arm))
    return load_urdf_arm(path, arm.flange_link, family=arm.family)


def test_matrix_to_rpy_inverts_rpy_to_matrix_including_gimbal_lock():
    rng = np.random.default_rng(0)
    angles = [(0.3, math.pi / 2, 0.2), (0.3, -math.pi / 2, -1.0), (math.pi / 2, -math.pi / 2, 0.0), (math.pi, 0, 0)]
    for rpy in angles + [tuple(rng.uniform(-4, 4, 3)) for _ in range(500)]:
        rotation = rpy_to_matrix(np.array(rpy))
        assert np.allclose(rpy_to_matrix(np.array(matrix_to_rpy(rotation))), rotation, atol=1e-14)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("perturb", [False, True], ids=["nominal", "perturbed"])
def test_round_trip_keeps_kinematics_limits_and_inertials(family, perturb, tmp_path):
    arm = load_family(family)
    arm = perturbed(arm) if perturb else arm
    loaded = round_trip(arm, tmp_path)
    q = np.random.default_rng(1).uniform(arm.lower, arm.upper, (500, arm.dof))
    assert np.abs(flange_pose(loaded, q) - flange_pose(arm, q)).max() < 1e-9
    assert loaded.joint_names == arm.joint_names
    assert loaded.flange_link == arm.flange_link and loaded.base_link == "world"
    for a, b in zip(loaded.joints, arm.joints, strict=True):
        assert (a.lower, a.upper, a.velocity, a.effort) == (b.lower, b.upper, b.velocity, b.effort)
        assert a.zero_offset == 0.0  # baked into the origin
    for a, b in zip(loaded.links, arm.links, strict=True):
        assert a.name == b.name and a.mass == pytest.approx(b.mass, abs=1e-12)
        assert np.allclose(a.com, b.com, atol=1e-12) and np.allclose(a.inertia, b.inertia, atol=1e-12)
    assert np.allclose(loaded.damping, arm.damping) and np.allclose(loaded.friction, arm.friction)


@pytest.mark.parametrize("family", FAMILIES)
def test_mujoco_reads_the_export_with_the_same_kinematics(family):
    arm = perturbed(load_family(family))
    model = mujoco.MjModel.from_xml_string(arm_to_urdf(arm))  # an independent URDF reader
    data = mujoco.MjData(model)
    assert model.njnt == arm.dof and model.body(model.nbody - 1).name == arm.links[-1].name
    for q in np.random.default_rng(4).uniform(arm.lower, arm.upper, (20, arm.dof)):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        assert np.abs(data.xpos[-1] - joint_frames(arm, q)[-2, :3, 3]).max() < 1e-12


def test_export_is_a_urdf_tree_rooted_at_world():
    arm = load_family("panda")
    robot = ET.fromstring(arm_to_urdf(arm))
    links = [ln.get("name") for ln in robot.findall("link")]
    assert links[0] == "world" and arm.base_link in links and arm.flange_link in links
    types = {j.get("name"): j.get("type") for j in robot.findall("joint")}
    assert types == {"world_to_panda_link0": "fixed", **{n: "revolute" for n in arm.joint_names},
                     "panda_link8_fixed": "fixed"}
    for link in robot.findall("link")[2:-1]:
        assert link.find("visual/geometry/*") is not None and link.find("collision/geometry/*") is not None


HAND_WRITTEN = """<?xml version="1.0"?>
<robot name="two_link">
  <link name="ground"/>
  <link name="base"/>
  <link name="upper"><inertial><origin xyz="0 0 0.1"/><mass value="2"/>
    <inertia ixx="0.02" ixy="0" ixz="0" iyy="0.02" iyz="0" izz="0.001"/></inertial></link>
  <link name="elbow_block"><inertial><origin xyz="0 0 0.1"/><mass value="2"/>
    <inertia ixx="0.01" ixy="0" ixz="0" iyy="0.01" iyz="0" izz="0.001"/></inertial></link>
  <link name="lower"><inertial><mass value="1"/>
    <inertia ixx="0.01" ixy="0" ixz="0" iyy="0.01" iyz="0" izz="0.001"/></inertial></link>
  <link name="tool"/>
  <link name="finger"><inertial><mass value="5"/>
    <inertia ixx="1" ixy="0" ixz="0" iyy="1" iyz="0" izz="1"/></inertial></link>
  <joint name="mount" type="fixed"><parent link="ground"/><child link="base"/>
    <origin xyz="0 0 0.5" rpy="0 0 1.5707963267948966"/></joint>
  <joint name="shoulder" type="revolute"><parent link="base"/><child link="upper"/>
    <origin xyz="0 0 0.1"/><axis xyz="0 2 0"/>
    <limit lower="-1.5" upper="1.5" effort="50" velocity="2"/><dynamics damping="0.7" friction="0.3"/></joint>
  <joint name="elbow_mount" type="fixed"><parent link="upper"/><child link="elbow_block"/>
    <origin xyz="0 0 0.3" rpy="0.2 0 0"/></joint>
  <joint name="elbow" type="continuous"><parent link="elbow_block"/><child link="lower"/>
    <origin xyz="0 0 0.2" rpy="0 0.3 0"/><axis xyz="1 0 0"/><limit effort="20" velocity="3"/></joint>
  <joint name="tool_mount" type="fixed"><parent link="lower"/><child link="tool"/>
    <origin xyz="0.05 0 0.25" rpy="3.141592653589793 0 0"/></joint>
  <joint name="finger_slide" type="prismatic"><parent link="tool"/><child link="finger"/>
    <axis xyz="1 0 0"/><limit lower="0" upper="0.04" effort="10" velocity="0.1"/></joint>
</robot>
"""


ELBOW_RANGE = {"elbow": LimitOverride("test: the continuous elbow's range", lower=-2 * math.pi, upper=2 * math.pi)}


def expected_two_link_pose(q: np.ndarray) -> np.ndarray:
    def pose(xyz, rpy=(0.0, 0.0, 0.0)):
        return transform(np.array(xyz, float), rpy_to_matrix(np.array(rpy, float)))

    def turn(axis, angle):
        return transform(np.zeros(3), axis_angle_to_matrix(np.array(axis, float), angle))

    return (pose((0, 0, 0.5), (0, 0, math.pi / 2)) @ pose((0, 0, 0.1)) @ turn((0, 1, 0), q[0])
            @ pose((0, 0, 0.3), (0.2, 0, 0)) @ pose((0, 0, 0.2), (0, 0.3, 0)) @ turn((1, 0, 0), q[1])
            @ pose((0.05, 0, 0.25), (math.pi, 0, 0)))


def test_hand_written_urdf_with_fixed_joints_and_a_continuous_joint(tmp_path):
    path = tmp_path / "two_link.urdf"
    path.write_text(HAND_WRITTEN)
    arm = load_urdf_arm(path, "tool", overrides=ELBOW_RANGE)
    assert (arm.family, arm.base_link, arm.joint_names) == ("two_link", "ground", ("shoulder", "elbow"))
    assert [j.parent for j in arm.joints] == ["ground", "upper"]
    rng = np.random.default_rng(0)
    for q in rng.uniform(arm.lower, arm.upper, (50, 2)):
        assert np.abs(flange_pose(arm, q) - expected_two_link_pose(q)).max() < 1e-12
    shoulder, elbow = arm.joints
    assert shoulder.axis == (0.0, 1.0, 0.0)  # normalised
    assert (shoulder.lower, shoulder.upper, shoulder.effort, shoulder.velocity) == (-1.5, 1.5, 50.0, 2.0)
    assert (elbow.lower, elbow.upper) == (-2 * math.pi, 2 * math.pi)
    assert arm.damping == (0.7, 0.0) and arm.friction == (0.3, 0.0) and arm.home == (0.0, 0.0)
    # "upper" carries the fixed elbow block (2 kg at z = 0.3 + 0.1 rotated): mass and COM combine;
    # the finger behind the off-chain prismatic joint is ignored.
    upper, lower = arm.links
    block_com = np.array([0, 0, 0.3]) + rpy_to_matrix(np.array([0.2, 0, 0])) @ np.array([0, 0, 0.1])
    assert upper.mass == 4.0 and np.allclose(upper.com, (np.array([0, 0, 0.1]) + block_com) / 2)
    tilt = rpy_to_matrix(np.array([0.2, 0, 0]))
    half = (block_com - np.array([0, 0, 0.1])) / 2  # each part's offset from the common centre, up to sign
    steiner = 2 * 2.0 * (half @ half * np.eye(3) - np.outer(half, half))
    tensor = np.diag([0.02, 0.02, 0.001]) + tilt @ np.diag([0.01, 0.01, 0.001]) @ tilt.T + steiner
    assert np.allclose(upper.inertia, np.diag(tensor), atol=1e-15)
    assert lower.mass == 1.0 and lower.inertia == (0.01, 0.01, 0.001)


def test_base_link_and_home_in_the_middle_of_limits(tmp_path):
    path = tmp_path / "two_link.urdf"
    path.write_text(HAND_WRITTEN.replace('lower="-1.5" upper="1.5"', 'lower="0.5" upper="1.5"'))
    arm = load_urdf_arm(path, "lower", base_link="base", family="mine", overrides=ELBOW_RANGE)
    assert (arm.family, arm.robot_id, arm.base_link, arm.home) == ("mine", "mine-nominal", "base", (1.0, 0.0))
    assert arm.flange_xyz == (0.0, 0.0, 0.0)


def error_for(tmp_path, text: str | None, flange: str = "tool", base: str | None = None) -> ConfigError:
    path = tmp_path / "robot.urdf"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_urdf_arm(path, flange, base_link=base, overrides=ELBOW_RANGE)
    assert info.value.source == str(path)
    return info.value


def test_missing_file_and_malformed_xml(tmp_path):
    assert "file not found" in str(error_for(tmp_path, None))
    error = error_for(tmp_path, HAND_WRITTEN.replace("</robot>", ""))
    assert "malformed XML" in error.problem and "line" in error.problem
    assert "<robot>" in error_for(tmp_path, "<sdf/>").problem


def test_unknown_flange_lists_links(tmp_path):
    error = error_for(tmp_path, HAND_WRITTEN, flange="gripper")
    assert error.field == "flange_link" and "'gripper'" in error.problem and "ground, base, upper" in error.problem


def test_no_path_from_base_to_flange(tmp_path):
    error = error_for(tmp_path, HAND_WRITTEN, flange="upper", base="lower")
    assert error.field == "base_link" and "no chain from 'lower' to 'upper'" in error.problem


def test_separate_trees_are_refused_naming_their_roots(tmp_path):
    text = HAND_WRITTEN.replace('<link name="tool"/>', '<link name="tool"/><link name="stray"/>')
    error = error_for(tmp_path, text, base="ground")
    assert "2 separate trees, rooted at ground, stray" in error.problem


CYCLE = """  <link name="left"/><link name="right"/>
  <joint name="left_to_right" type="fixed"><parent link="left"/><child link="right"/></joint>
  <joint name="right_to_left" type="fixed"><parent link="right"/><child link="left"/></joint>
</robot>"""


@pytest.mark.parametrize(("cycle", "joints"), [
    (CYCLE, {"left_to_right", "right_to_left"}),  # apart from the tree
    ('<joint name="back" type="fixed"><parent link="tool"/><child link="ground"/></joint></robot>',  # through it
     {"back", "mount", "shoulder", "elbow_mount", "elbow", "tool_mount"}),
    ('<link name="knot"/><joint name="loop" type="fixed"><parent link="knot"/><child link="knot"/></joint></robot>',
     {"loop"}),
])
def test_a_cycle_is_refused_naming_its_joints(tmp_path, cycle, joints):
    error = error_for(tmp_path, HAND_WRITTEN.replace("</robot>", cycle), base="ground")
    named = re.fullmatch(r"the joints (.*) form a cycle \((.*)\); a URDF must be a tree", error.problem)
    assert named and {name.strip("'") for name in named[1].split(", ")} == joints, error.problem
    assert error.field == f"joint[@name={named[1].split(', ')[0]}]"


def test_a_link_with_two_parents_names_both_joints(tmp_path):
    second = '<joint name="again" type="fixed"><parent link="base"/><child link="tool"/></joint></robot>'
    error = error_for(tmp_path, HAND_WRITTEN.replace("</robot>", second))
    assert error.field == "joint[@name='again']" and "('tool_mount' and 'again')" in error.problem


def test_links_and_joints_named_twice(tmp_path):
    error = error_for(tmp_path, HAND_WRITTEN.replace('<link name="stray"/>', "").replace(
        '<link name="tool"/>', '<link name="tool"/><link name="tool"/>'))
    assert error.field == "link[@name='tool']" and "two links" in error.problem
    error = error_for(tmp_path, HAND_WRITTEN.replace('name="tool_mount"', 'name="mount"'))
    assert error.field == "joint[@name='mount']" and "two joints" in error.problem


SHOULDER = "joint[@name='shoulder']"
UPPER = "link[@name='upper']/inertial"


@pytest.mark.parametrize(("old", "new", "field", "message"), [
    ('velocity="2"', 'velocity="1e300"', f"{SHOULDER}/limit/@velocity", "1e+300 rad/s is beyond any real arm"),
    ('effort="50"', 'effort="1e300"', f"{SHOULDER}/limit/@effort", "1e+300 N·m is beyond any real arm"),
    ('lower="-1.5"', 'lower="-1e300"', f"{SHOULDER}/limit/@lower", "more than two turns"),
    ('damping="0.7"', 'damping="-0.7"', f"{SHOULDER}/dynamics/@damping", "must be at least 0, got -0.7"),
    ('friction="0.3"', 'friction="1e300"', f"{SHOULDER}/dynamics/@friction", "beyond any real arm"),
    ('<origin xyz="0 0 0.1"/><axis', '<origin xyz="0 1e300 0.1"/><axis', f"{SHOULDER}/origin/@xyz",
     "an offset of 1e+300 m is beyond any real arm"),
    ('<mass value="2"/>\n    <inertia ixx="0.02"', '<mass value="1e300"/>\n    <inertia ixx="0.02"',
     f"{UPPER}/mass/@value", "1e+300 kg is beyond any real arm"),
    ('ixx="0.02"', 'ixx="-0.02"', f"{UPPER}/inertia/@ixx", "a moment of inertia must not be negative, got -0.02"),
    ('ixx="0.02"', 'ixx="0.2"', f"{UPPER}/inertia", "not the inertia of a body"),  # 0.2 > 0.02 + 0.001
    ('ixx="0.02" ixy="0"', 'ixx="0.02" ixy="0.05"', f"{UPPER}/inertia", "must not be negative"),
    ('ixx="0.01" ixy="0" ixz="0" iyy="0.01" iyz="0" izz="0.001"/></inertial></link>\n  <link name="lower">',
     'ixx="-0.01" ixy="0" ixz="0" iyy="0.01" iyz="0" izz="0.001"/></inertial></link>\n  <link name="lower">',
     "link[@name='elbow_block']/inertial/inertia/@ixx", "must not be negative"),  # fixed to a moving link
])
def test_values_no_arm_can_have_are_refused_in_one_line(tmp_path, old, new, field, message):
    assert HAND_WRITTEN.count(old) == 1
    error = error_for(tmp_path, HAND_WRITTEN.replace(old, new))
    assert error.field == field and message in error.problem and "\n" not in str(error), str(error)


def test_missing_limit_and_bad_limits(tmp_path):
    no_limit = HAND_WRITTEN.replace('<limit lower="-1.5" upper="1.5" effort="50" velocity="2"/>', "")
    error = error_for(tmp_path, no_limit)
    assert error.field == "joint[@name='shoulder']/limit" and "revolute" in error.problem
    no_velocity = HAND_WRITTEN.replace('<limit effort="20" velocity="3"/>', '<limit effort="20"/>')
    assert error_for(tmp_path, no_velocity).field == "joint[@name='elbow']/limit/@velocity"
    empty_range = HAND_WRITTEN.replace('lower="-1.5" upper="1.5"', 'upper="0"')
    assert "not below" in error_for(tmp_path, empty_range).problem
    bad_number = HAND_WRITTEN.replace('effort="50"', 'effort="fifty"')
    assert error_for(tmp_path, bad_number).field == "joint[@name='shoulder']/limit/@effort"


def test_prismatic_and_mimic_joints_on_the_chain_are_refused(tmp_path):
    error = error_for(tmp_path, HAND_WRITTEN, flange="finger")
    assert error.field == "joint[@name='finger_slide']/@type" and "'prismatic'" in error.problem
    mimic = HAND_WRITTEN.replace('<axis xyz="1 0 0"/><limit effort="20"',
                                 '<mimic joint="shoulder"/><axis xyz="1 0 0"/><limit effort="20"')
    error = error_for(tmp_path, mimic)
    assert error.field == "joint[@name='elbow']/mimic" and "mimic" in error.problem


def test_massless_moving_link_and_chain_without_joints(tmp_path):
    massless = HAND_WRITTEN.replace('<link name="lower"><inertial><mass value="1"/>', '<link name="lower"><inertial>'
                                    '<mass value="0"/>')
    assert "no mass" in error_for(tmp_path, massless).problem
    assert "no revolute or continuous joint" in error_for(tmp_path, HAND_WRITTEN, flange="base").problem


def test_a_moving_point_mass_is_refused_before_a_simulator_sees_it(tmp_path):
    point = HAND_WRITTEN.replace('<mass value="1"/>\n    <inertia ixx="0.01" ixy="0" ixz="0" iyy="0.01" iyz="0" '
                                 'izz="0.001"/>', '<mass value="1"/>')
    error = error_for(tmp_path, point)
    assert error.field == "link[@name='lower']/inertial/inertia" and "moved by elbow" in error.problem
    assert "moments of inertia 0, 0, 0 kg·m²" in error.problem


def test_an_axis_with_huge_components_keeps_its_direction(tmp_path):
    path = tmp_path / "robot.urdf"
    path.write_text(HAND_WRITTEN.replace('<axis xyz="1 0 0"/><limit effort="20"', '<axis xyz="1e200 1e200 0"/><limit '
                                         'effort="20"'))
    axis = load_urdf_arm(path, "tool", overrides=ELBOW_RANGE).joints[1].axis
    assert np.allclose(axis, (math.sqrt(0.5), math.sqrt(0.5), 0.0))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_world_rooted_urdf_simulates_in_both_backends(family, tmp_path):
    arm = perturbed(load_family(family))
    loaded = round_trip(arm, tmp_path)
    assert loaded.base_link == "world"
    scene = load_scene()
    mount = np.array([0.0, 0.0, scene.table_top + scene.mount_height(family)])
    for backend in (MujocoBackend(loaded, scene), PybulletBackend(loaded, scene)):
        try:
            for q in np.random.default_rng(5).uniform(arm.lower, arm.upper, (10, arm.dof)):
                backend.reset(q)
                assert np.abs(backend.flange_position() - flange_position(arm, q) - mount).max() < 1e-6
            start = arm.home_q
            backend.reset(start)
            goal = np.clip(start + 0.2, arm.lower, arm.upper)
            s = np.linspace(0.0, 1.0, 21)[:, None]
            result = backend.execute(JointTrajectory(arm.joint_names, np.linspace(0.0, 1.0, 21),
                                                     start + (3 * s**2 - 2 * s**3) * (goal - start)))
            assert result.success, result.message
            reached = backend.read_state().positions
            assert np.abs(backend.flange_position() - flange_position(arm, reached) - mount).max() < 1e-3
        finally:
            backend.close()


def test_placeholder_limits_are_warned_of_once_naming_the_joints_and_published_ones_are_not(tmp_path, caplog):
    path = Path(pybullet_data.getDataPath()) / "kuka_iiwa" / "model.urdf"
    with caplog.at_level(logging.WARNING, logger="mtrl_robot.arms.urdf"):
        arm = load_urdf_arm(path, "lbr_iiwa_link_7")
        for family in FAMILIES:
            round_trip(load_family(family), tmp_path)
    assert arm.velocity_limits.tolist() == [10.0] * 7  # kept as given, not refused
    [record] = caplog.records
    assert record.levelno == logging.WARNING and str(path) in record.getMessage()
    assert all(name in record.getMessage() for name in arm.joint_names) and "placeholders" in record.getMessage()
