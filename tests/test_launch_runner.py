"""The launch runner: XML parsing (args, params, remaps, groups, includes) and real process runs with clean stops."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.paths import data_dir
from mtrl_robot.tools.launch_runner import NodeSpec, command, parse_launch, run

INCLUDED = """\
<launch>
  <arg name="rate" default="10"/>
  <node pkg="demo" exec="listener" name="inner" namespace="$(var ns)">
    <param name="rate" value="$(var rate)"/>
  </node>
</launch>
"""

MAIN = """\
<?xml version="1.0"?>
<launch>
  <arg name="sim" default="true"/>
  <arg name="ns" default="robot"/>
  <arg name="config" default="$(find-pkg-share mtrl_robot)/config/population.yaml"/>
  <set_env name="SHARED" value="1"/>
  <group if="$(var sim)">
    <set_env name="ONLY_IN_GROUP" value="yes"/>
    <node pkg="mtrl_robot" exec="arm_sim" name="arm" namespace="/$(var ns)" output="screen" args="--fast 2"
          on_exit="shutdown">
      <param from="$(var config)"/>
      <param name="family" value="panda"/>
      <remap from="joint_states" to="/$(var ns)/joint_states"/>
      <env name="MODE" value="sim"/>
    </node>
  </group>
  <group unless="$(var sim)">
    <node pkg="demo" exec="driver"/>
  </group>
  <include file="included.xml">
    <arg name="rate" value="50"/>
  </include>
</launch>
"""


@pytest.fixture
def launch_dir(tmp_path):
    (tmp_path / "main.xml").write_text(MAIN)
    (tmp_path / "included.xml").write_text(INCLUDED)
    return tmp_path


def test_parse_args_params_remaps_groups_includes(launch_dir):
    arm, inner = parse_launch(launch_dir / "main.xml")
    config = str(data_dir("config") / "population.yaml")
    assert (arm.package, arm.executable, arm.name, arm.namespace, arm.output) == (
        "mtrl_robot", "arm_sim", "arm", "/robot", "screen")
    assert arm.required and arm.arguments == ("--fast", "2")
    assert arm.param_files == (config,) and arm.parameters == (("family", "panda"),)
    assert arm.remaps == (("joint_states", "/robot/joint_states"),)
    assert dict(arm.env) == {"SHARED": "1", "ONLY_IN_GROUP": "yes", "MODE": "sim"}
    assert arm.origin == f"{launch_dir / 'main.xml'}:9"
    assert arm.ros_arguments() == ["--ros-args", "-r", "__node:=arm", "-r", "__ns:=/robot", "--params-file", config,
                                   "-p", "family:=panda", "-r", "joint_states:=/robot/joint_states"]
    # the include sees the parent's arguments and its own, and nothing set inside the group
    assert (inner.name, inner.namespace, inner.output) == ("inner", "/robot", "log")
    assert inner.parameters == (("rate", "50"),)
    assert dict(inner.env) == {"SHARED": "1"} and not inner.required


def test_caller_arguments_switch_groups(launch_dir):
    driver, inner = parse_launch(launch_dir / "main.xml", {"sim": "false", "ns": "left"})
    assert driver.executable == "driver" and driver.name is None and inner.namespace == "/left"


@pytest.mark.parametrize("xml, line, message", [
    ('<launch>\n  <rosparam file="x.yaml"/>\n</launch>', 2, r"<rosparam>: unsupported tag inside <launch>"),
    ('<launch>\n  <node pkg="a" exec="b" respawn="true"/>\n</launch>', 2, r"<node>: unknown attribute 'respawn'"),
    ('<launch>\n  <node pkg="a" exec="b" name="$(env HOME)"/>\n</launch>', 2,
     r"unsupported substitution '\$\(env HOME\)'"),
    ('<launch>\n\n  <node pkg="a" exec="$(var missing)"/>\n</launch>', 3, r"\$\(var missing\): no such argument"),
    ('<launch>\n  <arg name="x"/>\n</launch>', 2, r"argument 'x' has no default: pass x:=VALUE"),
    ('<launch>\n  <group if="maybe"/>\n</launch>', 2, r"if=\"maybe\" is 'maybe', not true or false"),
    ('<launch>\n  <node pkg="a"/>\n</launch>', 2, r"attribute 'exec' is required"),
    ('<launch>\n  <node pkg="a" exec="b">\n    <param name="p"/>\n  </node>\n</launch>', 3,
     r"<param>: attribute 'value' is required"),
    ('<launch>\n  <include file="other.launch.py"/>\n</launch>', 2, r"only XML launch files"),
    ('<launch>\n  <node pkg="a" exec="b"\n</launch>', 3, r"malformed XML"),
])
def test_errors_name_file_and_line(tmp_path, xml, line, message):
    path = tmp_path / "bad.xml"
    path.write_text(xml)
    with pytest.raises(ConfigError, match=message) as caught:
        parse_launch(path)
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_undeclared_caller_argument_and_self_include(launch_dir):
    with pytest.raises(ConfigError, match=r"argument 'simm' is not declared"):
        parse_launch(launch_dir / "main.xml", {"simm": "true"})
    (launch_dir / "loop.xml").write_text('<launch><include file="loop.xml"/></launch>')
    with pytest.raises(ConfigError, match="includes itself"):
        parse_launch(launch_dir / "loop.xml")


def test_command_finds_scripts_and_reports_missing_ones():
    script = command(NodeSpec("mtrl_robot", "mtrl-robot", name="cli"))
    assert script[0] == str(Path(sys.prefix) / "bin" / "mtrl-robot") and script[1:3] == ["--ros-args", "-r"]
    with pytest.raises(ConfigError, match=r"main.xml:4: <node>: executable 'nope' of package 'demo' not found"):
        command(NodeSpec("demo", "nope", origin="main.xml:4"))


def test_our_nodes_without_a_script_run_as_modules(monkeypatch):
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(sys, "prefix", "/nonexistent")
    assert command(NodeSpec("mtrl_robot", "training_node"))[:3] == [sys.executable, "-m",
                                                                     "mtrl_robot.ros.training_node"]


# --- real processes -------------------------------------------------------------------------------------------

NODE_SCRIPT = """\
#!{python}
import json, os, signal, subprocess, sys, time
out, name = os.environ["OUT"], os.environ["NODE"]

def stop(sig, frame):
    open(os.path.join(out, name + ".stopped"), "w").write(signal.Signals(sig).name)
    sys.exit(int(os.environ.get("STOP_CODE", "0")))

if os.environ.get("MODE") == "stubborn":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGINT, stop)
grandchild = subprocess.Popen(["sleep", "60"]) if os.environ.get("GRANDCHILD") else None
info = {{"pid": os.getpid(), "argv": sys.argv[1:], "grandchild": grandchild and grandchild.pid}}
with open(os.path.join(out, name + ".tmp"), "w") as f:
    json.dump(info, f)
os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name + ".json"))
if os.environ.get("MODE") == "quit":
    while not os.path.exists(os.environ["WAIT_FOR"]):  # quit only once the other node is up
        time.sleep(0.02)
    sys.exit(int(os.environ["CODE"]))
while True:
    time.sleep(0.05)
"""

RUN_XML = """\
<launch>
  <arg name="out"/>
  <arg name="quit_code" default="0"/>
  <arg name="a_quits" default="false"/>
  <arg name="stop_code" default="0"/>
  <set_env name="OUT" value="$(var out)"/>
  <node pkg="mtrl_test" exec="mtrl_test_node" name="a" on_exit="shutdown">
    <env name="NODE" value="a"/>
    <env name="CODE" value="$(var quit_code)"/>
    <env name="STOP_CODE" value="$(var stop_code)"/>
    <env name="MODE" value="quit" />
    <env name="WAIT_FOR" value="$(var out)/b.json" />
  </node>
  <node pkg="mtrl_test" exec="mtrl_test_node" name="b">
    <param name="greeting" value="hello"/>
    <env name="NODE" value="b"/>
    <env name="GRANDCHILD" value="1"/>
  </node>
</launch>
"""


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for a reaper counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_for(paths, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"timed out waiting for {[str(p) for p in paths]}"
        time.sleep(0.05)
    return [json.loads(p.read_text()) for p in paths]


@pytest.fixture
def node_env(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "mtrl_test_node"
    script.write_text(NODE_SCRIPT.format(python=sys.executable))
    script.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "ROS_LOG_DIR": str(tmp_path / "log")}
    (tmp_path / "run.xml").write_text(RUN_XML.replace('<env name="MODE" value="quit" />', ""))
    (tmp_path / "quit.xml").write_text(RUN_XML)
    return tmp_path, out, env


def start_runner(xml: Path, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mtrl_robot.tools.launch_runner", str(xml), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_stops_every_node_and_leaves_no_orphans_and_ends_with_the_required_nodes_status(node_env):
    tmp_path, out, env = node_env
    runner = start_runner(tmp_path / "run.xml", env, f"out:={out}", "stop_code:=130")
    try:
        a, b = wait_for([out / "a.json", out / "b.json"])
        assert b["argv"] == ["--ros-args", "-r", "__node:=b", "-p", "greeting:=hello"]
        assert alive(b["grandchild"])
        runner.send_signal(signal.SIGTERM)
        _, stderr = runner.communicate(timeout=60)  # beyond the runner's own 20 s escalation to SIGKILL
    finally:
        runner.kill()
    assert runner.returncode == 130, stderr  # node a is required: its status on being stopped is the launch's
    assert (out / "a.stopped").read_text() == (out / "b.stopped").read_text() == "SIGINT"
    for pid in (a["pid"], b["pid"], b["grandchild"]):
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid), f"process {pid} outlived the runner"
    assert "stop requested" in stderr


def test_a_required_node_dying_stops_the_others_with_its_exit_status(node_env):
    tmp_path, out, env = node_env
    runner = start_runner(tmp_path / "quit.xml", env, f"out:={out}", "quit_code:=3")
    try:
        _, stderr = runner.communicate(timeout=30)
    finally:
        runner.kill()
    assert runner.returncode == 3, stderr
    assert "a exited with code 3" in stderr and 'required (on_exit="shutdown")' in stderr
    b = wait_for([out / "b.json"])[0]
    assert (out / "b.stopped").read_text() == "SIGINT" and not alive(b["pid"])


def test_stubborn_nodes_get_sigterm_then_sigkill(node_env, monkeypatch):
    tmp_path, out, env = node_env
    script = str(tmp_path / "bin" / "mtrl_test_node")
    monkeypatch.setenv("OUT", str(out))
    stubborn = NodeSpec("mtrl_test", script, name="stubborn", env=(("MODE", "stubborn"), ("NODE", "stubborn")))
    quitter = NodeSpec("mtrl_test", script, name="quitter", required=True,
                       env=(("MODE", "quit"), ("CODE", "0"), ("NODE", "quitter"),
                            ("WAIT_FOR", str(out / "stubborn.json"))))
    began = time.monotonic()
    code = run([stubborn, quitter], sigint_timeout=0.5, sigterm_timeout=0.5, log_dir=tmp_path / "log")
    assert code == 0 and time.monotonic() - began < 15
    info = wait_for([out / "stubborn.json"])[0]
    assert not alive(info["pid"]) and not (out / "stubborn.stopped").exists()
    assert (tmp_path / "log" / "00-stubborn.log").is_file()
