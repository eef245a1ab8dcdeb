"""The HIL checks the ``hil_suite`` node runs (pytest, with :class:`~mtrl_robot.ros.hil.plugin.HilPlugin`) against
the arm of a hardware preset, reached only through ROS by the safety-checked hardware client.

Checks without motion: joint states at the preset's rate; trajectories beyond the velocity or position limits
refused with nothing reaching the controller. Checks with motion (skipped unless motion is allowed): a 0.1 rad move
of the last two joints toward the middle of their ranges, slowly, tracking within bounds; a stop mid-motion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from mtrl_robot.backends.trajectory import GOAL_TOLERANCE, JointTrajectory
from mtrl_robot.hardware.safety import SafetyError
from mtrl_robot.ros.hil.plugin import Figure, HilPlugin, Rig

RATE_FRACTION = 0.8  # of the preset's joint_states_rate, measured from message stamps
RATE_WINDOW = 2.0  # s of stamps the rate is measured over
TRACKING_BOUND = 0.05  # rad, peak tracking error the controller may report during the small motion
WRIST = (-2, -1)  # the joints the motion checks move (the last two, preset order): they move the flange least
WAIT_MARGIN = 10.0  # s beyond a window for its messages to arrive on a loaded machine


@pytest.fixture(scope="session")
def hil(pytestconfig: pytest.Config) -> HilPlugin:
    return next(p for p in pytestconfig.pluginmanager.get_plugins() if isinstance(p, HilPlugin))


@pytest.fixture(scope="session")
def rig(hil: HilPlugin) -> Iterator[Rig]:
    with hil.open_rig() as rig:
        yield rig


@pytest.fixture
def motion(hil: HilPlugin, rig: Rig) -> Rig:
    """The rig, for a check that moves the arm: skipped unless motion is allowed."""
    if not rig.motion_allowed:
        pytest.skip(hil.motion_refusal)
    return rig


@pytest.fixture
def figure(hil: HilPlugin, request: pytest.FixtureRequest) -> Callable[..., None]:
    """``figure(name, measured, limit, unit, passed)`` records a figure of this check."""
    def record(name: str, measured: float, limit: str, unit: str, passed: bool) -> None:
        hil.record(request.node, Figure(name, float(measured), limit, unit, passed))
    return record


def toward_center(rig: Rig, q: np.ndarray, amplitude: float, joints: tuple[int, ...] = WRIST) -> np.ndarray:
    """A displacement of ``amplitude`` rad on ``joints``, each toward the middle of its range."""
    limits = rig.backend.limits
    delta = np.zeros(len(q))
    for j in joints:
        delta[j] = amplitude if q[j] < (limits.lower[j] + limits.upper[j]) / 2 else -amplitude
    return delta


def smooth(names: tuple[str, ...], start: np.ndarray, delta: np.ndarray, duration: float,
           n: int = 21) -> JointTrajectory:
    """A quintic rest-to-rest move from ``start`` by ``delta`` in ``duration`` s, with velocities."""
    times = np.linspace(0.0, duration, n)
    tau = times / duration
    s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
    ds = (30 * tau**2 - 60 * tau**3 + 30 * tau**4) / duration
    return JointTrajectory(tuple(names), times, start + s[:, None] * delta, ds[:, None] * delta)


def test_joint_states_rate(rig: Rig, figure):
    """Joint states with all the preset's joints arrive at ≥ 80 % of its joint_states_rate (message stamps)."""
    first = len(rig.states.stamps)
    arrived = rig.states.wait_until(lambda s: len(s) > first and s[-1] - s[first] >= RATE_WINDOW,
                                    RATE_WINDOW + WAIT_MARGIN)
    stamps = rig.states.stamps[first:]
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    rate = (len(stamps) - 1) / span if span > 0 else 0.0
    wanted = RATE_FRACTION * rig.preset.joint_states_rate
    figure("joint_states rate", rate, f"≥ {wanted:g}", "Hz", rate >= wanted)
    assert arrived, f"joint states: {len(stamps)} messages in {RATE_WINDOW + WAIT_MARGIN} s"
    assert rate >= wanted, (f"joint states at {rate:.1f} Hz, below {RATE_FRACTION:.0%} of the preset's "
                            f"{rig.preset.joint_states_rate:g} Hz on {rig.preset.joint_states_topic}")


@pytest.mark.parametrize("limit", ["velocity", "position"])
def test_limit_violation_is_refused_and_nothing_sent(rig: Rig, figure, limit: str):
    """A trajectory beyond a limit raises SafetyError naming the joint; no goal reaches the controller."""
    backend, (w, _) = rig.backend, WRIST
    q = backend.read_state().positions
    if limit == "velocity":  # 1.5× the limit on one joint, 0.1 s
        demanded = 1.5 * backend.limits.velocity[w]
        step = toward_center(rig, q, demanded * 0.1, (w,))
        trajectory = JointTrajectory(backend.joint_names, np.array([0.0, 0.1]), np.vstack([q, q + step]))
        demand, bound = demanded, backend.limits.velocity[w]
    else:  # 0.1 rad beyond the upper limit, slowly
        beyond = q.copy()
        beyond[w] = backend.limits.upper[w] + 0.1
        trajectory = JointTrajectory(backend.joint_names, np.array([0.0, 20.0]), np.vstack([q, beyond]))
        demand, bound = beyond[w], backend.limits.upper[w]
    before = rig.tap.goals()
    with pytest.raises(SafetyError, match=rig.preset.joint_names[w]):
        backend.send_trajectory(trajectory)
    unit = "rad/s" if limit == "velocity" else "rad"
    figure(f"{limit} demand refused ({rig.preset.joint_names[w]})", demand, f"> {bound:.4g}", unit, demand > bound)
    sent = rig.tap.goals() - before
    figure("goals reaching the controller", sent, "= 0", "goals", sent == 0)
    assert sent == 0, "a refused trajectory reached the controller"
    assert not backend.is_executing()


def test_small_motion_tracks(motion: Rig, figure):
    """0.1 rad on the last two joints in 2 s and back: final error and the controller's peak tracking error."""
    backend = motion.backend
    q0 = backend.read_state().positions
    delta = toward_center(motion, q0, 0.1)
    result = backend.execute(smooth(backend.joint_names, q0, delta, 2.0))
    final = float(np.max(np.abs(result.final_error)))
    tracking = float(np.max(backend.tracking_error))
    figure("final error", final, f"≤ {GOAL_TOLERANCE:g}", "rad", result.success and final <= GOAL_TOLERANCE)
    figure("peak tracking error", tracking, f"< {TRACKING_BOUND:g}", "rad", tracking < TRACKING_BOUND)
    assert result.success, result.message
    assert final <= GOAL_TOLERANCE and tracking < TRACKING_BOUND
    back = backend.execute(smooth(backend.joint_names, backend.read_state().positions, -delta, 2.0))
    assert back.success, back.message


def test_stop_mid_motion(motion: Rig, figure):
    """stop() a quarter of the way into a 4 s move: the arm stops short of the target."""
    backend = motion.backend
    q0 = backend.read_state().positions
    delta = toward_center(motion, q0, 0.2)
    backend.send_trajectory(smooth(backend.joint_names, q0, delta, 4.0))
    start = motion.states.stamps[-1]
    motion.states.wait_until(lambda s: s[-1] - start >= 1.0, 1.0 + 10.0)
    backend.stop()
    motion.states.wait_until(lambda s: s[-1] - start >= 2.0, 1.0 + 10.0)  # let the hold settle
    short = float(np.max(np.abs(q0 + delta - backend.read_state().positions)))
    figure("distance short of the target", short, "> 0.05", "rad", short > 0.05)
    assert short > 0.05, "the arm went on to the target after stop()"
    back = backend.execute(smooth(backend.joint_names, backend.read_state().positions,
                                  q0 - backend.read_state().positions, 3.0))
    assert back.success, back.message
