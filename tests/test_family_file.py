"""User family files: a URDF with its base and flange, a checked or chosen home, limits that override the URDF's;
one resolver for built-in names and family files; every bad input one line naming the file and the field."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pybullet_data
import pytest

from mtrl_robot.arms.families import load_families, load_family
from mtrl_robot.arms.family_file import draft_family_file
from mtrl_robot.arms.home import AT_LIMIT, HOME_MARGIN, MAX_CONDITION, check_home, choose_home, condition_number
from mtrl_robot.arms.loader import URDF, load_arm
from mtrl_robot.core.config import load_yaml
from mtrl_robot.core.errors import ConfigError

IIWA_URDF = Path(pybullet_data.getDataPath()) / "kuka_iiwa" / "model.urdf"
IIWA_JOINTS = tuple(f"lbr_iiwa_joint_{i}" for i in range(1, 8))
# KUKA LBR iiwa 14 R820 technical data, axis data: maximum velocity (°/s) and maximum torque (N·m) of A1–A7.
IIWA_VELOCITY = (85, 85, 100, 75, 130, 135, 135)
IIWA_TORQUE = (320, 320, 176, 176, 110, 40, 40)
IIWA_SOURCE = "KUKA LBR iiwa 14 R820 technical data, axis data"


def iiwa_limits(joints=range(7)) -> str:
    """The ``limits:`` entries of the published iiwa limits for the joints numbered in ``joints`` (0-based)."""
    return "".join(f"  {IIWA_JOINTS[i]}: {{velocity: {math.radians(IIWA_VELOCITY[i]):.4f}, effort: "
                   f"{IIWA_TORQUE[i]}, source: '{IIWA_SOURCE}'}}\n" for i in joints)


def family_file(tmp_path: Path, body: str, urdf_text: str | None = None, name: str = "iiwa.yaml") -> Path:
    """A family file beside a copy of the iiwa URDF (or of ``urdf_text``), with ``body`` after its urdf field."""
    urdf = tmp_path / "iiwa.urdf"
    if urdf_text is None:
        shutil.copy(IIWA_URDF, urdf)
    else:
        urdf.write_text(urdf_text)
    path = tmp_path / name
    path.write_text("urdf: iiwa.urdf\n" + body)
    return path


def test_a_family_file_is_a_family_wherever_a_name_is(tmp_path, caplog):
    path = family_file(tmp_path, "family: iiwa\ndescription: KUKA LBR iiwa 14\nflange_link: lbr_iiwa_link_7\n"
                                 "home: [0, 0.6, 0, -1.2, 0, 0.8, 0]\nlimits:\n" + iiwa_limits())
    with caplog.at_level(logging.WARNING):
        arm = load_family(str(path))
    assert not caplog.records  # every placeholder is overridden: nothing to warn of
    assert (arm.family, arm.robot_id, arm.description) == ("iiwa", "iiwa-nominal", "KUKA LBR iiwa 14")
    assert arm.joint_names == IIWA_JOINTS and arm.base_link == "lbr_iiwa_link_0"
    assert arm.home == (0.0, 0.6, 0.0, -1.2, 0.0, 0.8, 0.0)
    np.testing.assert_allclose(arm.velocity_limits, np.radians(IIWA_VELOCITY), atol=1e-4)
    assert [j.effort for j in arm.joints] == list(IIWA_TORQUE)
    assert load_arm(str(path)).joint_names == IIWA_JOINTS  # the loader nodes and the CLI use
    assert list(load_families(["panda", str(path)], None, "families")) == ["panda", "iiwa"]


def test_overrides_take_precedence_and_silence_the_placeholder_warning_for_their_joints(tmp_path, caplog):
    path = family_file(tmp_path, "flange_link: lbr_iiwa_link_7\nlimits:\n" + iiwa_limits(range(3)) +
                       f"  {IIWA_JOINTS[3]}: {{acceleration: 7.5, jerk: 300, source: 'a test'}}\n")
    with caplog.at_level(logging.WARNING, logger="mtrl_robot.arms.urdf"):
        arm = load_family(path)
    [record] = caplog.records
    message = record.getMessage()
    assert "placeholders" in message and str(tmp_path / "iiwa.urdf") in message
    assert all(f"{name} (" not in message for name in IIWA_JOINTS[:3])  # overridden: not named
    assert all(f"{name} (velocity 10, effort 300)" in message for name in IIWA_JOINTS[3:])
    assert arm.joints[0].velocity == pytest.approx(math.radians(85), abs=1e-4) and arm.joints[0].effort == 320
    assert (arm.joints[3].velocity, arm.joints[3].acceleration, arm.joints[3].jerk) == (10.0, 7.5, 300.0)
    assert arm.joints[4].jerk is None


def test_no_velocity_limit_no_demo_unless_the_family_file_gives_one(tmp_path):
    urdf = IIWA_URDF.read_text()
    no_velocity = urdf.replace('upper="2.09439510239" velocity="10"', 'upper="2.09439510239"', 1)
    path = family_file(tmp_path, "flange_link: lbr_iiwa_link_7\n", no_velocity)
    with pytest.raises(ConfigError) as info:
        load_family(path)
    assert info.value.source == str(tmp_path / "iiwa.urdf")
    assert info.value.field == "joint[@name='lbr_iiwa_joint_2']/limit/@velocity"
    assert "no velocity limit" in info.value.problem and f"limits.{IIWA_JOINTS[1]}.velocity" in info.value.problem
    path.write_text(path.read_text() + f"limits:\n  {IIWA_JOINTS[1]}: {{velocity: 1.48, source: 'data sheet'}}\n")
    assert load_family(path).joints[1].velocity == 1.48
    zero = urdf.replace('upper="2.09439510239" velocity="10"', 'upper="2.09439510239" velocity="0"', 1)
    with pytest.raises(ConfigError, match="no velocity limit"):
        load_family(family_file(tmp_path, "flange_link: lbr_iiwa_link_7\n", zero))


def test_a_continuous_joint_needs_its_range_from_the_family_file(tmp_path):
    continuous = IIWA_URDF.read_text().replace('name="lbr_iiwa_joint_7" type="revolute"',
                                               'name="lbr_iiwa_joint_7" type="continuous"')
    path = family_file(tmp_path, "flange_link: lbr_iiwa_link_7\n", continuous)
    with pytest.raises(ConfigError) as info:
        load_family(path)
    assert info.value.field == "joint[@name='lbr_iiwa_joint_7']/@type" and "continuous" in info.value.problem
    path.write_text(path.read_text() + f"limits:\n  {IIWA_JOINTS[6]}: {{lower: -3, upper: 3, source: 'stops'}}\n")
    assert (load_family(path).joints[6].lower, load_family(path).joints[6].upper) == (-3.0, 3.0)


def test_without_a_home_one_is_chosen_well_conditioned_inside_the_limits_and_always_the_same(tmp_path):
    arm = load_family(family_file(tmp_path, "flange_link: lbr_iiwa_link_7\n"))
    home = arm.home_q
    margin = HOME_MARGIN * (arm.upper - arm.lower)
    assert np.all(home >= arm.lower + margin - 1e-4) and np.all(home <= arm.upper - margin + 1e-4)
    assert condition_number(arm, home) < 10 < MAX_CONDITION < condition_number(arm, np.zeros(7))
    assert load_family(tmp_path / "iiwa.yaml").home == arm.home  # deterministic
    choice = choose_home(arm, seed=0)
    assert choice.q == arm.home and choice.sigma_min > 3 * choice.default_sigma_min
    assert load_arm(URDF, urdf_file=IIWA_URDF, flange_link="lbr_iiwa_link_7").home == arm.home  # a bare URDF too


def test_the_stretched_singular_home_is_refused_with_its_condition_number(tmp_path):
    path = family_file(tmp_path, "flange_link: lbr_iiwa_link_7\nhome: [0, 0, 0, 0, 0, 0, 0]\n")
    with pytest.raises(ConfigError) as info:
        load_family(path)
    assert (info.value.source, info.value.field) == (str(path), "home")
    assert "singular" in info.value.problem and "condition number" in info.value.problem


def test_a_home_at_a_limit_is_refused_naming_the_joint(tmp_path):
    arm = load_family(family_file(tmp_path, "flange_link: lbr_iiwa_link_7\n"))
    home = arm.home_q.copy()
    home[3] = arm.upper[3] - AT_LIMIT / 2
    with pytest.raises(ConfigError, match=r"home\[3\]: .* is at a limit of lbr_iiwa_joint_4"):
        check_home(arm, home, "iiwa.yaml")


def test_arm_init_writes_every_choice_and_loads_back_to_the_same_arm(tmp_path):
    text, arm, choice = draft_family_file(IIWA_URDF, "lbr_iiwa_link_7", tmp_path / "my_iiwa.yaml")
    path = tmp_path / "my_iiwa.yaml"
    path.write_text(text)
    loaded = load_family(path)
    assert loaded == arm and loaded.family == "my_iiwa" and loaded.home == choice.q
    data = load_yaml(path)
    assert data["home"] == list(choice.q) and data["urdf"] == str(IIWA_URDF.resolve()) and data["limits"] == {}
    assert "condition number" in text and f"seed {choice.seed}" in text
    assert all(f"# {name}: {{velocity: ?, effort: ?" in text for name in IIWA_JOINTS)  # placeholders to fill in


BAD_URDF_LINE = 'name="lbr_iiwa_joint_3" type="revolute"'


@pytest.mark.parametrize("body, urdf_edit, source, field, problem", [
    ("flange_link: lbr_iiwa_link_9\n", None, "urdf", "flange_link", "no link 'lbr_iiwa_link_9'"),
    ("flange_link: lbr_iiwa_link_3\nbase_link: lbr_iiwa_link_5\n", None, "urdf", "base_link", "no chain from"),
    ("flange_link: lbr_iiwa_link_7\n", (BAD_URDF_LINE, 'name="lbr_iiwa_joint_3" type="prismatic"'), "urdf",
     "joint[@name='lbr_iiwa_joint_3']/@type", "'prismatic' joints are not supported"),
    ("flange_link: lbr_iiwa_link_7\n", (BAD_URDF_LINE, 'name="lbr_iiwa_joint_3" type="floating"'), "urdf",
     "joint[@name='lbr_iiwa_joint_3']/@type", "'floating' joints are not supported"),
    ("flange_link: lbr_iiwa_link_7\n", (BAD_URDF_LINE, BAD_URDF_LINE + '>\n    <mimic joint="lbr_iiwa_joint_2"/'),
     "urdf", "joint[@name='lbr_iiwa_joint_3']/mimic", "mimic joints are not supported"),
    ("flange_link: lbr_iiwa_link_7\nhome: [0, 0.6, 0]\n", None, "family", "home", "expected a list of 7 numbers"),
    ("flange_link: lbr_iiwa_link_7\nhome: [0, 0.6, 0, -1.2, 0, 0.8, 4]\n", None, "family", "home[6]",
     "outside the limits of lbr_iiwa_joint_7"),
    ("flange_link: lbr_iiwa_link_7\nfamily: panda\n", None, "family", "family", "built-in family"),
    ("flange_link: lbr_iiwa_link_7\nfamily: my arm\n", None, "family", "family", "not a family name"),
    ("flange_link: lbr_iiwa_link_7\ngripper: yes\n", None, "family", "gripper", "unknown field"),
    ("flange: lbr_iiwa_link_7\n", None, "family", "flange", "unknown field"),
    ("flange_link: lbr_iiwa_link_7\nlimits: {elbow: {velocity: 1, source: x}}\n", None, "family", "limits.elbow",
     "not a joint between"),
    ("flange_link: lbr_iiwa_link_7\nlimits: {lbr_iiwa_joint_1: {velocity: 1}}\n", None, "family",
     "limits.lbr_iiwa_joint_1.source", "say where"),
    ("flange_link: lbr_iiwa_link_7\nlimits: {lbr_iiwa_joint_1: {velocity: .nan, source: x}}\n", None, "family",
     "limits.lbr_iiwa_joint_1.velocity", "finite"),
    ("flange_link: lbr_iiwa_link_7\nlimits: {lbr_iiwa_joint_1: {effort: 1.0e+9, source: x}}\n", None, "family",
     "limits.lbr_iiwa_joint_1.effort", "beyond any real arm"),
    ("flange_link: [lbr_iiwa_link_7\n", None, "family", None, "malformed YAML"),
])
def test_bad_family_files_are_one_line_naming_the_file_and_the_field(tmp_path, body, urdf_edit, source, field,
                                                                      problem):
    urdf = IIWA_URDF.read_text()
    if urdf_edit:
        assert urdf.count(urdf_edit[0]) == 1
        urdf = urdf.replace(*urdf_edit)
    path = family_file(tmp_path, body, urdf)
    with pytest.raises(ConfigError) as info:
        load_family(path)
    assert info.value.source == str(path if source == "family" else tmp_path / "iiwa.urdf")
    assert info.value.field == field and problem in info.value.problem and "\n" not in str(info.value)


def test_a_missing_urdf_and_two_families_of_one_name_are_refused(tmp_path):
    missing = tmp_path / "missing.yaml"
    missing.write_text("urdf: nowhere/arm.urdf\nflange_link: tool0\n")
    with pytest.raises(ConfigError, match=f"{missing}: urdf: no URDF at {tmp_path / 'nowhere' / 'arm.urdf'}"):
        load_family(missing)
    first = family_file(tmp_path, "family: iiwa\nflange_link: lbr_iiwa_link_7\n", name="a.yaml")
    second = family_file(tmp_path, "family: iiwa\nflange_link: lbr_iiwa_link_6\n", name="b.yaml")
    with pytest.raises(ConfigError, match=r"run.yaml: families\[1\]: .*b.yaml' is named 'iiwa', as an earlier"):
        load_families([str(first), str(second)], "run.yaml", "families")
    with pytest.raises(ConfigError, match=r"families\[2\]: 'panda' is listed twice"):
        load_families(["panda", str(first), "panda"], "run.yaml", "families")


def test_a_hardware_preset_takes_a_family_file_relative_to_itself(tmp_path):
    from mtrl_robot.hardware.presets import load_preset

    (tmp_path / "arm").mkdir()
    family_file(tmp_path / "arm", "family: iiwa\nflange_link: lbr_iiwa_link_7\nlimits:\n" + iiwa_limits())
    names = [f"joint_a{i}" for i in range(1, 8)]
    limits = "".join(f"  {n}: {{lower: -1.5, upper: 1.5, velocity: 0.5, acceleration: 2.0}}\n" for n in names)
    preset = tmp_path / "kuka.yaml"
    preset.write_text(
        "family: arm/iiwa.yaml\ndriver: test\ncontroller: position_trajectory_controller\n"
        "action: /position_trajectory_controller/follow_joint_trajectory\n"
        "trajectory_topic: /position_trajectory_controller/joint_trajectory\njoint_states_topic: /joint_states\n"
        "joint_states_rate: 100.0\ncontrol_rate: 1000.0\nwatchdog_timeout: 0.25\nmax_start_deviation: 0.05\n"
        "position_margin: 0.05\nworkspace: {min: [-1, -1, 0], max: [1, 1, 1.5]}\ndry_run: true\n"
        f"joint_names: [{', '.join(names)}]\n"
        f"joint_map: {{{', '.join(f'{n}: {j}' for n, j in zip(names, IIWA_JOINTS, strict=True))}}}\n"
        "limits:\n" + limits)
    loaded = load_preset(preset)
    assert loaded.family == str(tmp_path / "arm" / "iiwa.yaml") and loaded.model_names == IIWA_JOINTS
    assert loaded.safety_limits().arm.family == "iiwa"  # the safety layer's FK is the family file's arm
    preset.write_text(preset.read_text().replace("velocity: 0.5", "velocity: 2.0", 1))
    with pytest.raises(ConfigError, match=r"kuka.yaml: limits.joint_a1.velocity: 2.0 rad/s exceeds the iiwa family"):
        load_preset(preset)
