"""The DDP figures in docs/scaling.md are the ones stored in docs/benchmarks/scaling/ddp.json
(written by scripts/ddp_bench.py), and the stored file names no path of the machine it ran on."""

from __future__ import annotations

import json
import re
from pathlib import Path

from doc_sections import section

ROOT = Path(__file__).resolve().parents[2]
STORED = ROOT / "docs" / "benchmarks" / "scaling" / "ddp.json"
HEADING = "## Multi-process training (DDP)"


def _section() -> str:
    return section((ROOT / "docs" / "scaling.md").read_text(), HEADING)


def test_the_doc_table_is_the_stored_result() -> None:
    stored = json.loads(STORED.read_text())
    rows = re.findall(r"^\| (\d+) process(?:es)? × (\d+) thread\(s\) \| ([\d.]+) \| ([\d.]+)× \|$",
                      _section(), flags=re.M)
    assert len(rows) == len(stored["median_samples_per_s"]) == 3
    for (nproc, threads, rate, _), want in zip(rows, stored["median_samples_per_s"]):
        assert (int(nproc), int(threads), float(rate)) == (
            want["nproc"], want["threads_per_process"], want["samples_per_s"])
    ratios = {(int(n), int(t)): float(r) for n, t, _, r in rows}
    assert ratios[(2, 1)] == stored["ratio"]  # against one process with the same cores
    base = stored["median_samples_per_s"][0]["samples_per_s"]
    for (_, _, rate, ratio) in rows:  # each row against the first (rounded figures: ±0.01)
        assert abs(float(ratio) - float(rate) / base) <= 0.01
    assert f"{stored['ratio']}×" in _section()
    assert f"{stored['ratio_vs_one_thread']}×" in _section()


def test_the_stored_result_says_how_it_was_made_and_no_machine_path() -> None:
    stored = json.loads(STORED.read_text())
    assert stored["command"] in _section()
    assert stored["machine"]["cpu_cores"] >= 1 and stored["repeats"] * 3 == len(stored["runs"])
    text = STORED.read_text()
    assert not re.search(r"/(home|tmp|work|root|Users)/", text)
