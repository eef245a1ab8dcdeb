"""``mtrl-robot teach`` in a terminal, as a person uses it: the real command in ``tmux``, keys sent, the screen read.

The command starts the few-shot adaptation launch on a held-out simulated Panda (a one-family run of the demo preset
is meta-trained first). The scripted person reads each target off the screen, brings the arm home (``/arm_node/reset``:
a person would move it there), starts the episode, moves the flange to the target along a planned motion sent to the
arm's controller, stops the episode, reads the summary and keeps it (the first one is discarded). After K = 5 it
adapts, sends a test target and compares the error shown with the flange position from ``/joint_states``; then
Ctrl-C during a recording leaves no episode behind but the five kept.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from control_msgs.action import FollowJointTrajectory
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from mtrl_robot.arms import population as populations
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.backends.trajectory import JointTrajectory
from mtrl_robot.hardware.presets import load_preset
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.motions.reach import plan_reach
from mtrl_robot.ros.conversions import trajectory_to_msg
from mtrl_robot.ros.policy_node import fit_limits

K = 5
SCREEN_TIMEOUT = 120.0  # s for the screen to show what is awaited (the launch's nodes start in the first wait)
POLL = 0.05  # s between looks at the screen
NUMBER = r"([-+]?\d+\.\d+)"
TARGET_LINE = re.compile(rf"target  x {NUMBER}  y {NUMBER}  z {NUMBER} m")


class Terminal:
    """A command running in a tmux session of its own (its own server socket), read and typed into as a person
    would. The command runs without a shell, so that Ctrl-C reaches it alone and its exit status is the pane's."""

    def __init__(self, command: list[str], env: dict[str, str], socket: str) -> None:
        self.tmux = ["tmux", "-L", socket]
        subprocess.run([*self.tmux, "-f", "/dev/null", "new-session", "-d", "-s", "teach", "-x", "170", "-y", "60",
                        *command, ";", "set-option", "-t", "teach", "remain-on-exit", "on"],
                       env=env, check=True)
        self.pid = int(self._tmux_value("#{pane_pid}"))

    def screen(self) -> str:
        """What the terminal shows and what scrolled off it, lines the terminal wrapped joined again."""
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-J", "-S", "-", "-t", "teach"],
                              capture_output=True, text=True, check=True).stdout

    def press(self, key: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", "teach", key], check=True)

    def wait_for(self, pattern: str, timeout: float = SCREEN_TIMEOUT) -> re.Match:
        """The first match of ``pattern`` on the screen, looking until ``timeout`` s have passed."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            found = re.search(pattern, screen)
            if found:
                return found
            assert time.monotonic() < deadline, f"no {pattern!r} on the screen within {timeout} s:\n{screen}"
            time.sleep(POLL)

    def exit_status(self, timeout: float = 60.0) -> int:
        """The command's exit status, once it has exited: tmux's, or the kernel's while tmux has yet to reap it
        (tmux 3.3 may leave an exited pane's process a zombie for a long time)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self._tmux_value("#{pane_dead_status}")
            if status:
                return int(status)
            stat = Path(f"/proc/{self.pid}/stat")
            fields = stat.read_text().rsplit(")", 1)[1].split() if stat.exists() else []  # from field 3, the state
            if fields[:1] == ["Z"]:
                return int(fields[-1]) >> 8  # field 52: the exit status as waitpid reports it
            assert time.monotonic() < deadline, f"still running after {timeout} s:\n{self.screen()}"
            time.sleep(POLL)

    def _tmux_value(self, name: str) -> str:
        return subprocess.run([*self.tmux, "display-message", "-p", "-t", "teach", name], capture_output=True,
                              text=True, check=True).stdout.strip()

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], check=False)


@pytest.fixture(scope="module")
def panda_run(demo_run) -> tuple[Path, Path, str]:
    """A one-family Panda run of the demo preset, its population file and a held-out robot id."""
    return demo_run("panda")


def shown_target(terminal: Terminal, stage: str) -> np.ndarray:
    """The target on the screen once it shows ``stage`` and waits for a key."""
    terminal.wait_for(rf"\[{stage}\](.|\n)*keys: \[")
    return np.array([float(v) for v in TARGET_LINE.search(terminal.screen()).groups()])


def start_recording(terminal: Terminal) -> None:
    """Press r and wait for the recording screen; like a person, press r once more if the screen has not reacted at
    all (still the target, same keys, no request under way) after a while."""
    recording = r"\[recording\](.|\n)*keys: \[s\]"
    terminal.press("r")
    try:
        terminal.wait_for(recording, timeout=20.0)
        return
    except AssertionError:
        screen = terminal.screen()
        if not re.search(r"\[demonstration target\](.|\n)*keys: \[r\]", screen) or "starting the episode" in screen:
            raise
    terminal.press("r")
    terminal.wait_for(recording)


def test_teach_five_demonstrations_adapt_and_test_in_a_terminal(panda_run, ros_env, ros_client, tmp_path):
    checkpoint, population_file, robot = panda_run
    arm = populations.load(population_file).get(robot)
    limits = load_preset("sim_panda").safety_limits(arm)
    recordings = tmp_path / "recordings"
    states: list[JointState] = []
    subscription = ros_client.between_waits(
        lambda: ros_client.node.create_subscription(JointState, "/joint_states", states.append, 50))
    reset = ros_client.between_waits(lambda: ros_client.node.create_client(Trigger, "/arm_node/reset"))
    action = ros_client.action_client(FollowJointTrajectory, "/joint_trajectory_controller/follow_joint_trajectory")
    command = [sys.executable, "-m", "mtrl_robot.cli.main", "teach", f"robot:={robot}",
               f"population_file:={population_file}", f"checkpoint:={checkpoint}",
               f"model:={checkpoints.model_file_path(checkpoint)}", f"recordings_dir:={recordings}", f"k:={K}",
               "--seed", "7"]
    terminal = Terminal(command, ros_env, f"teach_{ros_env['ROS_DOMAIN_ID']}")

    def home() -> None:
        """The person brings the arm back to its start posture."""
        assert reset.wait_for_service(timeout_sec=30.0) and ros_client.wait(reset.call_async(Trigger.Request())).success

    try:
        demonstration = 0
        while demonstration < K + 1:  # the first is discarded
            target = shown_target(terminal, "demonstration target")
            planned = plan_reach(arm, target[None])
            if not len(planned):  # IK found no posture: ask for another target
                terminal.press("n")
                terminal.wait_for("new target")
                continue
            home()
            start_recording(terminal)
            trajectory = fit_limits(JointTrajectory(arm.joint_names, planned.times[0], planned.positions[0],
                                                    planned.velocities[0]), limits)
            assert action.wait_for_server(timeout_sec=30.0)
            handle = ros_client.wait(action.send_goal_async(FollowJointTrajectory.Goal(
                trajectory=trajectory_to_msg(trajectory))))
            assert ros_client.wait(handle.get_result_async(), 30.0).result.error_code == 0
            terminal.press("s")
            distance = float(terminal.wait_for(rf"to target  {NUMBER} cm").group(1))
            assert distance < 0.5, terminal.screen()  # the shown target is rounded to the millimetre
            bag = Path(terminal.wait_for(r"bag        (\S+)").group(1))
            assert (bag / "metadata.yaml").is_file() and bag.parent == recordings
            terminal.press("d" if demonstration == 0 else "k")
            if demonstration == 0:
                terminal.wait_for("demonstration discarded")
                assert not bag.exists() and (recordings / "discarded" / bag.name / "metadata.yaml").is_file()
            demonstration += 1
        terminal.wait_for(rf"press a to adapt(.|\n)*demonstrations kept \({K} of K = {K}\)")
        terminal.press("a")
        test_target = shown_target(terminal, "test target")
        model = Path(terminal.wait_for(r"adapted model: (\S+)").group(1))
        assert model.is_file() and f"-k{K}-" in model.name, model

        home()
        moment = time.time()
        terminal.press("t")
        point = rf"\({NUMBER}, {NUMBER}, {NUMBER}\)"
        row = [float(v) for v in terminal.wait_for(rf"│ +1 │ +{point} │ +{point} │ +{NUMBER} │", 60.0).groups()]
        assert np.array_equal(row[:3], test_target)
        print(f"\nthe screen after the first test target:\n{terminal.screen()}")
        shown_reached, shown_error = np.array(row[3:6]), row[6] / 100
        at_rest = [m for m in states if m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 > moment]
        by_name = dict(zip(at_rest[-1].name, at_rest[-1].position, strict=True))
        flange = flange_position(arm, np.array([by_name[n] for n in arm.joint_names]))
        assert np.abs(shown_reached - flange).max() < 1e-3, (shown_reached, flange)
        assert abs(shown_error - np.linalg.norm(flange - test_target)) < 1e-3 and shown_error < 0.03, terminal.screen()

        terminal.press("r")
        shown_target(terminal, "demonstration target")
        terminal.press("r")
        terminal.wait_for(r"\[recording\]")
        terminal.press("C-c")
        assert terminal.exit_status() == 130
        final = terminal.screen()
        print(f"\nafter Ctrl-C:\n{final}")
        assert "the open episode was discarded (moved to" in final and "Traceback" not in final, final
    finally:
        ros_client.destroy(action)
        ros_client.destroy(reset)
        ros_client.destroy(subscription)
        screen = terminal.screen()
        terminal.close()
    kept = sorted(p.name for p in recordings.iterdir() if p.name != "discarded")
    assert len(kept) == K and all((recordings / name / "metadata.yaml").is_file() for name in kept), (kept, screen)
    assert len(list((recordings / "discarded").iterdir())) == 2
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".") or ".tmp" in p.name], "a half-written file"


def test_teach_names_the_node_that_failed_to_start(panda_run, ros_env, tmp_path):
    checkpoint, population_file, robot = panda_run
    not_a_folder = tmp_path / "recordings"
    not_a_folder.write_text("a file where the recordings should go")
    command = [sys.executable, "-m", "mtrl_robot.cli.main", "teach", f"robot:={robot}",
               f"population_file:={population_file}", f"checkpoint:={checkpoint}",
               f"model:={checkpoints.model_file_path(checkpoint)}", f"recordings_dir:={not_a_folder}"]
    terminal = Terminal(command, ros_env, f"teach_failing_{ros_env['ROS_DOMAIN_ID']}")
    try:
        assert terminal.exit_status(SCREEN_TIMEOUT) == 1
        screen = terminal.screen()
    finally:
        terminal.close()
    assert (f"mtrl-robot teach: error: demo_recorder exited with code 1 (demo_recorder: output_dir: {not_a_folder} "
            "is not a writable folder") in screen, screen
    assert "Traceback" not in screen, screen
