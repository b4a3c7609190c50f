"""docs/samples.md quotes its measured figures from the stored results (docs/benchmarks/samples/):
the tables between the markers are exactly what `tables()` renders from the JSON files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "samples.md"
RESULTS = ROOT / "docs" / "benchmarks" / "samples"
NAMES = {"suspects": "the run's suspect list (this rule, during training)",
         "loss": "loss under the final model (an extra pass)",
         "signed_margin_final": "signed margin under the final model (an extra pass)",
         "lowest_mms_final": "lowest MMS under the final model"}


def suspects_table(r: dict[str, Any]) -> str:
    lines = [f"MNIST, {r['label_noise']:.0%} of the {r['num_train']:,} training labels flipped "
             f"({r['flipped']:,}), selector {r['selector']}, {r['epochs']:g} epoch(s) ({r['steps']} steps), "
             f"seed {r['seed']}; test accuracy {r['test_accuracy']:.4f}. Chance precision = "
             f"{r['chance']:.2f}.", "",
             "| ranking | precision@100 | precision@500 |", "|---|---|---|"]
    for key, name in NAMES.items():
        row = r["results"][key]
        lines.append(f"| {name} | {row['precision@100']:.2f} | {row['precision@500']:.2f} |")
    lines += ["", f"Reproduce: `{r['command']}` (writes `docs/benchmarks/samples/suspects.json`)."]
    return "\n".join(lines)


def overhead_table(r: dict[str, Any]) -> str:
    e, t, w = r["end_to_end"], r["tracker"], r["writes_per_10k_steps"]
    return "\n".join([
        f"MNIST, selector {r['selector']} (B={r['candidates']}, b={r['batch_size']}), "
        f"samples_every={r['samples_every']}, samples_k={r['samples_k']}:", "",
        "| measure | value |", "|---|---|",
        f"| training wall-clock, tracking on / off (median of {len(e['ratio_on_off'])} ABAB repeats) "
        f"| {e['median_ratio']:.3f} |",
        f"| tracker's own work per step / a step | {t['share_of_step']:.2%} |",
        f"| snapshot rows per 10k steps | {w['snapshot_rows']} |",
        f"| snapshot row JSON per 10k steps | {w['snapshot_row_json_bytes'] / 1e6:.1f} MB |",
        f"| snapshot events on the wire per 10k steps | {w['snapshot_json_bytes'] / 1e6:.1f} MB |",
        f"| per-sample rows (in place) | at most {w['per_sample_rows_at_most']:,} |", "",
        f"Reproduce: `{r['command']}` (writes `docs/benchmarks/samples/overhead.json`)."])


def tables() -> dict[str, str]:
    out = {}
    for marker, name, render in (("suspects-table", "suspects.json", suspects_table),
                                 ("overhead-table", "overhead.json", overhead_table)):
        path = RESULTS / name
        if path.exists():
            out[marker] = render(json.loads(path.read_text()))
    return out


def test_results_exist() -> None:
    assert set(tables()) == {"suspects-table", "overhead-table"}


def test_doc_quotes_the_stored_results() -> None:
    text = DOC.read_text()
    for marker, table in tables().items():
        found = re.search(f"<!-- {marker} -->\n(.*?)\n<!-- /{marker} -->", text, flags=re.S)
        assert found, marker
        assert found.group(1).strip() == table.strip(), marker


if __name__ == "__main__":  # rewrite the doc's tables from the stored results
    text = DOC.read_text()
    for marker, table in tables().items():
        text = re.sub(f"<!-- {marker} -->\n.*?<!-- /{marker} -->",
                      lambda _: f"<!-- {marker} -->\n{table}\n<!-- /{marker} -->", text, flags=re.S)
    DOC.write_text(text)
