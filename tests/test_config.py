"""The typed YAML config loader (core/config.py): types, ranges, choices, base:, overrides, and one-line errors."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pytest
import yaml

from mtrl_robot.cli.main import main as cli_main
from mtrl_robot.core.config import (
    Limit,
    config_from_dict,
    config_to_dict,
    load_config,
    rule_of,
    setting,
)
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.hardware import presets as hardware
from mtrl_robot.learning.puck import presets as puck
from mtrl_robot.learning.reaching import presets as reaching
from mtrl_robot.perception.colour_blob import load_perception_config

SIZE = Limit(1000, "a test's memory")


@dataclass(frozen=True)
class Joint:
    lower: float = setting(doc="rad")
    upper: float = setting(doc="rad")

    def __post_init__(self) -> None:
        if self.lower >= self.upper:
            raise ConfigError(None, "upper", f"must exceed lower ({self.lower})")


@dataclass(frozen=True)
class Net:
    hidden: tuple[int, ...] = setting((4, 4), "layer widths", above=0, maximum=SIZE)
    rate: float = setting(0.1, "step size", above=0)
    decay: float = setting(0.0, "weight decay", minimum=0, maximum=1, why="a fraction")
    kind: str = setting("mlp", "architecture", choices=("mlp", "rnn"))


@dataclass(frozen=True)
class Example:
    name: str = setting("", "preset name")
    steps: int = setting(10, "steps", minimum=0, maximum=SIZE)
    flag: bool = setting(False, "a switch")
    note: str | None = setting(None, "optional text")
    box: tuple[float, float] = setting((0.0, 1.0), "low, high")
    net: Net = setting(Net)
    joints: dict[str, Joint] = setting({}, "limits by joint")


def write(tmp_path, text, name="preset.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def refused(load, field, problem, source=None):
    """The ConfigError of ``load()``: one line naming ``source`` and ``field``, saying ``problem``."""
    with pytest.raises(ConfigError) as caught:
        load()
    error = caught.value
    assert "\n" not in str(error) and "Traceback" not in str(error)
    assert error.field == field, str(error)
    assert problem in error.problem, str(error)
    if source is not None:
        assert error.source == str(source), str(error)
        assert str(error).startswith(f"{source}: {field}: " if field else f"{source}: ")
    return error


def test_a_file_becomes_nested_frozen_dataclasses_with_every_type(tmp_path):
    path = write(tmp_path, """
steps: 3
flag: true
note: hello
box: [-1, 2.5]
net: {hidden: [8, 16, 32], rate: 1e-3, kind: rnn}
joints: {a: {lower: -1, upper: 1}, b: {lower: 0.5, upper: 2}}
""")
    config = load_config(Example, path, given={"name": path.stem})
    assert config == Example(name="preset", steps=3, flag=True, note="hello", box=(-1.0, 2.5),
                             net=Net(hidden=(8, 16, 32), rate=1e-3, kind="rnn"),
                             joints={"a": Joint(-1.0, 1.0), "b": Joint(0.5, 2.0)})
    assert isinstance(config.box[0], float) and isinstance(config.net.rate, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.steps = 4
    assert load_config(Example, write(tmp_path, "{}", "empty.yaml")) == Example()  # defaults
    assert config_from_dict(Example, config_to_dict(config)) == config  # plain data (checkpoints) and back
    assert rule_of(dataclasses.fields(Net)[0]).doc == "layer widths"


@pytest.mark.parametrize(("text", "field", "problem"), [
    ("steps: 2.5", "steps", "expected an integer, got 2.5"),
    ("steps: ten", "steps", "expected an integer, got 'ten'"),
    ("steps: true", "steps", "expected an integer"),
    ("flag: 1", "flag", "expected true or false"),
    ("note: 7", "note", "expected a non-empty string"),
    ("box: [1]", "box", "expected a list of 2 numbers"),
    ("box: 1", "box", "expected a list of 2 numbers"),
    ("box: [0, x]", "box[1]", "expected a number, got 'x'"),
    ("net: [1, 2]", "net", "expected a mapping, got list"),
    ("net: {hidden: 8}", "net.hidden", "expected a list of integers"),
    ("net: {kind: cnn}", "net.kind", "expected one of mlp, rnn, got 'cnn'"),
    ("net: {rate: 0}", "net.rate", "must be > 0, got 0.0"),
    ("net: {rate: -1e-3}", "net.rate", "must be > 0"),
    ("steps: -1", "steps", "must be >= 0, got -1"),
    ("net: {decay: 1.5}", "net.decay", "must be <= 1 (a fraction), got 1.5"),
    ("net: {hidden: [4, 0]}", "net.hidden[1]", "must be > 0"),
    ("joints: {a: {lower: 1, upper: 0}}", "joints.a.upper", "must exceed lower"),  # the dataclass's own check
    ("joints: {a: {lower: 1}}", "joints.a.upper", "required field is missing"),
    ("joints: {a: {lower: 0, upper: 1, middle: 0.5}}", "joints.a.middle", "unknown field (allowed: lower, upper)"),
    ("speed: 3", "speed", "unknown field (allowed: name, steps, flag, note, box, net, joints)"),
    ("net: {width: 3}", "net.width", "unknown field (allowed: hidden, rate, decay, kind)"),
])
def test_types_ranges_choices_and_unknown_fields_name_file_and_field(tmp_path, text, field, problem):
    path = write(tmp_path, text)
    refused(lambda: load_config(Example, path), field, problem, path)


@pytest.mark.parametrize(("text", "field"), [
    ("net: {rate: .nan}", "net.rate"), ("net: {rate: .inf}", "net.rate"), ("net: {decay: -.inf}", "net.decay"),
    ("box: [0, .inf]", "box[1]"), ("steps: .inf", "steps"), ("net: {rate: 1e999}", "net.rate"),
    ("joints: {a: {lower: -.inf, upper: 0}}", "joints.a.lower"),
])
def test_nan_and_infinity_are_refused_everywhere(tmp_path, text, field):
    path = write(tmp_path, text)
    refused(lambda: load_config(Example, path), field, "must be finite", path)


def test_numbers_pyyaml_leaves_as_strings_are_the_numbers_users_mean(tmp_path):
    assert yaml.safe_load("x: 1e-3")["x"] == "1e-3"  # why the loader has to
    config = load_config(Example, write(tmp_path, "net: {rate: 1e-3, decay: 5E-1}\nsteps: 1e2\nbox: [-2e0, +.5]"))
    assert (config.net.rate, config.net.decay, config.steps, config.box) == (1e-3, 0.5, 100, (-2.0, 0.5))
    assert isinstance(config.steps, int)
    path = write(tmp_path, "steps: 1.5e0")
    refused(lambda: load_config(Example, path), "steps", "expected an integer, got '1.5e0'", path)
    path = write(tmp_path, "net: {rate: 1e-3x}")
    refused(lambda: load_config(Example, path), "net.rate", "expected a number, got '1e-3x'", path)


def test_sizes_beyond_what_a_run_can_hold_are_refused_with_the_limit_and_why(tmp_path):
    path = write(tmp_path, "steps: 1e9\n")
    refused(lambda: load_config(Example, path), "steps", "must be <= 1000 (a test's memory), got 1000000000", path)
    path = write(tmp_path, f"steps: {10**40}\n")  # an integer no float holds
    refused(lambda: load_config(Example, path), "steps", "must be <= 1000", path)
    for override, field in [("data.robots_per_family=1e12", "data.robots_per_family"),
                            ("data.robots_per_family=1e9", "data.robots_per_family"),
                            ("data.demos_per_robot=1e8", "data.demos_per_robot"),
                            ("model.vae_hidden=[64, 1e8]", "model.vae_hidden[1]"),
                            ("model.policy_hidden=[100000000]", "model.policy_hidden[0]"),
                            ("compute.threads=1000", "compute.threads"),
                            ("compute.workers=1e6", "compute.workers"),
                            ("adapt.steps=1e9", "adapt.steps"),
                            ("meta.meta_steps=1e9", "meta.meta_steps"),
                            ("meta.inner_steps=1e6", "meta.inner_steps")]:
        error = refused(lambda o=override: reaching.load_preset("small", [o]), field, "must be <=", "--set")
        assert "(" in error.problem  # the why
    refused(lambda: reaching.load_preset("small", ["data.robots_per_family=5000", "data.demos_per_robot=5000"]),
            "data.demos_per_robot", "25000000 demos per family exceeds the limit 1000000", "--set")
    for override, field in [("rollouts=1e9", "small.rollouts"), ("hidden=[1e8]", "small.hidden[0]"),
                            ("iterations=1e12", "small.iterations"), ("eval_steps=1e9", "small.eval_steps")]:
        refused(lambda o=override: puck.load_preset("small", overrides=[o]), field, "must be <=", "--set")


def test_base_takes_the_fields_a_preset_does_not_set(tmp_path):
    write(tmp_path, "name: parent\nsteps: 5\nnet: {hidden: [8], rate: 0.5}\njoints: {a: {lower: 0, upper: 1}}",
          "parent.yaml")
    child = write(tmp_path, "base: parent\nnet: {rate: 0.25}\njoints: {a: {upper: 3}}", "child.yaml")
    config = load_config(Example, child, given={"name": "child"})
    assert config.name == "child"  # a preset's name is not inherited
    assert (config.steps, config.net.hidden, config.net.rate) == (5, (8,), 0.25)  # sections merge field by field
    assert config.joints == {"a": Joint(0.0, 3.0)}
    by_path = write(tmp_path, f"base: {tmp_path / 'parent.yaml'}\nsteps: 6", "by_path.yaml")
    assert load_config(Example, by_path).steps == 6
    grandchild = write(tmp_path, "base: child.yaml\nflag: true", "grandchild.yaml")
    assert load_config(Example, grandchild).net.rate == 0.25
    # an error in an inherited value names the file it came from
    write(tmp_path, "steps: -3", "bad_parent.yaml")
    bad_child = write(tmp_path, "base: bad_parent\nflag: true", "bad_child.yaml")
    refused(lambda: load_config(Example, bad_child), "steps", "must be >= 0", tmp_path / "bad_parent.yaml")


def test_base_errors(tmp_path):
    lost = write(tmp_path, "base: nowhere", "lost.yaml")
    refused(lambda: load_config(Example, lost), "base", "no preset 'nowhere'", lost)
    write(tmp_path, "base: b", "a.yaml")
    b = write(tmp_path, "base: a", "b.yaml")
    refused(lambda: load_config(Example, b), "base", "presets inherit in a cycle", tmp_path / "a.yaml")
    odd = write(tmp_path, "base: [a]", "odd.yaml")
    refused(lambda: load_config(Example, odd), "base", "expected a preset name or path", odd)


def test_base_between_sections_of_one_file(tmp_path):
    path = write(tmp_path, "big: {steps: 9, flag: true}\nsmall: {base: big, steps: 2}\nloop: {base: loop2}\n"
                           "loop2: {base: loop}\nlost: {base: nowhere}\nbad: {base: big, steps: x}")
    small = load_config(Example, path, section="small", given={"name": "small"})
    assert (small.name, small.steps, small.flag) == ("small", 2, True)
    refused(lambda: load_config(Example, path, section="loop"), "loop2.base", "cycle", path)
    refused(lambda: load_config(Example, path, section="lost"), "lost.base", "unknown preset 'nowhere'", path)
    refused(lambda: load_config(Example, path, section="none"), "preset", "unknown preset 'none'", path)
    refused(lambda: load_config(Example, path, section="bad"), "bad.steps", "expected an integer", path)


def test_overrides_are_yaml_and_checked_like_the_file(tmp_path):
    path = write(tmp_path, "steps: 3\nnet: {rate: 0.5}")
    config = load_config(Example, path, overrides=["net.hidden=[2, 3]", "steps=1e2", "note=null", "net.rate=1e-3",
                                                   "joints.a={lower: 0, upper: 1}", "joints.a.upper=2"])
    assert (config.net.hidden, config.steps, config.note, config.net.rate) == ((2, 3), 100, None, 1e-3)
    assert config.joints == {"a": Joint(0.0, 2.0)}
    for override, field, problem in [
        ("net.rate=.inf", "net.rate", "must be finite"),
        ("net.kind=cnn", "net.kind", "expected one of mlp, rnn"),
        ("steps=1e9", "steps", "must be <= 1000 (a test's memory)"),
        ("net.width=3", "net.width", "unknown field (allowed: hidden, rate, decay, kind)"),
        ("speed=3", "speed", "unknown field (allowed: name, steps"),
        ("optimizer.lr=1", "optimizer.lr", "unknown section 'optimizer' (known: net)"),
        ("steps.x=1", "steps.x", "has no fields to set"),
        ("steps", "steps", "an override reads section.field=value"),
        ("net.hidden=[1", "net.hidden", "is not YAML"),
    ]:
        refused(lambda o=override: load_config(Example, path, overrides=[o]), field, problem, "--set")


def test_malformed_and_missing_files_are_one_line_naming_the_file(tmp_path):
    broken = write(tmp_path, "steps: [1, 2\nflag: true")
    refused(lambda: load_config(Example, broken), None, "malformed YAML: line", broken)
    listed = write(tmp_path, "- 1\n- 2", "listed.yaml")
    refused(lambda: load_config(Example, listed), None, "expected a mapping, got list", listed)
    missing = tmp_path / "missing.yaml"
    refused(lambda: load_config(Example, missing), None, "file not found", missing)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    refused(lambda: load_config(Example, binary), None, "", binary)


def test_every_preset_system_reads_through_the_loader(tmp_path):
    """Training, puck, hardware and perception presets: base:, NaN/inf and '1e-3' behave the same in all four."""
    small = reaching.load_preset("small")
    child = write(tmp_path, "base: " + str(reaching.presets_dir() / "small.yaml") + "\nmeta: {inner_lr: 5e-3}",
                  "mine.yaml")
    mine = reaching.load_preset(child)
    assert mine.name == "mine" and mine.meta.inner_lr == 5e-3
    assert dataclasses.replace(mine, name="small", meta=small.meta) == small
    refused(lambda: reaching.load_preset(write(tmp_path, "meta: {inner_lr: .inf}", "inf.yaml")), "meta.inner_lr",
            "must be finite", tmp_path / "inf.yaml")
    refused(lambda: reaching.load_preset("small", ["model.beta=.inf"]), "model.beta", "must be finite", "--set")
    refused(lambda: reaching.load_preset("small", ["meta.outer_lr_final=1"]), "meta.outer_lr_final",
            "must not exceed meta.outer_lr", "--set")  # a constraint between fields names the override too
    refused(lambda: reaching.load_preset("small", ["data.demos_per_robot=12"]), "meta.k_query",
            "k_support + k_query = 15 exceeds", reaching.presets_dir() / "small.yaml")
    assert puck.load_preset("small", overrides=["inner_lr=1e-2"]).inner_lr == 0.01
    refused(lambda: puck.load_preset("small", overrides=["inner_lr=.inf"]), "small.inner_lr", "must be finite")
    with pytest.raises(ConfigError, match="rollouts: must be >= 2"):  # built in code, checked the same
        dataclasses.replace(puck.load_preset("small"), rollouts=1)

    fr3 = hardware.hardware_dir() / "franka_fr3.yaml"
    variant = write(tmp_path, f"base: {fr3}\ndry_run: false\nwatchdog_timeout: 1e-1", "fr3_variant.yaml")
    preset, original = hardware.load_preset(variant), hardware.load_preset("franka_fr3")
    assert (preset.name, preset.dry_run, preset.watchdog_timeout) == ("fr3_variant", False, 0.1)
    assert preset.joint_map == original.joint_map and (preset.velocity == original.velocity).all()
    for text, field, problem in [("watchdog_timeout: .inf", "watchdog_timeout", "must be finite"),
                                 ("max_start_deviation: 100", "max_start_deviation", "must be <= 0.5"),
                                 ("joint_states_rate: 1e9", "joint_states_rate", "must be <= 10000"),
                                 ("limits: {fr3_joint1: {velocity: .nan}}", "limits.fr3_joint1.velocity",
                                  "must be finite")]:
        bad = write(tmp_path, f"base: {fr3}\n{text}", "fr3_bad.yaml")
        refused(lambda b=bad: hardware.load_preset(b), field, problem, bad)

    camera = write(tmp_path, "targets: {puck: {hsv_low: [0, 0, 0], hsv_high: [10, 255, 255], min_area: 1e1}}\n"
                             "camera: {position: [0, 0, 1], rpy: [3.14, 0, 0]}\ntable_height: .inf", "camera.yaml")
    refused(lambda: load_perception_config(camera), "table_height", "must be finite", camera)
    camera.write_text(camera.read_text().replace("table_height: .inf", "table_height: 1e-2"))
    config = load_perception_config(camera)
    assert (config.table_height, config.targets["puck"].min_area) == (0.01, 10.0)


@pytest.mark.parametrize("argv", [
    ["reaching", "train", "demo", "--set", "meta.inner_lr=.inf"],
    ["reaching", "train", "demo", "--set", "data.robots_per_family=1e9"],
    ["puck", "train", "--preset", "small", "--set", "inner_lr=.inf"],
    ["puck", "train", "--preset", "small", "--set", "rollouts=1e9"],
])
def test_the_commands_refuse_a_bad_override_in_one_line_before_writing_anything(tmp_path, capsys, argv):
    out = tmp_path / "run"
    assert cli_main([*argv, "-o", str(out)]) == 2
    captured = capsys.readouterr()
    field = argv[-1].split("=")[0]
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("mtrl-robot: error: --set: ") and f"{field}: must be" in captured.err
    assert not out.exists()


def test_puck_train_takes_overrides(tmp_path):
    out = tmp_path / "puck"
    assert cli_main(["puck", "train", "--preset", "small", "--set", "iterations=1", "--set", "hidden=[8]",
                     "--set", "vae_steps=50", "-o", str(out)]) == 0
    config = puck.config_from_dict(json.loads((out / "training.json").read_text())["config"])
    assert config == dataclasses.replace(puck.load_preset("small"), iterations=1, hidden=(8,), vae_steps=50)
