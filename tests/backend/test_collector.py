"""`marginscope serve`'s garbage collector settings (backend/collector.py) and what the docs say of them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from marginscope.backend.collector import YOUNGEST_THRESHOLD

ROOT = Path(__file__).resolve().parents[2]


def test_tune_freezes_the_startup_heap_and_raises_the_youngest_threshold() -> None:
    # in a process of its own: the settings are the whole process's
    code = ("import gc, json; from marginscope.backend import collector; before = gc.get_threshold(); "
            "collector.tune(); print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]))")
    before, after, frozen = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                                      text=True).stdout)
    assert after == [YOUNGEST_THRESHOLD, *before[1:]] and frozen > 1000


def test_the_scaling_doc_states_the_threshold_and_the_stored_stages_bear_it_out() -> None:
    assert f"every {YOUNGEST_THRESHOLD:,} allocations" in (ROOT / "docs" / "scaling.md").read_text()
    stages = json.loads((ROOT / "docs" / "benchmarks" / "scaling" / "ingest.json").read_text())["stages"]
    default, served = stages["default collector"], stages["serve's collector"]
    # "parsing a batch costing several times what it costs" with the collector tuned
    assert default["ms_per_1000_events"]["parse and check"] > 2 * served["ms_per_1000_events"]["parse and check"]
    assert served["events_per_s"] > default["events_per_s"]
