"""The safety layer: every refusal names the joint (or flange), the waypoint, the limit and by how much; what it
accepts, the arm executes within the limits."""

from dataclasses import replace

import numpy as np
import pytest
from executed_motion import run_in_mujoco
from limit_repros import at_rest_between, cubic_overshoot, position_only, slowed_to_fit, three_cubics

from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.backends.controller import ErrorCode, Goal, GoalRejected, TrajectoryController
from mtrl_robot.backends.limits import MotionLimits, check_motion, motion_peaks
from mtrl_robot.backends.mujoco_backend import MujocoBackend
from mtrl_robot.backends.trajectory import JointState, JointTrajectory, TrajectoryError
from mtrl_robot.hardware.presets import load_preset
from mtrl_robot.hardware.safety import SafetyChecker, SafetyError, SafetyLimits, Watchdog, Workspace, path_samples

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


def every_sample_refusal(checker: SafetyChecker, traj: JointTrajectory) -> str | None:
    """The refusal of the path check that checks every sample of its grid (forward kinematics everywhere), or None."""
    times, limits, box = traj.times, checker.limits, checker.limits.workspace
    inner, segments = path_samples(times, checker.workspace_step)
    sampled = traj.sample(inner)[0] if inner.size else np.zeros((0, len(NAMES)))
    outside = (sampled < limits.inner_lower) | (sampled > limits.inner_upper)
    if outside.any():
        k, j = np.argwhere(outside)[0]
        return f"{NAMES[j]}: position {sampled[k, j]:.4f} rad between waypoint {segments[k]} and waypoint " \
               f"{segments[k] + 1}"
    flange = flange_position(ARM, np.vstack([traj.positions, sampled]))
    outside = (flange < box.lower) | (flange > box.upper)
    if not outside.any():
        return None
    row, axis = np.argwhere(outside)[0]
    n = len(times)
    k = segments[row - n] if row >= n else None
    where = f"at waypoint {row}" if k is None else f"between waypoint {k} and waypoint {k + 1}"
    return f"flange: {'xyz'[axis]} = {flange[row, axis]:.4f} m {where}"


def test_the_path_check_refuses_what_checking_every_sample_refuses():
    """Sparing samples and forward kinematics changes no outcome: random moves with and without velocities, some
    overshooting a limit between waypoints, in boxes fitted around their waypoints so that the flange leaves some
    between them."""
    rng = np.random.default_rng(11)
    outcomes = set()
    for _ in range(300):
        n = int(rng.integers(2, 9))
        times = np.cumsum(rng.uniform(0.05, 0.6, n)) - 0.05
        positions = HOME + np.cumsum(rng.uniform(-0.15, 0.15, (n, 7)), axis=0)
        if rng.random() < 0.3:  # one joint's highest waypoint just inside its limit
            j = int(rng.integers(7))
            positions[:, j] += LIMITS.inner_upper[j] - 0.01 * rng.random() - positions[:, j].max()
        velocities = rng.uniform(-0.8, 0.8, (n, 7)) if rng.random() < 0.7 else None
        traj = JointTrajectory(NAMES, times, positions, velocities)
        flange = flange_position(ARM, positions)
        lower = flange.min(axis=0) - rng.uniform(-0.002, 0.03, 3)
        box = Workspace(lower, np.maximum(flange.max(axis=0) + rng.uniform(-0.002, 0.03, 3), lower + 1e-3))
        checker = SafetyChecker(replace(LIMITS, workspace=box))
        expected = every_sample_refusal(checker, traj)
        try:
            checker._check_path(traj)
            got = None
        except SafetyError as exc:
            got = str(exc)
        assert (got is None) == (expected is None) and (got is None or got.startswith(expected)), (got, expected)
        outcomes.add("accepted" if got is None else got.split(" ")[0] + (" between" if "between" in got else ""))
    assert {"accepted", "flange: between", "flange:"} <= outcomes
    assert any(o.startswith("panda") and o.endswith("between") for o in outcomes), outcomes


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


# ------------------------------------------------------------- issue 13: the motion between waypoints, executed

SIM = load_preset("sim_panda")
SIM_CHECKER = SafetyChecker(SIM.safety_limits(ARM))
V, A = SIM.velocity[0], SIM.acceleration[0]  # joint 1's limits, the joint the repros move
EXECUTED_MARGIN = {"velocity": 1.05, "acceleration": 1.25}  # tracking of the position actuators: see test_safety_fuzz


def executed(trajectory: JointTrajectory) -> dict[str, np.ndarray]:
    """Peaks the MuJoCo arm executes for ``trajectory`` from home, seen at the preset's joint-state rate."""
    backend = MujocoBackend(ARM)
    return run_in_mujoco(backend, trajectory, 1.0 / SIM.joint_states_rate)


@pytest.mark.parametrize("repro, message", [
    (cubic_overshoot(NAMES, HOME, 0, V),
     r"panda_joint1: velocity 1.6296 rad/s in the cubic segment between waypoint 0 and waypoint 1 exceeds the velocity "
     r"limit 1.0875 rad/s \(1.50× the limit\)"),
    (three_cubics(NAMES, HOME, 0, V, A),
     r"panda_joint1: velocity 2.1734 rad/s in the cubic segment between waypoint 1 and waypoint 2 exceeds the "
     r"velocity limit 1.0875 rad/s \(2.00× the limit\)"),
    (position_only(NAMES, HOME, 0, V),
     r"panda_joint1: acceleration 516.56 rad/s² at waypoint 0 \(velocity steps of 1.033 rad/s within one control "
     r"period of 2 ms\) exceeds the acceleration limit 7.5 rad/s² \(68.87× the limit\); position-only waypoints"),
], ids=["cubic overshoot", "three cubics", "position only"])
def test_issue_repros_are_refused_naming_joint_segment_peak_and_limit(repro, message):
    """Each was accepted and executed over the limits (issue 13, items 1 and 2); the arm's executed peaks for
    them are far over the preset's limits, so refusing is the only right answer."""
    run = executed(repro)
    print(f"\nexecuted if sent: peak velocity {run['velocity'][0]:.3f} rad/s, acceleration "
          f"{run['acceleration'][0]:.2f} rad/s² (limits {V}, {A})")
    assert np.max(run["velocity"] / SIM.velocity) > 1.1 or np.max(run["acceleration"] / SIM.acceleration) > 2
    with pytest.raises(SafetyError, match=message):
        SIM_CHECKER.check(repro, at(HOME))


@pytest.mark.parametrize("path", [cubic_overshoot(NAMES, HOME, 0, V), three_cubics(NAMES, HOME, 0, V, A),
                                  at_rest_between(position_only(NAMES, HOME, 0, V))],
                         ids=["cubic overshoot", "three cubics", "position only, rest at the waypoints"])
def test_the_same_paths_timed_to_pass_execute_within_the_limits(path):
    """Slowed just enough to pass, the same paths are accepted and the arm stays within the preset's limits."""
    timed = slowed_to_fit(path, SIM_CHECKER.motion_limits)
    SIM_CHECKER.check(timed, at(HOME))
    run = executed(timed)
    print(f"\naccepted over {timed.duration:.3f} s: executed peak velocity {run['velocity'][0]:.4f} rad/s, "
          f"acceleration {run['acceleration'][0]:.3f} rad/s² (limits {V}, {A})")
    for quantity in ("velocity", "acceleration"):
        ratio = run[quantity] / getattr(SIM, quantity)
        assert np.max(ratio) <= EXECUTED_MARGIN[quantity], (quantity, ratio)
    assert np.max(run["velocity"] / SIM.velocity) > 0.9  # close to the limit: the bound is not loose


def test_the_simulated_controller_refuses_with_the_safety_layers_check():
    """Issue 13 item 4: the arm node's controller executed a cubic peaking at 1.5× the published velocity. Its
    check is now check_motion, over the family's published limits and its control step."""
    backend = MujocoBackend(ARM)
    controller = TrajectoryController(backend, backend.control_dt)
    overshoot = cubic_overshoot(NAMES, HOME, 0, ARM.velocity_limits[0])
    with pytest.raises(GoalRejected) as refused:
        controller.start(Goal(overshoot))
    assert refused.value.code == ErrorCode.INVALID_GOAL
    published = MotionLimits(ARM.velocity_limits, np.array([j.acceleration for j in ARM.joints]), np.full(7, np.inf),
                             backend.control_dt)
    with pytest.raises(TrajectoryError) as same:
        check_motion(overshoot, published)
    assert str(refused.value) == str(same.value)
    assert str(same.value).startswith("panda_joint1: velocity 3.2592 rad/s in the cubic segment between waypoint 0 "
                                      "and waypoint 1 exceeds the velocity limit 2.175 rad/s (1.50× the limit)")
    assert controller.active is None and not backend.is_executing()
    controller.start(Goal(slowed_to_fit(overshoot, published)))  # the same path slowed down is followed
    assert controller.active is not None


def test_peaks_bound_dense_sampling_of_a_random_cubic():
    """The closed-form extremes of a cubic segment against the interpolation itself, sampled densely."""
    rng = np.random.default_rng(7)
    for _ in range(50):
        times = np.cumsum(rng.uniform(0.1, 1.0, 4)) - 0.1
        times[0] = 0.0
        traj = JointTrajectory(NAMES, times, rng.uniform(-1, 1, (4, 7)), rng.uniform(-2, 2, (4, 7)))
        peaks = motion_peaks(traj, 1e-3)
        dense = traj.sample(np.linspace(0, times[-1] - 1e-9, 20001))[1]
        bound, sampled = peaks.segment["velocity"].max(axis=0), np.abs(dense).max(axis=0)
        assert np.all(bound >= sampled * (1 - 1e-9))
        np.testing.assert_allclose(bound, sampled, rtol=1e-3)
