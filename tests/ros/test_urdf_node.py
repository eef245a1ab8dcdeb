"""The arm node on a URDF: the project's own export (rooted at ``world``) runs; a URDF that is not a tree makes the
node exit at start-up with one line naming the file and the joints."""

from __future__ import annotations

import subprocess

from test_cli import CYCLIC_URDF

from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.urdf import arm_to_urdf
from mtrl_robot.ros.run import node_command

STARTUP_TIMEOUT = 60.0  # s for a node process to start and refuse its URDF (on a loaded machine)


def test_arm_node_runs_a_world_rooted_urdf(launcher, tmp_path):
    arm = load_family("panda")
    urdf = tmp_path / "panda.urdf"
    urdf.write_text(arm_to_urdf(arm))
    node, states = launcher.start("/exported", robot="urdf", urdf_file=str(urdf), flange_link=arm.flange_link)
    assert tuple(states.wait_for().name) == arm.joint_names
    assert node.process.poll() is None, node.output()


def test_arm_node_refuses_a_cyclic_urdf_in_one_line(ros_env, tmp_path):
    urdf = tmp_path / "cyclic.urdf"
    urdf.write_text(CYCLIC_URDF)
    command = node_command("arm_node", {"robot": "urdf", "urdf_file": str(urdf), "flange_link": "b"}, "/cyclic")
    done = subprocess.run(command, env=ros_env, capture_output=True, text=True, timeout=STARTUP_TIMEOUT)
    assert done.returncode == 1, done.stderr
    refusals = [line for line in done.stderr.splitlines() if "form a cycle" in line]
    assert len(refusals) == 1 and f"{urdf}: joint[@name='a_to_b']" in refusals[0], done.stderr
    assert "Traceback" not in done.stderr, done.stderr
