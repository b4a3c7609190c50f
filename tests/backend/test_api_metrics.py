"""Metrics, histograms and selection endpoints on rows written through the real store."""

from __future__ import annotations

from api_helpers import create
from fastapi.testclient import TestClient
from store_events import full_run, run_started, step_metrics

from marginscope.backend.recording import write_events
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore

pytest_plugins = ["api_fixtures"]


def test_series_on_every_x_axis(client: TestClient, store: SqlAlchemyStore) -> None:
    rid = create(client)["id"]
    write_events(store, rid, full_run(30))
    r = client.get(f"/api/runs/{rid}/metrics?keys=train/loss,val/accuracy&x=samples_backpropagated")
    assert r.status_code == 200
    body = r.json()
    assert body["x"] == "samples_backpropagated" and set(body["series"]) == {"train/loss", "val/accuracy"}
    loss = body["series"]["train/loss"]
    assert loss["step"] == list(range(1, 31)) and loss["x"] == [s * 16 for s in range(1, 31)]
    assert loss["y"][0] == 1.0
    assert body["series"]["val/accuracy"]["y"] == [0.5, 0.7, 0.6]
    for x in ("step", "epoch", "samples_forwarded", "wall_time"):
        assert client.get(f"/api/runs/{rid}/metrics?keys=lr&x={x}").status_code == 200


def test_all_keys_by_default_and_unknown_keys_are_empty(client: TestClient, store: SqlAlchemyStore) -> None:
    rid = create(client)["id"]
    write_events(store, rid, full_run(10))
    series = client.get(f"/api/runs/{rid}/metrics").json()["series"]
    assert {"train/loss", "lr", "val/accuracy", "mms/candidates/p50"} <= set(series)
    empty = client.get(f"/api/runs/{rid}/metrics?keys=nope").json()["series"]["nope"]
    assert empty == {"x": [], "y": [], "step": []}


def test_downsampling_keeps_first_last_and_extremes(client: TestClient, store: SqlAlchemyStore) -> None:
    rid = create(client)["id"]
    losses = {s: 1.0 for s in range(1, 1001)}
    losses[437] = 9.0  # a spike
    losses[701] = -3.0  # a dip
    write_events(store, rid, [run_started(1000)] + [step_metrics(s, loss=v) for s, v in losses.items()])
    s = client.get(f"/api/runs/{rid}/metrics?keys=train/loss&max_points=50").json()["series"]["train/loss"]
    assert 2 <= len(s["step"]) <= 50
    assert s["step"][0] == 1 and s["step"][-1] == 1000
    assert 437 in s["step"] and 701 in s["step"]
    assert max(s["y"]) == 9.0 and min(s["y"]) == -3.0
    assert s["step"] == sorted(s["step"])


def test_metrics_bad_input(client: TestClient) -> None:
    rid = create(client)["id"]
    assert client.get("/api/runs/999/metrics").status_code == 404
    assert client.get("/api/runs/x/metrics").status_code == 422
    assert client.get(f"/api/runs/{rid}/metrics?x=bogus").status_code == 422
    assert client.get(f"/api/runs/{rid}/metrics?max_points=1").status_code == 422


def test_histograms_with_range_and_stride(client: TestClient, store: SqlAlchemyStore) -> None:
    rid = create(client)["id"]
    write_events(store, rid, full_run(30))  # histograms every 5 steps
    h = client.get(f"/api/runs/{rid}/histograms?population=selected").json()
    assert h["edges"] == [0.0, 0.5, 1.0, 2.0, 4.0] and h["population"] == "selected"
    assert h["steps"] == [5, 10, 15, 20, 25, 30]
    assert all(len(c) == 4 for c in h["counts"]) and h["thresholds"] == [0.2] * 6
    assert set(h["quantiles"]) == {"p5", "p25", "p50", "p75", "p95"}
    part = client.get(f"/api/runs/{rid}/histograms?start=10&end=25&stride=2").json()
    assert part["steps"][:2] == [10, 20] and part["steps"][-1] == 25  # the range's last row is kept
    assert part["population"] == "candidates"
    few = client.get(f"/api/runs/{rid}/histograms?max_rows=2").json()
    assert len(few["steps"]) == 2 and few["steps"][-1] == 30


def test_histograms_bad_input(client: TestClient) -> None:
    rid = create(client)["id"]
    assert client.get("/api/runs/999/histograms").status_code == 404
    assert client.get(f"/api/runs/{rid}/histograms?population=all").status_code == 422
    assert client.get(f"/api/runs/{rid}/histograms?stride=0").status_code == 422
    assert client.get(f"/api/runs/{rid}/histograms?start=-1").status_code == 422
    empty = client.get(f"/api/runs/{rid}/histograms").json()  # before RunStarted: nothing yet
    assert empty["steps"] == [] and empty["counts"] == []


def test_selection(client: TestClient, store: SqlAlchemyStore) -> None:
    rid = create(client)["id"]
    write_events(store, rid, full_run(20))
    sel = client.get(f"/api/runs/{rid}/selection").json()
    assert sel["steps"] == [5, 10, 15, 20] and sel["class_names"] == [str(i) for i in range(10)]
    assert sel["selected_counts"][0] == [1] * 10 and sel["misclassified_share"] == [0.25] * 4
    assert client.get("/api/runs/999/selection").status_code == 404
    assert client.get(f"/api/runs/{rid}/selection?max_points=0").status_code == 422
