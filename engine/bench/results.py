"""A suite's ``results.json`` on disk, and the one reader of every format it has had.

In memory (what `run_suite` returns, what `stats.build_table` and the report read) a run's
``evaluations`` is a list of dicts, one per validation: the training loop's own record. On disk,
from format 2 on, it is stored **by column**: ``{"step": [...], "accuracy": [...], ...}``, which is
what a reader downloading the file wants (``pandas.DataFrame(run["evaluations"])``) and a third of
the size, because a field's name is written once per run instead of once per validation.

Format 2 (``"format": 2`` at the top of the file):

- ``runs[i]["evaluations"]``: one list per field, all of the same length, in validation order;
- ``epoch`` is not stored: it is ``step / steps_per_epoch`` of the run, a function of ``step``;
- the ``table`` is not stored: every table is rebuilt from the raw runs when the file is read
  (`read_results`), so a stored table could only drift from them;
- the clock columns (`TIME_FIELDS`, seconds) are written to the microsecond (`TIME_DECIMALS`), and
  so are the same clocks in each run's summary (its totals). Every other number (counters, accuracies, losses, the run summaries) is written exactly.
  A clock read to a microsecond is far finer than anything the tables resolve (a tenth of a second,
  two digits of a ratio) and than the run-to-run noise of a timing (milliseconds at the least);
  tests/engine/test_protocol_v2.py renders every table of every stored suite from the rounded
  columns and checks that not one character changes. Unrounded, the short suite's file would be
  about 410 KB, above the 300 KB goal: the six clock columns at 17 significant digits are most of it.

Format 1 (no ``format`` key: every file written before protocol v2, e.g. the stored
docs/benchmarks/*/results.json) holds a list of dicts per run and a stored table; `read_results`
reads it unchanged, so its tables are exactly today's.

``results.partial.json`` (a suite still running) stays in the working form: it lives only until the
suite ends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FORMAT = 2
TIME_FIELDS = ("wall_time", "cpu_time", "score_wall_time", "score_cpu_time", "refresh_wall_time",
               "refresh_cpu_time")
TIME_DECIMALS = 6  # seconds to the microsecond
DERIVED_FIELDS = ("epoch",)  # step / steps_per_epoch: not stored


def is_columnar(evaluations: Any) -> bool:
    return isinstance(evaluations, dict)


def to_columns(evaluations: list[dict[str, Any]], time_decimals: int | None = TIME_DECIMALS) -> dict[str, list]:
    """One run's validations as columns (the fields of the first evaluation, in its order)."""
    if is_columnar(evaluations):
        return evaluations  # type: ignore[return-value]
    fields = list(dict.fromkeys(k for e in evaluations for k in e if k not in DERIVED_FIELDS))
    columns = {}
    for field in fields:
        values = [e.get(field) for e in evaluations]
        if field in TIME_FIELDS and time_decimals is not None:
            values = [None if v is None else round(v, time_decimals) for v in values]
        columns[field] = values
    return columns


def to_rows(columns: dict[str, list] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run's validations as a list of dicts (the working form), whatever form they are in."""
    if not is_columnar(columns):
        return list(columns)  # type: ignore[arg-type]
    lengths = {len(v) for v in columns.values()}  # type: ignore[union-attr]
    if len(lengths) > 1:
        raise ValueError(f"the evaluation columns differ in length: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    return [{k: v[i] for k, v in columns.items() if v[i] is not None} for i in range(n)]  # type: ignore[union-attr]


def to_format2(results: dict[str, Any], time_decimals: int | None = TIME_DECIMALS) -> dict[str, Any]:
    """The on-disk form of `results` (any format): columns, no stored table, a format key."""
    out = {"format": FORMAT, **{k: v for k, v in results.items() if k not in ("table", "format")}}
    out["runs"] = [{**r, "summary": _round_clocks(r.get("summary"), time_decimals),
                    "evaluations": to_columns(r["evaluations"], time_decimals)} for r in results["runs"]]
    return out


def _round_clocks(summary: Any, time_decimals: int | None) -> Any:
    """A run summary with its clocks (totals and phase totals) to the same microsecond as the
    columns: the last validation's time and the run's total then stay equal, as the loop wrote them
    (an equal-budget table compares one with the other)."""
    if not isinstance(summary, dict) or time_decimals is None:
        return summary
    out = {k: (round(v, time_decimals) if k in TIME_FIELDS and isinstance(v, float) else v) for k, v in summary.items()}
    if isinstance(summary.get("phase_times"), dict):
        out["phase_times"] = _round_clocks(summary["phase_times"], time_decimals)
    return out


def from_any_format(data: dict[str, Any]) -> dict[str, Any]:
    """The working form of a results dict read from any format (the stored table dropped: it is
    rebuilt from the runs by whoever needs it)."""
    version = data.get("format", 1)
    if version not in (1, FORMAT):
        raise ValueError(f"results format {version} is newer than this reader (format {FORMAT})")
    out = {k: v for k, v in data.items() if k != "table"}
    out["runs"] = [{**r, "evaluations": to_rows(r["evaluations"])} for r in data["runs"]]
    return out


INLINE_CHARS, INLINE_LIST = 1200, 10  # a part this small, with no list longer than this, is one line


def _small(obj: Any) -> bool:
    def short_lists(o: Any) -> bool:
        if isinstance(o, dict):
            return all(short_lists(v) for v in o.values())
        if isinstance(o, (list, tuple)):
            return len(o) <= INLINE_LIST and all(short_lists(v) for v in o)
        return True
    return short_lists(obj) and len(json.dumps(obj, default=str)) <= INLINE_CHARS


def dumps(obj: Any, indent: int = 1, _level: int = 0) -> str:
    """JSON with objects indented, every list of plain values on one line (a column is one line
    of the file, so it reads and diffs by field) and every small part (a run's summary, the machine)
    on one line too: the file keeps its shape without the size of one value per line."""
    pad, inner = " " * (indent * _level), " " * (indent * (_level + 1))
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        if _level > 0 and _small(obj):
            return json.dumps(obj, separators=(", ", ": "), default=str)
        items = [f"{inner}{json.dumps(str(k))}: {dumps(v, indent, _level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in obj):
            return json.dumps(list(obj), separators=(",", ":"), default=str)
        return "[\n" + ",\n".join(inner + dumps(v, indent, _level + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, default=str)


def write_results(results: dict[str, Any], path: Path) -> int:
    """Write `results` as format 2; returns the file's size in bytes."""
    text = dumps(to_format2(results))
    path.write_text(text)
    return len(text.encode())


def read_results(path: Path) -> dict[str, Any]:
    """A suite's results.json of any format, in the working form (no table: `stats.build_table`)."""
    return from_any_format(json.loads(Path(path).read_text()))
