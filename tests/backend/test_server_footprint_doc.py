"""docs/server.md's start-up and memory figures are the stored measurements': the table between its
markers is what scripts/server_footprint.py draws from docs/benchmarks/server/footprint_before.json
and footprint.json, and what the page says of the goals is what the figures say."""

from __future__ import annotations

import json
import re
from pathlib import Path

from doc_sections import load_script, marked_block

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "server.md"
RESULTS = ROOT / "docs" / "benchmarks" / "server"


def _results() -> tuple[dict, dict]:  # type: ignore[type-arg]
    return (json.loads((RESULTS / "footprint_before.json").read_text()),
            json.loads((RESULTS / "footprint.json").read_text()))


def test_the_server_doc_shows_the_stored_figures() -> None:
    before, after = _results()
    script = load_script(ROOT / "scripts" / "server_footprint.py")
    assert marked_block(DOC, "server footprint") == script.render(before, after)
    assert before["torch_loaded"] and not after["torch_loaded"]
    assert before["machine"]["bytecode_cache"] == after["machine"]["bytecode_cache"]  # measured alike


def test_the_goals_are_reported_as_the_figures_say() -> None:
    _, after = _results()
    text = DOC.read_text()
    memory_met = after["rss_mb"]["median"] * 2**20 <= 150e6
    start_met = after["start_s"]["median"] <= 1.0
    assert f"at most 150 MB idle: {'met' if memory_met else 'missed'}" in text
    assert f"at most 1 s to the first answer: {'met' if start_met else 'missed'}" in text


def test_the_stored_results_name_no_machine_path() -> None:
    for path in RESULTS.glob("*.json"):
        assert re.search(r'"/[^"]*"|[A-Za-z]:\\\\', path.read_text()) is None, path.name
