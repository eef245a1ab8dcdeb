"""Robot populations: reproducible, perturbed within the configured ranges, saved with stable ids."""

import json
from pathlib import Path

import numpy as np
import pytest

from mtrl_robot.arms import population as P
from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.core.errors import ConfigError


@pytest.fixture(scope="module")
def small_config():
    return P.load_config(robots_per_family=5)


def test_default_config_makes_400_robots():
    config = P.load_config()
    assert config.robots_per_family == 100 and len(config.families) == 4


def test_same_seed_same_population(small_config):
    a, b = P.generate(small_config), P.generate(small_config)
    assert a.robots == b.robots
    other = P.generate(P.load_config(robots_per_family=5, seed=1))
    assert a.robots[0] != other.robots[0]


def test_robot_depends_only_on_seed_family_index(small_config):
    big = P.generate(P.load_config(robots_per_family=8, families=["gen3", "panda"]))
    small = P.generate(small_config)
    assert big.get("panda-003") == small.get("panda-003")


def test_robots_are_distinct_and_within_ranges(small_config):
    pop = P.generate(small_config)
    assert len(set(pop.ids)) == len(pop) == 20
    for robot in pop:
        nominal = load_family(robot.family)
        for j, jn in zip(robot.joints, nominal.joints, strict=True):
            assert abs(j.zero_offset) <= 0.03 + 1e-12
            # length factor within ±10 % plus at most 5 mm offset per component
            assert np.all(np.abs(np.array(j.xyz)) <= np.abs(np.array(jn.xyz)) * 1.1 + 0.005 + 1e-12)
        for ln, lnn in zip(robot.links, nominal.links, strict=True):
            assert 0.8 * lnn.mass - 1e-12 <= ln.mass <= 1.2 * lnn.mass + 1e-12
    homes = [flange_position(r, r.home_q) for r in pop.family("panda")]
    assert min(np.linalg.norm(a - b) for i, a in enumerate(homes) for b in homes[i + 1:]) > 1e-3


def test_save_load_round_trip(tmp_path, small_config):
    pop = P.generate(small_config)
    path = P.save(pop, tmp_path / "pop.json")
    loaded = P.load(path)
    assert loaded.robots == pop.robots and loaded.ids == pop.ids
    assert loaded.select(["yumi-002"]).robots[0] == pop.get("yumi-002")
    assert not list(tmp_path.glob(".*tmp")), "atomic save left a temporary file"


@pytest.mark.parametrize("content, field", [
    ("families: [panda, kuka]\n", "families[1]"),
    ("robots_per_family: 0\n", "robots_per_family"),
    ("perturbation:\n  link_mass: {distribution: uniform, range: [1.2, 0.8]}\n", "perturbation.link_mass.range"),
    ("perturbation:\n  link_mass: {distribution: uniform, range: [-0.5, 1.0]}\n", "perturbation.link_mass"),
    ("perturbation:\n  link_girth: {distribution: uniform, range: [0.9, 1.1]}\n", "perturbation.link_girth"),
    ("seed: [1, 2\n", None),
])
def test_bad_config_names_file_and_field(tmp_path, content, field):
    path = tmp_path / "population.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        P.load_config(path)
    assert str(path) in str(info.value)
    if field:
        assert info.value.field == field


def test_corrupt_population_file(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="invalid JSON"):
        P.load(bad)
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ConfigError, match="not a population file"):
        P.load(bad)
    with pytest.raises(ConfigError, match="not found"):
        P.load(tmp_path / "missing.json")


def test_unknown_robot_id(small_config):
    with pytest.raises(KeyError, match="no robot 'panda-999'"):
        P.generate(small_config).get("panda-999")
