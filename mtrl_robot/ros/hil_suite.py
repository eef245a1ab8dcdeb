"""The HIL checks (:mod:`mtrl_robot.ros.hil.checks`) as a launchable process: pytest against the arm a hardware preset
names, a JUnit XML and a Markdown report, and the suite's exit status (0 when every check passed or was skipped).

With ``sim:=true`` the arm is the simulated arm node the launch file starts; motion checks run. With
``sim:=false`` the arm is the preset's real driver: the client stays in dry-run mode (nothing reaches the
controller) unless ``allow_motion:=true`` is given AND the person at the arm types ``yes`` at the terminal
(``/dev/tty``) when asked; otherwise the motion checks are skipped, and reported as skipped with the reason.
Every motion passes the safety layer of the preset.
"""

from __future__ import annotations

import faulthandler
import sys
from pathlib import Path

import pytest
import rclpy
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from mtrl_robot.hardware.presets import HardwarePreset, load_preset
from mtrl_robot.ros.hil import checks
from mtrl_robot.ros.hil.plugin import HilPlugin
from mtrl_robot.ros.parameters import Range, declare_parameters
from mtrl_robot.ros.run import CONFIGURATION_ERRORS

PARAMETERS = {  # name: (default, description[, Range])
    "preset": ("sim_panda", "Hardware preset (name or YAML path) of the arm under test"),
    "sim": (True, "The arm is the simulated arm node (motion checks run without asking)"),
    "allow_motion": (False, "Real arm: run the motion checks, after confirmation at the terminal"),
    "output_dir": ("hil_report", "Where hil_junit.xml and hil_report.md are written"),
    "startup_timeout": (60.0, "s to wait for the arm's joint states and controller", Range(1.0, 600.0)),
}
JUNIT, REPORT = "hil_junit.xml", "hil_report.md"


def read_parameters(args: list[str] | None) -> dict:
    """The node's parameters from its ROS arguments."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = Node("hil_suite")
        try:
            return declare_parameters(node, PARAMETERS)
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown()


def confirm_motion(preset: HardwarePreset) -> tuple[bool, str]:
    """Ask the person at the arm, on the terminal, to confirm motion; (confirmed, why not)."""
    question = (f"\nThe HIL motion checks will move the arm of preset '{preset.name}' ({preset.driver}): the last "
                "two joints by up to 0.2 rad, slowly.\nSomeone must stand at the emergency stop. Type yes to allow "
                "motion: ")
    try:
        with open("/dev/tty", "r+") as tty:
            tty.write(question)
            tty.flush()
            answer = tty.readline().strip().lower()
    except OSError:
        return False, "no terminal to confirm motion on (allow_motion:=true needs a person at the terminal)"
    return (True, "") if answer == "yes" else (False, f"motion not confirmed at the terminal (answer {answer!r})")


def main(args: list[str] | None = None) -> int:
    """Run the checks; the exit status is pytest's (0 all passed or skipped, 1 a check failed), also 1 on bad
    parameters (one line naming the parameter)."""
    faulthandler.enable()  # a crash in native code still names the Python line it happened under
    try:
        p = read_parameters(args)
        preset = load_preset(p["preset"])
    except CONFIGURATION_ERRORS as exc:
        print(f"hil_suite: {exc}", file=sys.stderr)
        return 1
    if p["sim"]:
        allowed, why = True, ""
    elif not p["allow_motion"]:
        allowed, why = False, "real arm: pass allow_motion:=true to run motion checks (you will be asked to confirm)"
    else:
        allowed, why = confirm_motion(preset)
    out = Path(p["output_dir"])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"hil_suite: output_dir: cannot create {out}: {exc.strerror}", file=sys.stderr)
        return 1
    plugin = HilPlugin(preset, allowed, why, p["startup_timeout"])
    code = pytest.main([checks.__file__, "-q", "-rfs", "-p", "no:cacheprovider", f"--rootdir={out}",
                        "-o", "junit_family=xunit1", f"--junitxml={out / JUNIT}"], plugins=[plugin])
    (out / REPORT).write_text(plugin.markdown())
    for result in plugin.results.values():
        if result.outcome == "failed":
            print(f"hil_suite: FAILED {result.name}: {result.reason}", file=sys.stderr)
    verdict = "passed" if code == 0 else "FAILED"
    print(f"hil_suite: {verdict} (exit status {int(code)}); wrote {out / JUNIT} and {out / REPORT}", file=sys.stderr)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
