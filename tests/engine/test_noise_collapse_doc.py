"""docs/benchmarks.md's collapse table is scripts/noise_collapse.py's render of the stored JSON."""

from __future__ import annotations

import json
from pathlib import Path

from doc_sections import load_script, marked_block

ROOT = Path(__file__).resolve().parents[2]


def test_the_collapse_table_is_drawn_from_its_json() -> None:
    script = load_script(ROOT / "scripts" / "noise_collapse.py")
    results = json.loads((ROOT / "docs" / "benchmarks" / "noise" / "collapse.json").read_text())
    assert marked_block(ROOT / "docs" / "benchmarks.md", "noise-collapse") == script.render(results)
    runs = {r["run"]: r for r in results["runs"]}
    assert set(runs) == {"top-loss", "top-loss → uniform", "hard-negative", "uniform"}
    # what the prose says: top-loss at chance at the switch, the switched run back near uniform
    switch = results["switch_at"]
    at_switch = next(v for v in runs["top-loss"]["validations"] if v["step"] == switch)
    assert at_switch["accuracy"] < 0.15 and at_switch["dead_features"] < 0.5
    assert runs["uniform"]["test_accuracy"] - runs["top-loss → uniform"]["test_accuracy"] < 0.02
    assert runs["top-loss"]["test_accuracy"] < 0.15
