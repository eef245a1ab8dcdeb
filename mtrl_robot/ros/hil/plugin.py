"""The pytest plugin of the installed HIL checks: what arm to test, a ready client of it, and each check's figures.

A check records what it measured with :meth:`HilPlugin.record` (the ``figure`` fixture of
:mod:`~mtrl_robot.ros.hil.checks`); figures go into the JUnit XML as test properties and, with each check's outcome,
into a Markdown report (:meth:`HilPlugin.markdown`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from action_msgs.msg import GoalStatusArray
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState as JointStateMsg

from mtrl_robot.hardware.presets import HardwarePreset
from mtrl_robot.ros.conversions import seconds
from mtrl_robot.ros.hardware_backend import HardwareBackend, HardwareError


@dataclass(frozen=True)
class Figure:
    """One measured figure of a check against its limit."""

    name: str
    measured: float
    limit: str  # e.g. "≥ 200.0", "≤ 0.01"
    unit: str
    passed: bool


@dataclass
class CheckResult:
    """A check's outcome (passed, failed or skipped), the first line of its failure or skip reason, its figures."""

    name: str
    outcome: str
    reason: str = ""
    figures: list[Figure] = field(default_factory=list)


class JointStates:
    """Every joint-state message with all the arm's joints, as (stamp, names) pairs, to wait on."""

    def __init__(self, names: tuple[str, ...]):
        self._names = set(names)
        self._condition = threading.Condition()
        self.stamps: list[float] = []

    def __call__(self, msg: JointStateMsg) -> None:
        if self._names <= set(msg.name):
            with self._condition:
                self.stamps.append(seconds(msg.header.stamp))
                self._condition.notify_all()

    def wait_until(self, predicate: Callable[[list[float]], bool], timeout: float) -> bool:
        with self._condition:
            return self._condition.wait_for(lambda: predicate(self.stamps), timeout)


class Tap:
    """Goal ids the controller's action server reports: whether anything reached the controller."""

    def __init__(self, backend: HardwareBackend):
        self._lock = threading.Lock()
        self._goals: set[bytes] = set()
        backend.node.create_subscription(GoalStatusArray, f"{backend.preset.action}/_action/status",
                                         self._on_status, 10)

    def _on_status(self, msg: GoalStatusArray) -> None:
        with self._lock:
            self._goals.update(bytes(s.goal_info.goal_id.uuid) for s in msg.status_list)

    def goals(self) -> int:
        with self._lock:
            return len(self._goals)


@dataclass
class Rig:
    """The arm under test: its preset, a ready client, its joint states and the controller's goals."""

    preset: HardwarePreset
    backend: HardwareBackend
    states: JointStates
    tap: Tap
    motion_allowed: bool


class HilPlugin:
    """The arm under test and whether it may move; collects every check's outcome and figures."""

    def __init__(self, preset: HardwarePreset, motion_allowed: bool, motion_refusal: str,
                 startup_timeout: float = 60.0):
        self.preset = preset
        self.motion_allowed = motion_allowed
        self.motion_refusal = motion_refusal  # why motion checks are skipped when not allowed
        self.startup_timeout = startup_timeout
        self.results: dict[str, CheckResult] = {}

    @contextmanager
    def open_rig(self) -> Iterator[Rig]:
        """A ready client of the preset's arm (dry run unless motion is allowed), closed on exit."""
        backend = HardwareBackend(self.preset, dry_run=not self.motion_allowed, node_name="hil_suite_client")
        try:
            try:
                backend.wait_ready(self.startup_timeout)
            except HardwareError as exc:
                pytest.fail(f"the arm of preset '{self.preset.name}' is not there: {exc}", pytrace=False)
            states = JointStates(self.preset.joint_names)
            backend.node.create_subscription(JointStateMsg, self.preset.joint_states_topic, states,
                                             qos_profile_sensor_data)
            yield Rig(self.preset, backend, states, Tap(backend), self.motion_allowed)
        finally:
            backend.close()

    def record(self, item: pytest.Item, figure: Figure) -> None:
        """A figure of check ``item``: in its JUnit properties and in the report."""
        verdict = "pass" if figure.passed else "FAIL"
        item.user_properties.append((figure.name, f"{figure.measured:.4g} {figure.unit} (limit {figure.limit} "
                                                  f"{figure.unit}): {verdict}"))
        self._result(item.nodeid).figures.append(figure)

    def _result(self, nodeid: str) -> CheckResult:
        name = nodeid.split("::", 1)[-1]
        return self.results.setdefault(name, CheckResult(name, "passed"))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.passed and report.when != "call":
            return
        result = self._result(report.nodeid)
        if report.skipped:
            result.outcome = "skipped"
            result.reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
        elif report.failed:
            result.outcome = "failed"
            text = str(report.longrepr.reprcrash.message if hasattr(report.longrepr, "reprcrash")
                       and report.longrepr.reprcrash else report.longrepr)
            result.reason = text.splitlines()[0] if text else ""

    def markdown(self) -> str:
        """The report: every check, its figures (measured, limit, pass/fail) and its outcome."""
        lines = [f"# HIL suite: preset `{self.preset.name}` ({self.preset.driver})", "",
                 f"Motion checks: {'run' if self.motion_allowed else 'skipped (' + self.motion_refusal + ')'}.", "",
                 "| check | figure | measured | limit | result |", "|---|---|---|---|---|"]
        for result in self.results.values():
            outcome = result.outcome + (f": {result.reason}" if result.reason else "")
            outcome = outcome.replace("|", "\\|")
            if not result.figures:
                lines.append(f"| {result.name} | — | — | — | {outcome} |")
            for f in result.figures:
                verdict = "pass" if f.passed else "FAIL"
                lines.append(f"| {result.name} | {f.name} | {f.measured:.4g} {f.unit} | {f.limit} {f.unit} | "
                             f"{verdict} ({outcome}) |")
        counts = {o: sum(r.outcome == o for r in self.results.values()) for o in ("passed", "failed", "skipped")}
        lines += ["", ", ".join(f"{n} {o}" for o, n in counts.items())]
        return "\n".join(lines) + "\n"
