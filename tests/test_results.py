"""``mtrl-robot results``: commands run in order, finished products reused, outputs copied, failures in one line."""

from __future__ import annotations

import json

import pytest

from mtrl_robot.cli.main import main
from mtrl_robot.tools.results import RESULTS, Result, Step, index, regenerate


def population_result(folder: str) -> Result:
    """A real, cheap result: a population file made by the command line, copied into the results folder."""
    step = Step(("population", "generate", "--per-family", "1", "--families", "panda", "-o", f"{folder}/pop.json"),
                f"{folder}/pop.json", folder)
    return Result("population", "a tiny population", (step,), {"population.json": f"{folder}/pop.json"})


def test_results_run_reuse_and_redo(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    calls = []

    def run(argv):
        calls.append(list(argv))
        return main(list(argv))

    result = population_result("runs/pop")
    written = regenerate(run, results_dir=tmp_path / "docs", results=[result])
    assert written == [tmp_path / "docs" / "population.json"] and len(calls) == 1
    assert json.loads(written[0].read_text()) == json.loads((tmp_path / "runs/pop/pop.json").read_text())
    assert "runs/pop/pop.json" in (tmp_path / "docs" / "index.md").read_text()

    regenerate(run, results_dir=tmp_path / "docs", results=[result])  # the product is there: reused
    assert len(calls) == 1 and "reused runs/pop/pop.json" in capsys.readouterr().out

    regenerate(run, redo=True, results_dir=tmp_path / "docs", results=[result])  # redone, the old run kept aside
    assert len(calls) == 2 and len(list((tmp_path / "runs").glob("pop.replaced-*/pop.json"))) == 1


def test_a_failing_command_or_an_unknown_name_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    broken = Result("broken", "a command that fails", (Step(("show", "kuka"), "never"),), {"x": "never"})
    with pytest.raises(ValueError, match="result broken: `mtrl-robot show kuka` failed"):
        regenerate(main, results_dir=tmp_path / "docs", results=[broken])
    assert not (tmp_path / "docs").exists()  # nothing half-written
    with pytest.raises(ValueError, match="unknown result 'nope'"):
        regenerate(main, ["nope"], results_dir=tmp_path / "docs")


def test_every_readme_result_is_registered_with_commands_and_files():
    names = [r.name for r in RESULTS]
    assert len(set(names)) == len(names)
    for result in RESULTS:
        assert result.steps and result.outputs
        for step in result.steps:
            with pytest.raises(SystemExit) as done:  # every step is a valid command line
                main([*step.argv, "--help"])
            assert done.value.code == 0
    assert all(f"## {name}" in index() for name in names)
