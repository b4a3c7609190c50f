"""Every benchmark number of the README and docs/benchmarks.md comes from a stored result file.

The tables sit between `<!-- bench:<folder>:<table> -->` markers and are generated from
docs/benchmarks/<folder>/results.json (engine/bench/docs.py): a table that differs from what its JSON
gives fails here. Outside those blocks the prose may state the method's own constants (the targets,
budgets, noise levels, the confidence level, the cheap mode's goal) and nothing else: a result
typed into a sentence fails too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from doc_sections import section

from marginscope.engine.bench import BenchSettings, suite_settings
from marginscope.engine.bench.docs import BLOCK, render

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks"
README = ROOT / "README.md"
BENCHMARKS = ROOT / "docs" / "benchmarks.md"
RESULT_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*[%×]")  # "200 × 64" is arithmetic, not a result


def readme_benchmark_section() -> str:
    return section(README.read_text(), "## Benchmarks")


def method_constants() -> set[str]:
    """The numbers a page may state in prose: the method's settings, read from the code."""
    s = BenchSettings()
    allowed = {f"{t:.1%}" for t in s.targets} | {f"{b:.0%}" for b in s.budgets}
    allowed |= {f"{s.plateau_share:.0%}", "95%", "20%", "40%"}  # plateau share, CI level, noise levels
    long = suite_settings("long")
    allowed.add(f"{long.eval_every / long.steps:.0%}")  # the long suite validates every 1% of the run
    allowed |= {"1.00×", "1.5×", "0.67×"}  # the identity ratio; the cheap mode's goal (1 / 1.5)
    return allowed


def prose(text: str) -> str:
    """`text` without its generated blocks and code (commands quote options, not results)."""
    text = BLOCK.sub("", text)
    # a script's table between <!-- name --> markers: its own test ties it to its JSON (doc_sections)
    text = re.sub(r"<!-- ([\w-]+) -->\n.*?\n<!-- /\1 -->", "", text, flags=re.S)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`]*`", "", text)


@pytest.mark.parametrize("path", [BENCHMARKS, README], ids=["benchmarks.md", "README.md"])
def test_generated_tables_match_their_json(path: Path) -> None:
    text = path.read_text()
    assert BLOCK.search(text), f"{path.name} has no generated benchmark table"
    assert render(text, RESULTS) == text, (
        f"{path.name}: a generated table differs from its results.json; run `marginscope bench --docs`")


@pytest.mark.parametrize("name", ["benchmarks.md", "README.md"])
def test_no_result_number_outside_the_generated_tables(name: str) -> None:
    text = BENCHMARKS.read_text() if name == "benchmarks.md" else readme_benchmark_section()
    stray = [m.group(0).replace(" ", "") for m in RESULT_NUMBER.finditer(prose(text))]
    unexplained = sorted(set(stray) - method_constants())
    assert unexplained == [], f"{name}: numbers typed outside a generated table: {unexplained}"


def test_a_drifted_number_fails() -> None:
    """The check above is not vacuous: change one figure of a table and the page no longer renders
    to itself."""
    text = README.read_text()
    block = BLOCK.search(text)
    body = block["body"]
    number = re.search(r"\d+\.\d\d%", body)
    assert number, "the README's generated table shows no accuracy"
    digits = number.group(0)
    changed = digits[:-2] + ("1" if digits[-2] != "1" else "2") + "%"
    drifted = text.replace(body, body.replace(digits, changed, 1))
    assert render(drifted, RESULTS) != drifted
    stray = "The memory mode was 1.23× faster." + text
    assert RESULT_NUMBER.search(prose(stray)).group(0) == "1.23×"
