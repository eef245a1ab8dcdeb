"""Hardware presets: every shipped preset loads and agrees with its family; bad presets fail naming the field."""

import numpy as np
import pytest
import yaml

from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.backends.trajectory import JointState, JointTrajectory
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.hardware.activation import START_STATES, start_state
from mtrl_robot.hardware.presets import hardware_dir, load_preset, preset_names
from mtrl_robot.hardware.safety import SafetyChecker

PRESETS = preset_names()
SIMULATION = ("sim_panda", "sim_panda_hitting", "sim_ur5e")  # the simulated arm node; every other preset is a real arm


def test_the_presets_exist():
    assert PRESETS == ["abb_yumi", "franka_fr3", "franka_panda", "franka_panda_hitting", "kinova_gen3",
                       "rethink_baxter", "sim_panda", "sim_panda_hitting", "sim_ur5e", "universal_robots_ur5e"]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_agrees_with_its_family(name):
    preset = load_preset(name)
    arm = load_family(preset.family)
    assert preset.dry_run is (name not in SIMULATION)  # only the simulated arm moves without an explicit opt-in
    assert sorted(preset.model_names) == sorted(arm.joint_names) and len(preset.joint_names) == arm.dof
    model = [arm.joint_names.index(m) for m in preset.model_names]
    assert np.all(preset.lower >= arm.lower[model]) and np.all(preset.upper <= arm.upper[model])
    share = 1.0 if name.endswith("_hitting") else 0.5  # real arms: 50 % for first use; hitting needs speed
    assert np.all(preset.velocity <= share * arm.velocity_limits[model] + 1e-7)
    assert np.all(preset.acceleration <= share * np.array([j.acceleration for j in arm.joints])[model] + 1e-7)
    assert preset.action.endswith("/follow_joint_trajectory")
    assert preset.watchdog_timeout >= 2 / preset.joint_states_rate
    limits = preset.safety_limits()
    home = arm.home_q[model]
    assert np.all((home >= limits.inner_lower) & (home <= limits.inner_upper))
    flange = flange_position(arm, arm.home_q)
    assert np.all((flange >= preset.workspace.lower) & (flange <= preset.workspace.upper))


@pytest.mark.parametrize("name", PRESETS)
def test_a_small_move_from_home_passes_the_safety_check_in_hardware_names(name):
    preset = load_preset(name)
    arm = load_family(preset.family)
    times = np.linspace(0.0, 3.0, 31)
    s, ds = 3 * (times / 3.0) ** 2 - 2 * (times / 3.0) ** 3, (6 * times / 3.0 - 6 * (times / 3.0) ** 2) / 3.0
    move = JointTrajectory(arm.joint_names, times, arm.home_q + s[:, None] * 0.1, ds[:, None] * 0.1 * np.ones(arm.dof))
    hardware = preset.to_hardware(move)
    assert hardware.joint_names == preset.joint_names
    measured = JointState(preset.joint_names, hardware.positions[0], np.zeros(arm.dof), 0.0)
    checked = SafetyChecker(preset.safety_limits()).check(hardware, measured)
    back = preset.to_model(JointState(checked.joint_names, checked.positions[-1], np.zeros(arm.dof), 1.0))
    np.testing.assert_allclose(back.positions, move.positions[-1][[arm.joint_names.index(n) for n in back.names]])


def test_jerk_limits_are_the_published_ones_at_the_first_use_fraction():
    """FCI "Limits for Panda" jerk (rad/s³); FR3: 5000 on every joint. No jerk is published for the others."""
    panda_published = np.array([7500, 3750, 5000, 6250, 7500, 10000, 10000])
    np.testing.assert_array_equal(load_preset("franka_panda").jerk, 0.5 * panda_published)
    np.testing.assert_array_equal(load_preset("sim_panda").jerk, 0.5 * panda_published)
    for name in ("franka_panda_hitting", "sim_panda_hitting"):  # the real Panda's published limits, all of them
        hitting, family = load_preset(name), load_family("panda")
        np.testing.assert_array_equal(hitting.jerk, panda_published)
        np.testing.assert_array_equal(hitting.acceleration, [j.acceleration for j in family.joints])
        np.testing.assert_array_equal(hitting.velocity, family.velocity_limits)
    np.testing.assert_array_equal(load_preset("franka_fr3").jerk, 0.5 * np.minimum(panda_published, 5000))
    for name in ("kinova_gen3", "abb_yumi", "rethink_baxter", "universal_robots_ur5e", "sim_ur5e"):
        assert np.all(np.isinf(load_preset(name).jerk))
    fr3 = load_preset("franka_fr3")  # 50 % of the smaller of the FR3's 10 rad/s² and the Panda family's
    np.testing.assert_array_equal(fr3.acceleration, [5.0, 3.75, 5.0, 5.0, 5.0, 5.0, 5.0])
    rates = {name: load_preset(name).control_rate for name in PRESETS}
    assert rates == {"abb_yumi": 250.0, "franka_fr3": 1000.0, "franka_panda": 1000.0, "franka_panda_hitting": 1000.0,
                     "kinova_gen3": 1000.0, "rethink_baxter": 100.0, "sim_panda": 500.0, "sim_panda_hitting": 500.0,
                     "sim_ur5e": 500.0, "universal_robots_ur5e": 500.0}
    assert load_preset("sim_panda").safety_limits().control_period == 0.002


def test_verified_driver_facts():
    fr3, panda = load_preset("franka_fr3"), load_preset("franka_panda")
    assert fr3.controller == "fr3_arm_controller" and fr3.joint_names[0] == "fr3_joint1"
    assert fr3.joint_map["fr3_joint6"] == "panda_joint6" and fr3.lower[5] == 0.5445  # FR3's own joint 6 range
    assert panda.controller == "joint_trajectory_controller" and panda.joint_names[-1] == "panda_joint7"
    assert load_preset("kinova_gen3").joint_names == tuple(f"joint_{i}" for i in range(1, 8))
    yumi = load_preset("abb_yumi")
    assert yumi.joint_map["robr_joint_7"] == "yumi_joint_7_r" and yumi.model_names[2] == "yumi_joint_3_r"
    baxter = load_preset("rethink_baxter")
    assert baxter.trajectory_topic is None and baxter.joint_states_topic == "/robot/joint_states"
    assert baxter.action == "/robot/limb/right/follow_joint_trajectory"
    ur5e, sim_ur5e = load_preset("universal_robots_ur5e"), load_preset("sim_ur5e")
    assert ur5e.controller == sim_ur5e.controller == "scaled_joint_trajectory_controller"
    assert ur5e.action == "/scaled_joint_trajectory_controller/follow_joint_trajectory"
    assert ur5e.joint_names == sim_ur5e.joint_names == ("shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint",
                                                         "wrist_1_joint", "wrist_2_joint", "wrist_3_joint")
    assert ur5e.joint_states_rate == 500.0 and sim_ur5e.joint_states_rate == 250.0
    np.testing.assert_array_equal(sim_ur5e.velocity, ur5e.velocity)
    np.testing.assert_array_equal(sim_ur5e.acceleration, ur5e.acceleration)


def test_to_model_picks_one_arm_out_of_a_larger_joint_state():
    yumi = load_preset("abb_yumi")
    names = tuple(f"robl_joint_{i}" for i in range(1, 8)) + yumi.joint_names[::-1]
    positions = np.arange(14.0)
    state = yumi.to_model(JointState(names, positions, np.array([]), 3.0))
    assert state.names == yumi.model_names and state.stamp == 3.0
    np.testing.assert_allclose(state.positions, positions[7:][::-1])
    np.testing.assert_allclose(state.velocities, 0.0)


def write_variant(tmp_path, change):
    data = yaml.safe_load((hardware_dir() / "franka_fr3.yaml").read_text())
    change(data)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _drop_last_joint(d):
    last = d["joint_names"].pop()
    del d["joint_map"][last], d["limits"][last]


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(family="kuka"), r"family: unknown arm family 'kuka'"),
    (_drop_last_joint, r"joint_names: 6 joints, but the panda family has 7"),
    (lambda d: d["limits"]["fr3_joint6"].update(upper=4.5169),
     r"limits.fr3_joint6.upper: 4.5169 is wider than the panda family's published limit for panda_joint6 \(3.7525\)"),
    (lambda d: d["limits"]["fr3_joint1"].update(velocity=2.62),
     r"limits.fr3_joint1.velocity: 2.62 rad/s exceeds the panda family's published limit"),
    (lambda d: d["limits"]["fr3_joint2"].update(acceleration=9.0), r"limits.fr3_joint2.acceleration: 9.0 rad/s²"),
    (lambda d: d["limits"]["fr3_joint3"].pop("lower"), r"limits.fr3_joint3.lower: required field is missing"),
    (lambda d: d["joint_map"].update(fr3_joint1="joint1"), r"joint_map.fr3_joint1: 'joint1' is not a joint of"),
    (lambda d: d["joint_map"].update(fr3_joint1="panda_joint2"), r"joint_map: model joints \['panda_joint2'\] are "
                                                                 r"mapped more than once"),
    (lambda d: d.pop("dry_run"), r"dry_run: required field is missing"),
    (lambda d: d.update(dry_run="yes"), r"dry_run: expected true or false"),
    (lambda d: d.update(simulation_only=True), r"simulation_only: unknown field"),  # no preset is exempt
    (lambda d: d.update(simulated="no"), r"simulated: expected true or false"),
    (lambda d: d["limits"]["fr3_joint2"].update(acceleration=900.0), r"limits.fr3_joint2.acceleration: 900.0 rad/s² "
                                                                     r"exceeds the panda family's published limit"),
    (lambda d: d["limits"]["fr3_joint2"].pop("jerk"), r"limits.fr3_joint2.jerk: missing: the panda family publishes "
                                                      r"a jerk limit for panda_joint2 \(3750.0 rad/s³\)"),
    (lambda d: d["limits"]["fr3_joint2"].update(jerk=4000.0), r"limits.fr3_joint2.jerk: 4000.0 rad/s³ exceeds the "
                                                              r"panda family's published limit"),
    (lambda d: d.update(speed=1), r"speed: unknown field"),
    (lambda d: d.pop("control_rate"), r"control_rate: required field is missing"),
    (lambda d: d.update(control_rate=0), r"control_rate: must be > 0"),
    (lambda d: d["limits"]["fr3_joint4"].update(jerk=-1.0), r"limits.fr3_joint4.jerk: must be > 0"),
    (lambda d: d["limits"]["fr3_joint4"].update(snap=1.0), r"limits.fr3_joint4.snap: unknown field"),
    (lambda d: d.update(action="fr3_arm_controller/follow_joint_trajectory"), r"action: .* must be an absolute"),
    (lambda d: d.update(watchdog_timeout=0.05), r"watchdog_timeout: 0.05 s is shorter than two joint-state periods"),
    (lambda d: d["workspace"].update(min=[0, 0, 2.0]), r"workspace: workspace z: minimum"),
    (lambda d: d.update(position_margin=2.0), r"limits: .*leaves nothing inside a margin"),
])
def test_bad_presets_name_file_field_and_problem(tmp_path, change, message):
    path = write_variant(tmp_path, change)
    with pytest.raises(ConfigError, match=message) as caught:
        load_preset(path)
    assert str(path) in str(caught.value)


def test_unknown_preset_name():
    with pytest.raises(ConfigError, match=r"unknown hardware preset 'ur5' \(known: abb_yumi, franka_fr3"):
        load_preset("ur5")


@pytest.mark.parametrize("name", PRESETS)
def test_a_node_moving_a_real_arm_never_activates_itself(name):
    """The rule the managed nodes (policy, puck) apply at start-up: up to active on the simulated arm only."""
    preset = load_preset(name)
    assert preset.simulated is (name in SIMULATION)
    assert start_state("active", preset) == ("active" if name in SIMULATION else "inactive")
    assert [start_state(s, preset) for s in START_STATES[1:]] == ["inactive", "unconfigured"]
    with pytest.raises(ValueError, match="start state 'running' is not one of active, inactive, unconfigured"):
        start_state("running", preset)


def test_a_preset_that_does_not_say_simulated_is_a_real_arms(tmp_path):
    assert "simulated" not in yaml.safe_load((hardware_dir() / "franka_fr3.yaml").read_text())
    sim = write_variant(tmp_path, lambda d: d.update(yaml.safe_load((hardware_dir() / "sim_panda.yaml").read_text())))
    assert load_preset(sim).simulated  # a copy of the simulated arm's preset stays simulated
    real = load_preset(write_variant(tmp_path, lambda d: d.update(dry_run=False)))  # no `simulated:` line
    assert not real.simulated and start_state("active", real) == "inactive"
