"""Family definitions: loading, limits, and errors that name the file and field."""

import numpy as np
import pytest

from mtrl_robot.arms.families import families_dir, family_names, load_family, load_family_file
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.core.errors import ConfigError, JointVectorError


def test_five_built_in_families():
    assert family_names() == ["baxter", "gen3", "panda", "ur5e", "yumi"]
    for name in family_names():
        arm = load_family(name)
        assert arm.dof == (6 if name == "ur5e" else 7)
        assert np.all(arm.lower < arm.upper) and np.all(arm.velocity_limits > 0)
        assert np.all((arm.home_q >= arm.lower) & (arm.home_q <= arm.upper))
        assert all(link.mass > 0 for link in arm.links)


def test_hardware_joint_names():
    assert load_family("panda").joint_names[0] == "panda_joint1"
    assert load_family("gen3").joint_names == tuple(f"joint_{i}" for i in range(1, 8))
    assert load_family("baxter").joint_names[-1] == "right_w2"
    assert load_family("yumi").joint_names[2] == "yumi_joint_7_r"  # ABB axis order 1, 2, 7, 3, 4, 5, 6


def test_published_jerk_limits():
    """FCI "Limits for Panda" jerk (rad/s³); the other families publish none."""
    assert [j.jerk for j in load_family("panda").joints] == [7500, 3750, 5000, 6250, 7500, 10000, 10000]
    for name in ("gen3", "yumi", "baxter"):
        assert all(j.jerk is None for j in load_family(name).joints)


def test_unknown_family():
    with pytest.raises(ConfigError, match="unknown arm family 'kuka'.*panda"):
        load_family("kuka")


@pytest.mark.parametrize("edit, field, problem", [
    (("lower: -2.8973, upper: 2.8973", "lower: 2.9, upper: 2.8973", 1), "joints[0].lower", "not below"),
    (("mass: 2.7907", "mass: -2.7907", 1), "links.panda_link1.mass", "positive"),
    (("velocity: 2.1750", "velocity: .nan", 1), "joints[0].velocity", "finite"),
    (("family: panda", "family: panda\nwrist_camera: true", 1), "wrist_camera", "unknown field"),
    (("home: [0.0,", "home: [9.0,", 1), "home[0]", "outside the limits"),
    (("jerk: 7500", "jerk: -7500", 1), "joints[0].jerk", "positive"),
    (("jerk: 7500", "jerk: .inf", 1), "joints[0].jerk", "finite"),
])
def test_bad_family_file(tmp_path, edit, field, problem):
    text = (families_dir() / "panda.yaml").read_text()
    old, new, count = edit
    assert old in text
    path = tmp_path / "panda.yaml"
    path.write_text(text.replace(old, new, count))
    with pytest.raises(ConfigError) as info:
        load_family_file(path)
    assert info.value.field == field and problem in info.value.problem and str(path) in str(info.value)


def test_malformed_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("family: [panda\n")
    with pytest.raises(ConfigError, match="malformed YAML: line"):
        load_family_file(path)


def test_bad_joint_vectors():
    arm = load_family("panda")
    with pytest.raises(JointVectorError, match="must have 7 values"):
        flange_position(arm, np.zeros(6))
    q = np.zeros(7)
    q[3] = np.nan
    with pytest.raises(JointVectorError, match="NaN or inf at panda_joint4"):
        flange_position(arm, q)
