"""GET /api/runs/{id}/export: csv, json and parquet parse back and hold every row."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest
from api_helpers import create
from fastapi.testclient import TestClient
from store_events import full_run

from backend.recording import write_events
from backend.store.sqlalchemy_store import SqlAlchemyStore

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
