"""GET /api/runs/{id}/export?format=csv|json|parquet: a run's data as a file download.

json is structured (run, scalars, histograms with their edges, selection). csv and parquet hold one
tidy table, one row per value, so spreadsheets and dataframes read it directly:

    kind       key                  step ... value   index  low   high   label
    scalar     val/accuracy          100 ... 0.93
    histogram  candidates            100 ... 17      3      0.1   0.2
    quantile   candidates/p25        100 ... 0.41
    selection  selected              100 ... 9       7                   7

Export is complete (no downsampling): every scalar, histogram and selection row of the run.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Literal, get_type_hints

from fastapi import APIRouter
from fastapi.responses import Response

from backend.deps import StoreDep
from backend.schemas import errors, run_json
from backend.store import AbstractStore
from backend.store.db import json_safe
from engine.events import Counters

router = APIRouter(prefix="/api/runs", tags=["export"], responses=errors(404))

ALL_ROWS = 10**9
# the tidy table's columns and their types: what the value is, when (every counter), the value
COLUMN_TYPES: dict[str, type] = {"kind": str, "key": str, **get_type_hints(Counters), "value": float,
                                 "index": int, "low": float, "high": float, "label": str}
COLUMNS = tuple(COLUMN_TYPES)


def export_json(store: AbstractStore, run_id: int) -> dict[str, Any]:
    """Everything stored for a run, as plain JSON values."""
    run = store.get_run(run_id)
    return {
        "run": run_json(run),
        "scalars": [{k: v for k, v in vars(r).items() if k != "seq"} for r in store.get_scalars(run_id)],
        "histograms": {pop: vars(store.get_histograms(run_id, pop, max_rows=ALL_ROWS))
                       for pop in store.get_edges(run_id)},
        "selection": vars(store.get_selection(run_id, max_points=ALL_ROWS)),
    }


def tidy_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The json export flattened into one row per value (columns: COLUMNS)."""
    empty = dict.fromkeys(COLUMNS)
    rows = [{**empty, "kind": "scalar", **s} for s in data["scalars"]]
    for pop, h in data["histograms"].items():
        edges = h["edges"]
        for i, step in enumerate(h["steps"]):
            when = {"step": step, "epoch": h["epochs"][i], "wall_time": h["wall_time"][i]}
            for b, count in enumerate(h["counts"][i]):
                rows.append({**empty, **when, "kind": "histogram", "key": pop, "value": count,
                             "index": b, "low": edges[b], "high": edges[b + 1]})
            for q, values in h["quantiles"].items():
                rows.append({**empty, **when, "kind": "quantile", "key": f"{pop}/{q}",
                             "value": values[i]})
    sel = data["selection"]
    names = sel["class_names"]
    for i, step in enumerate(sel["steps"]):
        for pop, counts in (("candidates", sel["candidate_counts"][i]),
                            ("selected", sel["selected_counts"][i])):
            for c, count in enumerate(counts):
                rows.append({**empty, "kind": "selection", "key": pop, "step": step, "value": count,
                             "index": c, "label": names[c] if c < len(names) else str(c)})
    return rows


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {c: [r[c] for r in rows] for c in COLUMNS}


def to_csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def to_parquet(rows: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    arrow = {int: pa.int64(), float: pa.float64(), str: pa.string()}
    schema = pa.schema([(name, arrow[kind]) for name, kind in COLUMN_TYPES.items()])
    table = pa.Table.from_pydict(_columns(rows), schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


MEDIA = {"csv": "text/csv", "json": "application/json", "parquet": "application/vnd.apache.parquet"}


@router.get("/{run_id}/export", response_class=Response,
            responses={200: {"content": {m: {} for m in MEDIA.values()}}})
def export_run(run_id: int, store: StoreDep,
               format: Literal["csv", "json", "parquet"] = "csv") -> Response:
    """Download a run's scalars, histograms and selection counts."""
    data = export_json(store, run_id)
    if format == "json":
        body = json.dumps(json_safe(data), allow_nan=False).encode()
    elif format == "csv":
        body = to_csv(tidy_rows(data))
    else:
        body = to_parquet(tidy_rows(data))
    filename = f"run-{run_id}.{format}"
    return Response(body, media_type=MEDIA[format],
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
