"""The safety layer: every refusal names the joint (or flange), the waypoint, the limit and by how much."""

from dataclasses import replace

import numpy as np
import pytest

from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.backends.trajectory import JointState, JointTrajectory
from mtrl_robot.hardware.safety import SafetyChecker, SafetyError, SafetyLimits, Watchdog, Workspace

ARM = load_family("panda")
NAMES = ARM.joint_names
HOME = ARM.home_q
BOX = Workspace(np.array([-0.2, -0.6, 0.15]), np.array([0.8, 0.6, 1.0]))
LIMITS = SafetyLimits.from_arm(ARM, scale=0.5, position_margin=0.05, workspace=BOX)


def at(q: np.ndarray, names=NAMES) -> JointState:
    return JointState(tuple(names), np.asarray(q, float), np.zeros(len(q)), 12.5)


def smooth(delta: np.ndarray, duration: float = 2.0, n: int = 21, start: np.ndarray = HOME,
           with_velocities: bool = True) -> JointTrajectory:
    """A quintic rest-to-rest move from ``start`` by ``delta``."""
    times = np.linspace(0.0, duration, n)
    tau = times / duration
    s, ds = 10 * tau**3 - 15 * tau**4 + 6 * tau**5, (30 * tau**2 - 60 * tau**3 + 30 * tau**4) / duration
    velocities = ds[:, None] * delta if with_velocities else None
    return JointTrajectory(NAMES, times, start + s[:, None] * delta, velocities)


MOVE = np.array([0.3, 0.2, -0.2, 0.1, 0.0, 0.1, 0.0])


def check(traj: JointTrajectory, measured: JointState | None = None, limits: SafetyLimits = LIMITS):
    return SafetyChecker(limits).check(traj, measured or at(traj.positions[0]))


@pytest.mark.parametrize("with_velocities", [True, False])
def test_valid_trajectory_passes_and_is_reordered_by_name(with_velocities):
    # position-only: dense waypoints of a slow move, so the velocity steps at the waypoints are small
    traj = smooth(MOVE) if with_velocities else smooth(MOVE / 20, duration=4.0, n=401, with_velocities=False)
    order = [3, 0, 6, 1, 5, 2, 4]
    shuffled = JointTrajectory(tuple(NAMES[i] for i in order), traj.times, traj.positions[:, order],
                               None if traj.velocities is None else traj.velocities[:, order])
    measured = at(HOME[::-1], NAMES[::-1])  # a joint state in yet another order
    checked = check(shuffled, measured)
    assert checked.joint_names == NAMES
    np.testing.assert_allclose(checked.positions, traj.positions)
    if with_velocities:
        np.testing.assert_allclose(checked.velocities, traj.velocities)


def modified(positions=None, velocities=None, times=None, names=NAMES) -> JointTrajectory:
    base = smooth(MOVE)
    return JointTrajectory(tuple(names), base.times if times is None else np.asarray(times),
                           base.positions if positions is None else positions,
                           base.velocities if velocities is None else velocities)


def _with(array: np.ndarray, k: int, j: int, value: float) -> np.ndarray:
    array = array.copy()
    array[k, j] = value
    return array


BASE = smooth(MOVE)


@pytest.mark.parametrize("traj, message", [
    (modified(positions=_with(BASE.positions, 3, 1, np.nan)), r"panda_joint2: position at point 3 is nan"),
    (modified(velocities=_with(BASE.velocities, 4, 0, np.inf)), r"panda_joint1: velocity at point 4 is inf"),
    (modified(names=NAMES[:-1] + ("tool_joint",)), r"unknown joints \['tool_joint'\]"),
    (JointTrajectory(NAMES[:-1], BASE.times, BASE.positions[:, :-1]), r"missing joints \['panda_joint7'\]"),
    # joint 4's upper limit is -0.0698, less the 0.05 margin: -0.1198
    (modified(positions=_with(BASE.positions, 20, 3, -0.09), velocities=_with(BASE.velocities, 20, 3, 0.0)),
     r"panda_joint4: position -0.0900 rad at waypoint 20 is above the position limit -0.1198 rad "
     r"\(limit -0.0698 less margin 0.0500\) by 0.0298 rad"),
    (modified(times=BASE.times / 4, velocities=BASE.velocities * 4),
     r"panda_joint1: velocity 1.125 rad/s in the cubic segment between waypoint 9 and waypoint 10 exceeds the "
     r"velocity limit 1.0875 rad/s \(1.03× the limit\)"),
    (modified(velocities=_with(BASE.velocities, 7, 5, -1.5)),
     r"panda_joint6: velocity 1.5 rad/s in the cubic segment between waypoint [67] and waypoint [78] exceeds the "
     r"velocity limit 1.305 rad/s \(1.15× the limit\)"),
])
def test_refusals_name_joint_waypoint_limit_and_amount(traj, message):
    with pytest.raises(SafetyError, match=message):
        check(traj, at(HOME))


def test_refusal_is_a_value_error():
    assert issubclass(SafetyError, ValueError)


def test_acceleration_limit():
    slow = replace(LIMITS, acceleration=np.full(7, 0.2))
    check(BASE, limits=replace(LIMITS, acceleration=np.full(7, 3.0)))  # the same move is fine at 3 rad/s²
    with pytest.raises(SafetyError, match=r"panda_joint1: acceleration \d+\.\d+ rad/s² in the cubic segment "
                                          r"between waypoint \d+ and waypoint \d+ exceeds the acceleration limit "
                                          r"0.2 rad/s² \(\d+\.\d+× the limit\)"):
        check(BASE, limits=slow)


def test_jerk_limit_within_segments_and_at_acceleration_steps():
    """A cubic's jerk is constant per segment; where two cubics meet, the acceleration step counts as a jerk of
    step / control period."""
    check(BASE, limits=replace(LIMITS, jerk=np.full(7, 50.0)))
    with pytest.raises(SafetyError, match=r"panda_joint1: jerk \d+\.?\d* rad/s³ (in the cubic segment between "
                                          r"waypoint \d+ and waypoint \d+|at waypoint \d+ \(acceleration steps of "
                                          r"\d+\.\d+ rad/s² within one control period of 1 ms\)) exceeds the jerk "
                                          r"limit 2 rad/s³"):
        check(BASE, limits=replace(LIMITS, jerk=np.full(7, 2.0)))


def test_position_only_trajectory_steps_the_velocity_within_a_control_period():
    """Linear segments: at waypoint 1 the velocity goes from +1 to -0.0256 rad/s within one 1 ms control period."""
    jump = JointTrajectory(NAMES, np.array([0.0, 0.05, 2.0]), np.vstack([HOME, HOME + 0.05 * np.eye(7)[0], HOME]))
    with pytest.raises(SafetyError, match=r"panda_joint1: acceleration 1025.6 rad/s² at waypoint 1 \(velocity steps "
                                          r"of 1.026 rad/s within one control period of 1 ms\) exceeds the "
                                          r"acceleration limit 7.5 rad/s² \(136.75× the limit\); position-only "
                                          r"waypoints make the "
                                          r"controller's linear segments change velocity at once: give velocities"):
        check(jump)


def test_first_waypoint_far_from_measured_state():
    measured = HOME.copy()
    measured[2] += 0.12
    with pytest.raises(SafetyError, match=r"panda_joint3: waypoint 0 at 0.0000 rad is 0.1200 rad from the measured "
                                          r"0.1200 rad: above the max start deviation 0.0500 rad by 0.0700 rad"):
        check(smooth(MOVE), at(measured))


def test_approach_from_measured_state_to_a_late_first_waypoint_is_checked():
    start = HOME + np.array([0.0, 0.0, 0.0, 0.0, 0.04, 0.0, 0.0])
    late = JointTrajectory(NAMES, np.array([0.01, 2.0]), np.vstack([start, start]), np.zeros((2, 7)))
    with pytest.raises(SafetyError, match=r"panda_joint5: velocity 6 rad/s in the cubic segment between the measured "
                                          r"start and waypoint 0 exceeds the velocity limit 1.305 rad/s "
                                          r"\(4.60× the limit\)"):
        check(late, at(HOME))
    check(replace(late, times=np.array([0.5, 2.0])), at(HOME))  # the same approach over 0.5 s is fine


def test_measured_state_must_have_every_joint():
    with pytest.raises(SafetyError, match=r"lacks joints \['panda_joint7'\]"):
        check(smooth(MOVE), at(HOME[:-1], NAMES[:-1]))


def test_overshoot_between_waypoints_is_caught():
    start = HOME.copy()
    start[3] = -0.2
    p = np.vstack([start, start])
    v = np.zeros((2, 7))
    v[:, 3] = [0.8, -0.8]  # a cubic that rises 0.2 rad between two equal waypoints
    traj = JointTrajectory(NAMES, np.array([0.0, 1.0]), p, v)
    with pytest.raises(SafetyError, match=r"panda_joint4: position -0.\d+ rad between waypoint 0 and waypoint 1 "
                                          r"\(t = 0.\d+ s\) is above the position limit -0.1198 rad"):
        check(traj, at(start))


def test_flange_outside_workspace_at_a_waypoint():
    """The move lowers the flange from 0.590 to 0.574 m: a floor at 0.58 m is crossed at some waypoint."""
    assert flange_position(ARM, BASE.positions[0])[2] > 0.58 > flange_position(ARM, BASE.positions[-1])[2]
    floor = replace(LIMITS, workspace=Workspace(np.array([-0.2, -0.6, 0.58]), BOX.upper))
    with pytest.raises(SafetyError, match=r"flange: z = 0.57\d+ m at waypoint 1\d is below the workspace minimum "
                                          r"0.5800 m by 0.00\d+ m"):
        check(BASE, limits=floor)


def test_flange_outside_workspace_between_waypoints():
    """Swinging joint 1 from -0.6 to 0.6 rad: the ends are inside x ≤ 0.28 m, the middle (x ≈ 0.31 m) is not."""
    start, end = HOME.copy(), HOME.copy()
    start[0], end[0] = -0.6, 0.6
    swing = JointTrajectory(NAMES, np.array([0.0, 2.0]), np.vstack([start, end]))
    assert flange_position(ARM, start)[0] < 0.28 < flange_position(ARM, HOME)[0]
    narrow = replace(LIMITS, workspace=Workspace(BOX.lower, np.array([0.28, 0.6, 1.0])))
    with pytest.raises(SafetyError, match=r"flange: x = 0.\d+ m between waypoint 0 and waypoint 1 \(t = \d.\d+ s\) "
                                          r"is above the workspace maximum 0.2800 m by 0.0\d+ m"):
        check(swing, limits=narrow)


def test_hardware_names_map_to_the_model_for_kinematics():
    """Limits over hardware names in another order give the same flange check as the model's own names."""
    hardware = tuple(f"hw_{i}" for i in range(7))[::-1]
    model = NAMES[::-1]
    mapped = SafetyLimits(hardware, LIMITS.lower[::-1], LIMITS.upper[::-1], LIMITS.velocity[::-1],
                          LIMITS.acceleration[::-1], 0.05, 0.05, Workspace(np.array([-0.2, -0.6, 0.58]), BOX.upper),
                          ARM, model)
    traj = JointTrajectory(tuple(f"hw_{i}" for i in range(7)), BASE.times, BASE.positions, BASE.velocities)
    with pytest.raises(SafetyError, match=r"flange: z = 0.57\d+ m at waypoint 1\d is below the workspace") as hw:
        check(traj, at(HOME, traj.joint_names), limits=mapped)
    with pytest.raises(SafetyError) as own:
        check(BASE, limits=replace(LIMITS, workspace=mapped.workspace))
    assert str(hw.value) == str(own.value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(workspace=Workspace(BOX.lower, BOX.upper), arm=None), "needs the arm model"),
    (dict(model_names=NAMES[:-1] + ("elbow",)), "do not match the arm"),
    (dict(position_margin=2.0), "leaves nothing inside a margin"),
    (dict(velocity=np.zeros(7)), "panda_joint1: velocity limit must be positive"),
])
def test_limits_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        replace(LIMITS, **kwargs)


def test_workspace_validation():
    with pytest.raises(ValueError, match="workspace y: minimum"):
        Workspace(np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.5, 1.0]))


def test_describe_says_what_would_be_sent():
    text = SafetyChecker(LIMITS).describe(BASE)
    assert text.startswith("21 waypoints over 2.000 s (positions and velocities)")
    assert "panda_joint1" in text and "% of limit" in text and "flange" in text


def test_watchdog_with_an_injected_clock():
    now = [100.0]
    dog = Watchdog(0.1, clock=lambda: now[0])
    assert dog.stale()  # nothing received yet
    dog.feed(5.00)
    assert not dog.stale()
    now[0] += 0.09
    assert not dog.stale()
    now[0] += 0.02
    assert dog.stale() and dog.age() == pytest.approx(0.11)
    dog.feed(5.00)  # the same stamp again: a frozen driver does not count as alive
    assert dog.stale()
    dog.feed(5.01)
    assert not dog.stale()
    with pytest.raises(ValueError, match="positive"):
        Watchdog(0.0)
