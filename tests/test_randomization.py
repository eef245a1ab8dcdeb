"""Randomization spec: validation, seeded sampling within range, relative draws, logging."""

import json

import numpy as np
import pytest

from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.paths import data_dir
from mtrl_robot.randomization import Randomizer, SampleLog, load_spec, parse_spec
from mtrl_robot.scenes.puck_table import load_scene


@pytest.fixture(scope="module")
def default_spec():
    return load_spec(data_dir("config") / "randomization.yaml")


def draws(spec, n=2000, seed=0):
    randomizer = Randomizer(spec, load_scene().nominal_parameters(), seed=seed)
    return [randomizer.sample() for _ in range(n)]


def test_default_ranges(default_spec):
    samples = draws(default_spec)
    get = lambda name: np.array([s[name] for s in samples])  # noqa: E731
    sx, sy = get("puck.friction.slide_x"), get("puck.friction.slide_y")
    assert sx.min() >= 0.15 and sx.max() <= 0.95
    assert np.all(sy >= 0.7 * sx - 1e-12) and np.all(sy <= 1.3 * sx + 1e-12)
    assert get("puck.friction.torsional").min() >= 0.001 and get("puck.friction.torsional").max() <= 0.05
    for axis in ("x", "y"):
        roll = get(f"puck.friction.roll_{axis}")
        assert roll.min() >= 0.01 and roll.max() <= 0.3
        offset = get(f"puck.offset_{axis}")
        assert abs(offset.mean()) < 0.002 and 0.018 < offset.std() < 0.022
    mass = get("puck.mass")
    assert mass.min() >= 0.05 and mass.max() <= 0.5 and mass.max() - mass.min() > 0.4


def test_same_seed_same_values(default_spec):
    assert draws(default_spec, 10, seed=3) == draws(default_spec, 10, seed=3)
    assert draws(default_spec, 10, seed=3) != draws(default_spec, 10, seed=4)


def test_relative_to_nominal_and_when_reset():
    spec = parse_spec({"parameters": {
        "arm.damping_scale": {"distribution": "log_uniform", "range": [0.5, 2.0], "when": "reset"},
        "puck.mass": {"distribution": "uniform", "range": [0.9, 1.1], "relative_to": "nominal"},
    }})
    randomizer = Randomizer(spec, {"puck.mass": 0.2, "arm.damping_scale": 1.0}, seed=0)
    first = randomizer.sample("reset")
    later = [randomizer.sample("episode") for _ in range(5)]
    assert all(s["arm.damping_scale"] == first["arm.damping_scale"] for s in later)
    assert len({s["puck.mass"] for s in later}) == 5
    assert all(0.18 <= s["puck.mass"] <= 0.22 for s in later)
    assert randomizer.sample("reset")["arm.damping_scale"] != first["arm.damping_scale"]


@pytest.mark.parametrize("entry, field, problem", [
    ({"puck.mass": {"range": [0.5, 0.05]}}, "parameters.puck.mass.range", "greater than max"),
    ({"puck.mass": {"range": [-0.1, 0.5]}}, "parameters.puck.mass", "must be >"),
    ({"puck.friction.slide_x": {"distribution": "normal", "mean": 0.5, "std": 0.1}},
     "parameters.puck.friction.slide_x", "must be ≥"),
    ({"puck.colour": {"range": [0, 1]}}, "parameters.puck.colour", "unknown parameter"),
    ({"puck.mass": {"distribution": "cauchy", "range": [0.1, 0.2]}}, "parameters.puck.mass.distribution",
     "unknown distribution"),
    ({"puck.mass": {"range": [0.1, 0.2], "when": "always"}}, "parameters.puck.mass.when", "not one of"),
    ({"puck.friction.slide_y": {"range": [0.7, 1.3], "relative_to": "puck.friction.slide_x"}},
     "parameters.puck.friction.slide_y.relative_to", "neither"),
    ({"puck.mass": {"distribution": "log_uniform", "range": [0.0, 0.2]}}, "parameters.puck.mass.range", "positive"),
])
def test_bad_spec(tmp_path, entry, field, problem):
    import yaml

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"parameters": entry}))
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert info.value.field == field and problem in info.value.problem and str(path) in str(info.value)


def test_sample_log(tmp_path, default_spec):
    log = SampleLog(tmp_path / "log" / "samples.jsonl")
    for episode, values in enumerate(draws(default_spec, 3)):
        log.write(episode, values, seed=0)
    lines = [json.loads(line) for line in (tmp_path / "log" / "samples.jsonl").read_text().splitlines()]
    assert [line["episode"] for line in lines] == [0, 1, 2]
    assert set(lines[0]["values"]) == set(default_spec.names)
