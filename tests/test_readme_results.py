"""The README quotes results, it does not type them: every quoted number is in the results file it cites, and every
file the README links exists.

Convention: a paragraph or table of the README that quotes results is preceded by a line

    <!-- results: docs/results/<file> [docs/results/<file> ...] -->

and the block is the lines after it up to the next blank line. Every decimal number in the block (``0.58``,
``1.28``; whole numbers such as K = 5 are not checked) must appear as a number in one of the cited files, which
``mtrl-robot results`` regenerates.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!--\s*results:\s*(?P<files>[^>]*?)\s*-->\s*$")
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.]*\d)")
LINK = re.compile(r"\]\(([^)\s]+)\)")
RESULTS_PATH = re.compile(r"docs/results/[\w./-]+\w")


def quoted_blocks(text: str) -> list[tuple[int, list[str], str]]:
    """(line number of the marker, cited files, the block's text) for every results marker."""
    lines, blocks = text.splitlines(), []
    for number, line in enumerate(lines):
        found = MARKER.match(line.strip())
        if found:
            block = []
            for following in lines[number + 1:]:
                if not following.strip():
                    break
                block.append(following)
            blocks.append((number + 1, found["files"].split(), "\n".join(block)))
    return blocks


def decimals(text: str) -> list[str]:
    return DECIMAL.findall(text)


def mismatches(text: str, root: Path) -> list[str]:
    """Every quoted number that is not in the file(s) its block cites, and every cited file that is missing."""
    problems = []
    for line, files, block in quoted_blocks(text):
        if not block:
            problems.append(f"README line {line}: a results marker with no block under it")
        missing = [f for f in files if not (root / f).is_file()]
        if missing or not files:
            problems.append(f"README line {line}: cited results file missing: {missing or 'none named'}")
            continue
        found = {n for f in files for n in decimals((root / f).read_text())}
        problems += [f"README line {line}: {n} is not in {' or '.join(files)}" for n in decimals(block)
                     if n not in found]
    return problems


def broken_links(text: str, root: Path) -> list[str]:
    """Relative links and ``docs/results/...`` paths of the README that name no existing file."""
    targets = {t.split("#")[0] for t in LINK.findall(text) if not re.match(r"[a-z]+:|#", t)}
    targets |= set(RESULTS_PATH.findall(text))
    return sorted(t for t in targets if t and not (root / t).exists())


def test_the_checker_catches_a_typed_number_and_a_missing_file(tmp_path):
    (tmp_path / "docs/results").mkdir(parents=True)
    (tmp_path / "docs/results/t.md").write_text("| MAML | 0.58 [0.54, 0.61] |\n")
    good = "<!-- results: docs/results/t.md -->\nMAML reaches **0.58 [0.54, 0.61]** cm at K = 5.\n\n15.6 min\n"
    assert mismatches(good, tmp_path) == []  # 15.6 is outside the block: not checked
    typed = good.replace("0.61", "0.62")
    assert mismatches(typed, tmp_path) == ["README line 1: 0.62 is not in docs/results/t.md"]
    assert "cited results file missing" in mismatches(good.replace("t.md", "gone.md"), tmp_path)[0]
    assert decimals("v1.2.3 and 10.50, 3.6× and x0.1") == ["10.50", "3.6"]
    assert broken_links("see [a](docs/results/t.md), [b](docs/x.md), [c](https://e.org) and "
                        "`docs/results/p.png`", tmp_path) == ["docs/results/p.png", "docs/x.md"]


@pytest.fixture(scope="module")
def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_readme_quotes_results_through_markers(readme):
    assert quoted_blocks(readme), "the README quotes results without a <!-- results: docs/results/... --> marker"


def test_every_number_the_readme_quotes_is_in_its_results_file(readme):
    assert mismatches(readme, ROOT) == []


def test_every_file_the_readme_links_exists(readme):
    assert broken_links(readme, ROOT) == []
