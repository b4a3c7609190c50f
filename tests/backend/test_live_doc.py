"""The live figures of the docs are the stored measurements': docs/scaling.md's step-to-page table
is what scripts/live_latency.py draws from docs/benchmarks/scaling/latency.json, which compares the
code before with this code, measured in one session; every step timed reached its viewer."""

from __future__ import annotations

import json
import re
from pathlib import Path

from doc_sections import load_script, marked_block

ROOT = Path(__file__).resolve().parents[2]
SCALING = ROOT / "docs" / "benchmarks" / "scaling"
LATENCY = SCALING / "latency.json"


def test_the_scaling_doc_shows_the_stored_latency_figures() -> None:
    results = json.loads(LATENCY.read_text())
    script = load_script(ROOT / "scripts" / "live_latency.py")
    assert marked_block(ROOT / "docs" / "scaling.md", "latency figures") == script.render(results)
    for side in ("before", "after"):
        assert results[side], f"latency.json measured no {side} side"
        for repeat in results[side]:
            for run in ("paced", "training"):
                assert repeat[run]["received"] == repeat[run]["steps"], (side, run)
    assert "2-core" in results["machine"]["note"]


def test_the_stored_latency_names_no_machine_path() -> None:
    assert re.search(r'"/[^"]*"|[A-Za-z]:\\\\', LATENCY.read_text()) is None


def test_the_reliability_doc_shows_the_stored_viewer_figures() -> None:
    viewers = SCALING / "viewers.json"
    results = json.loads(viewers.read_text())
    script = load_script(ROOT / "scripts" / "load_figures.py")
    assert marked_block(ROOT / "docs" / "reliability.md", "viewer figures") == script.render(results)
    assert results["before"] and results["after"] and "2-core" in results["machine"]["note"]
    assert re.search(r'"/[^"]*"|[A-Za-z]:\\\\', viewers.read_text()) is None
