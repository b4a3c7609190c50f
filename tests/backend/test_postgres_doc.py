"""docs/scaling.md's PostgreSQL figures are the stored measurement's: the table between its markers
is what scripts/postgres_suite_time.py draws from docs/benchmarks/scaling/postgres.json, and the
measured run passed every test of both halves."""

from __future__ import annotations

import json
from pathlib import Path

from doc_sections import load_script, marked_block

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "scaling.md"
RESULTS = ROOT / "docs" / "benchmarks" / "scaling" / "postgres.json"


def _script():  # type: ignore[no-untyped-def]
    return load_script(ROOT / "scripts" / "postgres_suite_time.py")


def test_the_scaling_doc_shows_the_stored_postgres_timing() -> None:
    results = json.loads(RESULTS.read_text())
    assert marked_block(DOC, "postgres figures") == _script().render(results)
    for half in ("postgres_half", "sqlite_half"):
        assert results[half]["returncode"] == 0 and results[half]["failed"] == 0
        assert results[half]["passed"] > 0
    assert results["postgres_half"]["skipped"] == 0  # the server was there: nothing went missing


def test_the_measured_modules_are_the_ones_that_run_on_both_databases() -> None:
    conftest = load_script(ROOT / "tests" / "conftest.py")
    names = {Path(p).stem for p in _script().BOTH}
    assert names == set(conftest.BOTH_BACKENDS)
    assert _script().API_GLOB.endswith(f"{conftest.BOTH_BACKENDS_PREFIXES[0]}*.py")
