"""GET /api/runs/{id}/export?format=csv|json|parquet: a run's data as a file download.

json is structured (run, scalars, histograms with their edges, selection). csv and parquet hold one
tidy table, one row per value, so spreadsheets and dataframes read it directly:

    kind       key                  step ... value   index  low   high   label
    scalar     val/accuracy          100 ... 0.93
    histogram  candidates            100 ... 17      3      0.1   0.2
    quantile   candidates/p25        100 ... 0.41
    selection  selected              100 ... 9       7                   7
    sample     selected                  ... 12      4711                3
    lowest     mms                   100 ... 0.012   4711                3

json also holds `samples`: every sample snapshot (`snapshots`, as stored: the k lowest-margin samples
and the selection counts since the previous one) and every per-sample record (`records`). In csv
and parquet, each per-sample record gives `sample` rows (key selected, misclassified, flipped and,
for suspects, suspect_score; index = the dataset index, label = its class) and each snapshot's
lowest-margin samples `lowest` rows (key mms, at the snapshot's step).

Export is complete (no downsampling): every scalar, histogram and selection row of the run up to
its `last_seq` when the request came. It is streamed, never built in memory: rows are written as
the store reads them in chunks (`iter_scalars`, ...), csv and json as text pieces, parquet one row
group at a time, so a run of millions of rows costs a bounded amount of memory. json's histograms
and selection are columnar (as GET returns them): each column is one more pass over those rows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, get_type_hints

from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse

from marginscope.backend.deps import StoreDep
from marginscope.backend.extras import MissingExtra, require
from marginscope.backend.schemas import Message, errors, run_json
from marginscope.backend.store import AbstractStore, Run
from marginscope.backend.store.db import json_safe
from marginscope.engine.events import QUANTILE_KEYS, Counters

router = APIRouter(prefix="/api/runs", tags=["export"], responses=errors(404))

# the tidy table's columns and their types: what the value is, when (every counter), the value
COLUMN_TYPES: dict[str, type] = {"kind": str, "key": str, **get_type_hints(Counters), "value": float,
                                 "index": int, "low": float, "high": float, "label": str}
COLUMNS = tuple(COLUMN_TYPES)
CHUNK_BYTES = 1 << 16  # the size of the pieces handed to the server
ROW_GROUP = 32_768  # parquet rows per row group


class ExportChanged(RuntimeError):
    """A pass over a run's rows found a different number of them (a resume deleted rows mid-export):
    the download is aborted rather than finished inconsistent."""


def _dump(value: Any) -> str:
    return json.dumps(json_safe(value), allow_nan=False)


def _json_list(values: Iterable[Any]) -> Iterator[str]:
    yield "["
    for i, value in enumerate(values):
        yield (", " if i else "") + _dump(value)
    yield "]"


def _json_columns(fields: list[tuple[str, Callable[[], Iterator[str]]]]) -> Iterator[str]:
    """A JSON object written field by field; each field's text comes from its own generator."""
    yield "{"
    for i, (name, write) in enumerate(fields):
        yield (", " if i else "") + _dump(name) + ": "
        yield from write()
    yield "}"


def _columnar(rows: Callable[[], Iterator[Any]], fields: list[tuple[str, Any]]) -> Iterator[str]:
    """A series as GET returns it ({"steps": [...], ...}): a constant, a column (one pass over
    `rows()` with a getter), or a dict of columns; every pass must see as many rows as the first."""
    counted: list[int] = []

    def column(get: Callable[[Any], Any]) -> Iterator[str]:
        n = 0

        def values() -> Iterator[Any]:
            nonlocal n
            for row in rows():
                n += 1
                yield get(row)
        yield from _json_list(values())
        counted.append(n)
        if counted[0] != n:
            raise ExportChanged("rows changed during the export; download it again")

    def write(spec: Any) -> Callable[[], Iterator[str]]:
        if callable(spec):
            return lambda: column(spec)
        if isinstance(spec, dict):
            return lambda: _json_columns([(k, write(v)) for k, v in spec.items()])
        return lambda: iter([_dump(spec)])
    return _json_columns([(name, write(spec)) for name, spec in fields])


def json_pieces(store: AbstractStore, run: Run) -> Iterator[str]:
    """Everything stored for a run as one JSON document, in pieces (the same bytes as
    `json.dumps(json_safe(document))` of the whole)."""
    until = run.last_seq

    def scalars() -> Iterator[str]:
        return _json_list({k: v for k, v in vars(r).items() if k != "seq"}
                          for r in store.iter_scalars(run.id, until_seq=until))

    def histograms(pop: str, edges: list[float]) -> Callable[[], Iterator[str]]:
        def rows() -> Iterator[Any]:
            return store.iter_histograms(run.id, pop, until_seq=until)
        return lambda: _columnar(rows, [
            ("edges", edges), ("population", pop), ("steps", lambda r: r.step),
            ("epochs", lambda r: r.epoch), ("wall_time", lambda r: r.wall_time),
            ("counts", lambda r: r.counts),
            ("quantiles", {q: (lambda r, q=q: r.quantiles.get(q, float("nan"))) for q in QUANTILE_KEYS}),
            ("thresholds", lambda r: r.threshold)])

    def selection() -> Iterator[str]:
        return _columnar(lambda: store.iter_selection(run.id, until_seq=until), [
            ("steps", lambda r: r.step), ("candidate_counts", lambda r: r.candidate_counts),
            ("selected_counts", lambda r: r.selected_counts),
            ("misclassified_share", lambda r: r.misclassified_share),
            ("class_names", run.class_names)])

    def samples() -> Iterator[str]:
        return _json_columns([
            ("snapshots", lambda: _json_list(store.iter_sample_snapshots(run.id, until_seq=until))),
            ("records", lambda: _json_list(vars(r) for r in store.iter_sample_records(run.id)))])

    edges = store.get_edges(run.id)
    return _json_columns([
        ("run", lambda: iter([_dump(run_json(run))])),
        ("scalars", scalars),
        ("histograms", lambda: _json_columns([(pop, histograms(pop, e)) for pop, e in edges.items()])),
        ("selection", selection),
        ("samples", samples)])


def tidy_rows(store: AbstractStore, run: Run) -> Iterator[dict[str, Any]]:
    """The run flattened into one row per value (columns: COLUMNS), as the store reads them."""
    until, empty = run.last_seq, dict.fromkeys(COLUMNS)
    for s in store.iter_scalars(run.id, until_seq=until):
        yield {**empty, "kind": "scalar", **{k: v for k, v in vars(s).items() if k != "seq"}}
    for pop, edges in store.get_edges(run.id).items():
        for h in store.iter_histograms(run.id, pop, until_seq=until):
            when = {"step": h.step, "epoch": h.epoch, "wall_time": h.wall_time}
            for b, count in enumerate(h.counts):
                yield {**empty, **when, "kind": "histogram", "key": pop, "value": count,
                       "index": b, "low": edges[b], "high": edges[b + 1]}
            for q in QUANTILE_KEYS:
                yield {**empty, **when, "kind": "quantile", "key": f"{pop}/{q}",
                       "value": h.quantiles.get(q, float("nan"))}
    names = run.class_names
    for sel in store.iter_selection(run.id, until_seq=until):
        for pop, counts in (("candidates", sel.candidate_counts), ("selected", sel.selected_counts)):
            for c, count in enumerate(counts):
                yield {**empty, "kind": "selection", "key": pop, "step": sel.step, "value": count,
                       "index": c, "label": names[c] if c < len(names) else str(c)}
    yield from _sample_rows(store, run, empty)


def _sample_rows(store: AbstractStore, run: Run, empty: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Tidy rows of the run's samples: its per-sample records, then each snapshot's lowest."""
    names = run.class_names

    def name(label: int | None) -> str | None:
        return None if label is None else (names[label] if 0 <= label < len(names) else str(label))
    for r in store.iter_sample_records(run.id):
        values = {"selected": r.selected, "misclassified": r.misclassified, "flipped": int(r.flipped)}
        if r.suspect_score is not None:
            values["suspect_score"] = r.suspect_score
        for key, value in values.items():
            yield {**empty, "kind": "sample", "key": key, "value": value, "index": r.index,
                   "label": name(r.label)}
    for snap in store.iter_sample_snapshots(run.id, until_seq=run.last_seq):
        lowest = snap["lowest"]
        for index, label, mms in zip(lowest["index"], lowest["label"], lowest["mms"]):
            yield {**empty, "kind": "lowest", "key": "mms", "step": snap["step"],
                   "epoch": snap["epoch"], "value": mms, "index": index, "label": name(label)}


def csv_chunks(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
        if out.tell() >= CHUNK_BYTES:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode()


def text_chunks(pieces: Iterable[str]) -> Iterator[bytes]:
    """Small text pieces joined into chunks of about CHUNK_BYTES (each chunk is one hop to the
    server's thread pool)."""
    buffer: list[str] = []
    size = 0
    for piece in pieces:
        buffer.append(piece)
        size += len(piece)
        if size >= CHUNK_BYTES:
            yield "".join(buffer).encode()
            buffer, size = [], 0
    yield "".join(buffer).encode()


class _Spool(io.RawIOBase):
    """A write-only file that keeps what was written until `take()`: parquet's output, handed on
    one row group at a time."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def parquet_chunks(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    pa = require("pyarrow", "parquet", "exporting as Parquet")
    pq = require("pyarrow.parquet", "parquet", "exporting as Parquet")

    arrow = {int: pa.int64(), float: pa.float64(), str: pa.string()}
    schema = pa.schema([(name, arrow[kind]) for name, kind in COLUMN_TYPES.items()])
    spool = _Spool()
    with pq.ParquetWriter(spool, schema) as writer:
        group: dict[str, list[Any]] = {c: [] for c in COLUMNS}
        for n, row in enumerate(rows, 1):
            for c in COLUMNS:
                group[c].append(row[c])
            if n % ROW_GROUP == 0:
                writer.write_table(pa.Table.from_pydict(group, schema=schema))
                group = {c: [] for c in COLUMNS}
                yield spool.take()
        if group["kind"]:
            writer.write_table(pa.Table.from_pydict(group, schema=schema))
    yield spool.take()


MEDIA = {"csv": "text/csv", "json": "application/json", "parquet": "application/vnd.apache.parquet"}
Format = Literal["csv", "json", "parquet"]


def export_chunks(store: AbstractStore, run: Run, format: Format) -> Iterator[bytes]:
    """The export file of `run`, in chunks (the download and `marginscope runs export` alike).
    Raises MissingExtra at once (not at the first chunk) when Parquet's extra is not installed."""
    if format == "parquet":
        require("pyarrow.parquet", "parquet", "exporting as Parquet")
    if format == "json":
        return text_chunks(json_pieces(store, run))
    if format == "csv":
        return csv_chunks(tidy_rows(store, run))
    return parquet_chunks(tidy_rows(store, run))


@router.get("/{run_id}/export", response_class=StreamingResponse,
            responses={200: {"content": {m: {} for m in MEDIA.values()}}, **errors(404),
                       400: {"model": Message, "description": "format=parquet on a server installed "
                             "without the 'parquet' extra."}})
def export_run(run_id: int, store: StoreDep, format: Format = "csv") -> StreamingResponse:
    """Download a run's scalars, histograms and selection counts."""
    run = store.get_run(run_id)  # 404 before the download starts
    filename = f"run-{run_id}.{format}"
    try:
        chunks = export_chunks(store, run, format)
    except MissingExtra as exc:  # the server's installation, not the request, lacks it: say both
        raise HTTPException(400, detail=f"{exc}; or ask for format=csv or format=json") from None
    return StreamingResponse(chunks, media_type=MEDIA[format],
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})
