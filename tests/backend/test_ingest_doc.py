"""docs/scaling.md's remote-run figures are the stored measurement's: the table between its
markers is what scripts/ingest_bench.py draws from docs/benchmarks/scaling/ingest.json, and
the stored run lost no event."""

from __future__ import annotations

import json
import re
from pathlib import Path

from doc_sections import load_script, marked_block

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "scaling.md"
RESULTS = ROOT / "docs" / "benchmarks" / "scaling" / "ingest.json"
BEFORE = ROOT / "docs" / "benchmarks" / "scaling" / "ingest_before.json"  # stored before fast ingest


def _bench():  # type: ignore[no-untyped-def]
    return load_script(ROOT / "scripts" / "ingest_bench.py")


def test_the_scaling_doc_shows_the_stored_ingest_figures() -> None:
    results = json.loads(RESULTS.read_text())
    assert marked_block(DOC, "ingest figures") == _bench().render(results, json.loads(BEFORE.read_text()))
    # before and after were measured in the same run, on every database
    assert results["before_ref"] and results["throughput"]["before"] and results["throughput"]["after"]
    assert all(results["concurrent"][db][side] for db in ("sqlite", "postgresql") for side in ("before", "after"))
    assert results["restart"]["lost"] == 0 and results["restart"]["duplicated"] == 0
    assert "2-core" in results["machine"]["note"] and "2-core machine under load" in DOC.read_text()


def test_the_stored_results_name_no_machine_path() -> None:
    for text in (RESULTS.read_text(), BEFORE.read_text()):
        assert re.search(r'"/[^"]*"|[A-Za-z]:\\\\', text) is None  # no absolute path in any value
