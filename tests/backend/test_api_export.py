"""GET /api/runs/{id}/export: csv, json and parquet parse back and hold every row; the streamed
export equals the whole-run-in-memory one byte for byte and holds a bounded amount of memory."""

from __future__ import annotations

import csv
import io
import json
import sys
import tracemalloc
from collections.abc import Callable

import pyarrow.parquet as pq
import pytest
from api_helpers import create
from fastapi.testclient import TestClient
from store_events import full_run, histogram, run_started, step_metrics

from marginscope.backend.recording import write_events
from marginscope.backend.routes import export
from marginscope.backend.routes.export import COLUMNS, export_chunks
from marginscope.backend.schemas import run_json
from marginscope.backend.store import Run
from marginscope.backend.store.db import json_safe
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore

pytest_plugins = ["api_fixtures"]


@pytest.fixture
def run_id(client: TestClient, store: SqlAlchemyStore) -> int:
    rid = create(client)["id"]
    write_events(store, rid, full_run(20))
    return rid  # type: ignore[no-any-return]


def _expected_rows(store: SqlAlchemyStore, rid: int) -> dict[str, int]:
    hist = sum(len(store.get_histograms(rid, p).steps) for p in ("candidates", "selected"))
    sel = len(store.get_selection(rid).steps)
    return {"scalar": len(store.get_scalars(rid)), "histogram": hist * 4, "quantile": hist * 5,
            "selection": sel * 2 * 10}


def test_json_export(client: TestClient, store: SqlAlchemyStore, run_id: int) -> None:
    r = client.get(f"/api/runs/{run_id}/export?format=json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert f'filename="run-{run_id}.json"' in r.headers["content-disposition"]
    data = json.loads(r.content)
    assert data["run"]["id"] == run_id
    assert len(data["scalars"]) == len(store.get_scalars(run_id))
    assert data["histograms"]["candidates"]["edges"] == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert data["histograms"]["selected"]["steps"] == [5, 10, 15, 20]
    assert data["selection"]["class_names"][:2] == ["0", "1"]


def test_csv_export(client: TestClient, store: SqlAlchemyStore, run_id: int) -> None:
    r = client.get(f"/api/runs/{run_id}/export?format=csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    counts = {kind: sum(1 for row in rows if row["kind"] == kind) for kind in _expected_rows(store, run_id)}
    assert counts == _expected_rows(store, run_id)
    val = [row for row in rows if row["kind"] == "scalar" and row["key"] == "val/accuracy"]
    assert [(int(row["step"]), float(row["value"])) for row in val] == [(10, 0.5), (20, 0.7)]
    bin0 = next(row for row in rows if row["kind"] == "histogram" and row["step"] == "5")
    assert (float(bin0["low"]), float(bin0["high"]), float(bin0["value"])) == (0.0, 0.5, 5.0)


def test_parquet_export(client: TestClient, store: SqlAlchemyStore, run_id: int) -> None:
    r = client.get(f"/api/runs/{run_id}/export?format=parquet")
    assert r.status_code == 200
    table = pq.read_table(io.BytesIO(r.content))
    assert sum(_expected_rows(store, run_id).values()) == table.num_rows
    assert [(f.name, str(f.type)) for f in table.schema] == [  # docs/api.md's columns, in order
        ("kind", "string"), ("key", "string"), ("step", "int64"), ("epoch", "double"),
        ("samples_forwarded", "int64"), ("samples_backpropagated", "int64"), ("wall_time", "double"),
        ("value", "double"), ("index", "int64"), ("low", "double"), ("high", "double"),
        ("label", "string")]
    cols = table.to_pydict()
    loss = [v for k, key, v in zip(cols["kind"], cols["key"], cols["value"])
            if k == "scalar" and key == "train/loss"]
    assert loss[0] == 1.0 and len(loss) == 20


def test_export_bad_input(client: TestClient, run_id: int) -> None:
    assert client.get(f"/api/runs/{run_id}/export?format=xlsx").status_code == 422
    assert client.get("/api/runs/999/export").status_code == 404
    assert client.get("/api/runs/nope/export").status_code == 422


def test_export_of_an_empty_run(client: TestClient) -> None:
    rid = create(client)["id"]
    for fmt in ("csv", "json", "parquet"):
        assert client.get(f"/api/runs/{rid}/export?format={fmt}").status_code == 200


# ---------------------------------------------------------------------- streaming


def _in_memory(store: SqlAlchemyStore, rid: int) -> tuple[bytes, bytes]:
    """(json, csv) built the simple way, the whole run in memory: what the streamed export must
    equal byte for byte."""
    run = store.get_run(rid)
    everything = 10**9
    data = {"run": run_json(run),
            "scalars": [{k: v for k, v in vars(r).items() if k != "seq"} for r in store.get_scalars(rid)],
            "histograms": {pop: vars(store.get_histograms(rid, pop, max_rows=everything))
                           for pop in store.get_edges(rid)},
            "selection": vars(store.get_selection(rid, max_points=everything)),
            "samples": {"snapshots": list(store.iter_sample_snapshots(rid, until_seq=run.last_seq)),
                        "records": [vars(r) for r in store.iter_sample_records(rid)]}}
    empty = dict.fromkeys(COLUMNS)
    rows = [{**empty, "kind": "scalar", **s} for s in data["scalars"]]
    for pop, h in data["histograms"].items():
        for i, step in enumerate(h["steps"]):
            when = {"step": step, "epoch": h["epochs"][i], "wall_time": h["wall_time"][i]}
            rows += [{**empty, **when, "kind": "histogram", "key": pop, "value": count, "index": b,
                      "low": h["edges"][b], "high": h["edges"][b + 1]} for b, count in enumerate(h["counts"][i])]
            rows += [{**empty, **when, "kind": "quantile", "key": f"{pop}/{q}", "value": values[i]}
                     for q, values in h["quantiles"].items()]
    sel = data["selection"]
    for i, step in enumerate(sel["steps"]):
        for pop, counts in (("candidates", sel["candidate_counts"][i]), ("selected", sel["selected_counts"][i])):
            rows += [{**empty, "kind": "selection", "key": pop, "step": step, "value": count, "index": c,
                      "label": sel["class_names"][c] if c < len(sel["class_names"]) else str(c)}
                     for c, count in enumerate(counts)]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return json.dumps(json_safe(data), allow_nan=False).encode(), out.getvalue().encode()


def test_streamed_export_equals_the_in_memory_one_byte_for_byte(client: TestClient,
                                                                store: SqlAlchemyStore) -> None:
    rid = create(client)["id"]
    # a diverged loss (NaN), a histogram with a threshold, and a resume that deleted a tail
    write_events(store, rid, full_run(20)[:-1] + [step_metrics(21, loss=float("nan")),
                                                  histogram(21, threshold=0.25)])
    store.truncate_after_step(rid, 18)
    write_events(store, rid, [step_metrics(s) for s in range(19, 23)] + [histogram(22, "selected")])
    expected_json, expected_csv = _in_memory(store, rid)
    assert client.get(f"/api/runs/{rid}/export?format=json").content == expected_json
    assert client.get(f"/api/runs/{rid}/export?format=csv").content == expected_csv
    empty = create(client)["id"]
    assert client.get(f"/api/runs/{empty}/export?format=json").content == _in_memory(store, empty)[0]
    assert client.get(f"/api/runs/{empty}/export?format=csv").content == _in_memory(store, empty)[1]


@pytest.mark.slow
def test_a_large_export_is_streamed_in_bounded_memory(store: SqlAlchemyStore, make_run: Callable[..., Run],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    rid = make_run().id
    steps = 4_000  # 24k scalar rows: ~1.5 MB of csv, ~3.7 MB of json; in memory, their rows alone
    monkeypatch.setattr(export, "ROW_GROUP", 4096)  # take ~30 MB
    write_events(store, rid, [run_started()] + [step_metrics(s) for s in range(1, steps + 1)])
    run = store.get_run(rid)
    for fmt in ("csv", "json", "parquet"):
        tracemalloc.start()
        try:
            size = sum(len(chunk) for chunk in export_chunks(store, run, fmt))  # type: ignore[arg-type]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert size > 200_000
        assert peak < 8_000_000, (fmt, peak, size)  # neither the whole file nor all its rows


def test_parquet_without_its_extra_is_a_400_naming_the_extra(
        client: TestClient, run_id: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server installed without `marginscope[parquet]` says which extra to install (and which
    formats it can give) instead of failing the download half-way."""
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # importing it now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    r = client.get(f"/api/runs/{run_id}/export?format=parquet")
    assert r.status_code == 400
    assert "pip install 'marginscope[parquet]'" in r.json()["detail"] and "format=csv" in r.json()["detail"]
    assert client.get(f"/api/runs/{run_id}/export?format=csv").status_code == 200
