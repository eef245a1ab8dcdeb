"""``mtrl-robot reaching sweep``: every combination of the grids trained, one table; bad grids refused first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtrl_robot.cli.main import main
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.learning.reaching.checkpoint import load
from mtrl_robot.learning.reaching.sweep import grid_points

TINY = Path(__file__).parent / "data" / "tiny_preset.yaml"
HELD_OUT = ["data.held_out_per_family=1", "data.robots_per_family=4", "adapt.k=2"]  # a held-out robot to measure


def test_a_sweep_trains_every_combination_and_tabulates_them(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["reaching", "sweep", str(TINY), "-o", str(out), "--grid", "meta.inner_lr=0.003,0.03",
                 "--grid", "meta.inner_steps=1,2", *(a for o in HELD_OUT for a in ("--set", o)),
                 "--set", "compute.workers=2"]) == 0
    results = json.loads((out / "sweep.json").read_text())
    assert [run["overrides"] for run in results["runs"]] == [
        ["meta.inner_lr=0.003", "meta.inner_steps=1"], ["meta.inner_lr=0.003", "meta.inner_steps=2"],
        ["meta.inner_lr=0.03", "meta.inner_steps=1"], ["meta.inner_lr=0.03", "meta.inner_steps=2"]]
    for run in results["runs"]:
        preset = load(out / run["run"] / "checkpoints" / "panda.pt").preset
        assert (preset.meta.inner_lr, preset.meta.inner_steps) == tuple(
            float(o.partition("=")[2]) for o in run["overrides"])
        assert run["held_out"]["panda"]["maml"]["n"] > 0
    table = (out / "sweep.md").read_text()
    assert table in capsys.readouterr().out
    assert len([line for line in table.splitlines() if line.startswith("| 00")]) == 4


@pytest.mark.parametrize("grids, field, problem", [
    (["meta.inner_lr"], "meta.inner_lr", "a grid reads field=value1,value2"),
    (["meta.inner_lr=0.1,"], "meta.inner_lr", "a grid reads field=value1,value2"),
    (["compute.workers=1,2"], "compute.workers", "changes no result"),
    (["meta.inner_lr=1", "meta.inner_lr=2"], "meta.inner_lr", "two grids"),
])
def test_a_bad_grid_is_named(grids, field, problem):
    with pytest.raises(ConfigError) as caught:
        grid_points(grids)
    assert caught.value.field == field and problem in caught.value.problem


def test_brackets_keep_their_commas_and_every_point_is_checked_before_a_run(tmp_path, capsys):
    assert grid_points(["data.families=[panda,gen3],[yumi]"]) == [["data.families=[panda,gen3]"],
                                                                   ["data.families=[yumi]"]]
    out = tmp_path / "sweep"
    assert main(["reaching", "sweep", str(TINY), "-o", str(out), "--grid", "meta.inner_steps=1,-1"]) == 2
    assert "meta.inner_steps: must be >= 0, got -1" in capsys.readouterr().err
    assert not out.exists()
