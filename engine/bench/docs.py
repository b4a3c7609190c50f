"""The generated blocks of the documentation: every benchmark table in docs/benchmarks.md and the
README is written here from a stored ``results.json``, never typed.

A block is delimited in the Markdown by

    <!-- bench:<folder>:<table> -->
    ...generated...
    <!-- /bench -->

where ``<folder>`` is a results folder under docs/benchmarks/ (``full``, ``short``, ``long``,
``noise`` ...) and ``<table>`` one of `TABLES`. `render` rewrites every block from its JSON (the
table statistics are rebuilt from the raw runs, so a stored ``table`` cannot drift from them);
``marginscope bench --docs`` writes the files, and tests/test_docs_numbers.py fails when a file
differs from what its JSON gives.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from marginscope.engine.bench.report import (
    budget_markdown, endpoints_markdown, frontier_markdown, noise_markdown, phases_markdown, setting_lines,
    summary_markdown, sustained_markdown, table_markdown,
)
from marginscope.engine.bench.results import read_results
from marginscope.engine.bench.stats import build_table

BLOCK = re.compile(r"(<!-- bench:(?P<folder>[\w.-]+):(?P<table>[\w-]+) -->\n)(?P<body>.*?)(<!-- /bench -->)", re.S)

NOT_RUN = ("(not run yet: `marginscope bench --suite {folder} --out docs/benchmarks/{folder}`, then "
           "`marginscope bench --docs`)")

TABLES: dict[str, Callable[[dict[str, Any]], str]] = {
    "setting": lambda r: "\n".join(setting_lines(r)),
    "summary": summary_markdown,
    "targets": table_markdown,
    "budget-wall": lambda r: budget_markdown(r, "wall_time"),
    "budget-cpu": lambda r: budget_markdown(r, "cpu_time"),
    "phases": phases_markdown,
    "noise": noise_markdown,
    # protocol v2 (results whose settings say protocol: 2)
    "endpoints": endpoints_markdown,
    "frontier": frontier_markdown,
    "sustained": sustained_markdown,
    "micro": lambda r: _micro(r),  # a micro-benchmark folder (micro.json)
}


def _micro(results: dict[str, Any]) -> str:
    from marginscope.engine.bench.micro import micro_markdown

    text = micro_markdown(results, results.get("command"))
    return text.split("\n", 2)[2] if text.startswith("## ") else text  # the page gives its own heading


def load_results(folder: Path) -> dict[str, Any]:
    """A stored suite with its tables rebuilt from the raw runs (or a micro-benchmark's micro.json).
    Any format of results.json: a protocol v1 file (evaluations as a list of dicts, the stored
    docs/benchmarks/*/results.json) builds exactly the tables it built before format 2."""
    if not (folder / "results.json").exists() and (folder / "micro.json").exists():
        return json.loads((folder / "micro.json").read_text())
    results = read_results(folder / "results.json")  # format 1 (list of dicts) or 2 (columns)
    results["table"] = build_table(results)
    return results


def render(text: str, root: Path) -> str:
    """`text` with every generated block rewritten from ``root/<folder>/results.json``."""
    cache: dict[str, dict[str, Any]] = {}

    def block(match: re.Match[str]) -> str:
        folder, table = match["folder"], match["table"]
        if table not in TABLES:
            raise ValueError(f"unknown generated table {table!r}; choose one of {', '.join(TABLES)}")
        if not any((root / folder / name).exists() for name in ("results.json", "micro.json")):
            # a suite defined but not run yet, or still running (only its results.partial.json)
            return f"{match.group(1)}{NOT_RUN.format(folder=folder)}\n{match.group(5)}"
        if folder not in cache:
            cache[folder] = load_results(root / folder)
        return f"{match.group(1)}{TABLES[table](cache[folder])}\n{match.group(5)}"

    return BLOCK.sub(block, text)


def update(paths: list[Path], root: Path) -> list[Path]:
    """Rewrite the generated blocks of `paths`; returns the files that changed."""
    changed = []
    for path in paths:
        text = path.read_text()
        new = render(text, root)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed
