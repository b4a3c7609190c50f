"""Samples through the whole backend: real SampleSnapshot events of a tiny digits training are
recorded, stored (SQLite; PostgreSQL with MARGINSCOPE_TEST_DB_URL), served by the samples API
(ranked lists, one sample's story, suspects in JSON and CSV, thumbnails, compare), pushed on the
websocket, exported, truncated by a resume and deleted with their run."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from typing import Any

import pytest
from api_helpers import create
from fastapi.testclient import TestClient
from PIL import Image

from marginscope.backend.recording import write_events
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore
from marginscope.engine.callbacks import Recorder
from marginscope.engine.config import TrainConfig
from marginscope.engine.events import Event, SampleSnapshot
from marginscope.engine.loop import train

pytest_plugins = ["api_fixtures"]

CONFIG: dict[str, Any] = {"dataset": "digits", "selector": "mms", "candidates": 32, "batch_size": 16,
                          "steps": 40, "eval_every": 40, "eval_samples": 50, "hist_every": 0,
                          "log_every": 10, "samples_every": 10, "samples_k": 8, "label_noise": 0.2,
                          "seed": 1, "threads": 1, "device": "cpu"}


@pytest.fixture(scope="module")
def events() -> list[Event]:
    rec = Recorder()
    train(TrainConfig(**CONFIG), [rec])
    return list(rec.events)


def _recorded(client: TestClient, store: SqlAlchemyStore, events: list[Event], **config: Any) -> int:
    rid = create(client, **{**CONFIG, **config})["id"]
    write_events(store, rid, events)
    return rid


def _snapshots(events: list[Event]) -> list[SampleSnapshot]:
    return [e for e in events if isinstance(e, SampleSnapshot)]


def test_lowest_view_is_the_snapshot(client: TestClient, store: SqlAlchemyStore, events: list[Event]) -> None:
    rid = _recorded(client, store, events)
    snaps = _snapshots(events)
    body = client.get(f"/api/runs/{rid}/samples").json()
    assert body["view"] == "lowest" and body["steps"] == [10, 20, 30, 40] and body["step"] == 40
    assert [i["index"] for i in body["items"]] == snaps[-1].lowest["index"]
    assert [i["mms"] for i in body["items"]] == snaps[-1].lowest["mms"]
    item = body["items"][0]
    assert set(item) == {"index", "label", "prediction", "mms", "selected", "class_name", "flipped"}
    assert item["class_name"] == str(item["label"])
    # the slider: any step picks the snapshot at or before it
    at = client.get(f"/api/runs/{rid}/samples", params={"step": 25}).json()
    assert at["step"] == 20 and [i["index"] for i in at["items"]] == snaps[1].lowest["index"]
    one = client.get(f"/api/runs/{rid}/samples", params={"cls": item["label"]}).json()
    assert one["items"] and all(i["label"] == item["label"] for i in one["items"])


def test_selected_totals_are_exact(client: TestClient, store: SqlAlchemyStore, events: list[Event]) -> None:
    rid = _recorded(client, store, events)
    totals: Counter[int] = Counter()
    for snap in _snapshots(events):
        totals.update(dict(zip(snap.selected["index"], snap.selected["count"])))
    body = client.get(f"/api/runs/{rid}/samples", params={"view": "selected", "limit": 500}).json()
    got = {i["index"]: i["selected"] for i in body["items"]}
    assert sum(totals.values()) == 40 * 16
    assert list(got.values()) == sorted(got.values(), reverse=True)
    assert all(totals[i] == n for i, n in got.items())
    assert len(got) == min(500, len(totals))
    wrong = client.get(f"/api/runs/{rid}/samples", params={"view": "misclassified"}).json()["items"]
    assert all(i["prediction"] != i["label"] and i["selected"] > 0 for i in wrong)


def test_one_sample_story(client: TestClient, store: SqlAlchemyStore, events: list[Event]) -> None:
    rid = _recorded(client, store, events)
    snaps = _snapshots(events)
    index = snaps[-1].lowest["index"][0]
    story = client.get(f"/api/runs/{rid}/samples/{index}").json()
    assert story["index"] == index and story["history"][-1]["step"] == 40
    assert story["history"][-1]["mms"] == snaps[-1].lowest["mms"][0]
    expected = [(s.counters.step, dict(zip(s.selected["index"], s.selected["count"]))[index])
                for s in snaps if index in s.selected["index"]]
    assert [(p["step"], p["count"]) for p in story["selected"]] == expected
    assert story["selected_total"] == sum(c for _, c in expected)


def test_suspects_json_and_csv(client: TestClient, store: SqlAlchemyStore, events: list[Event]) -> None:
    rid = _recorded(client, store, events)
    snaps = _snapshots(events)
    flipped = set(snaps[0].flipped)
    body = client.get(f"/api/runs/{rid}/suspects", params={"limit": 50}).json()
    assert "signed margin" in body["rule"] and body["step"] == 40
    items = body["items"]
    assert [i["index"] for i in items] == snaps[-1].suspects["index"][:50]
    assert all(i["flipped"] == (i["index"] in flipped) for i in items)
    r = client.get(f"/api/runs/{rid}/suspects", params={"limit": 50, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [int(row["index"]) for row in rows] == [i["index"] for i in items]
    assert set(rows[0]) >= {"index", "label", "prediction", "score", "selected", "mean_mms", "flipped"}


def test_image_is_a_png_of_the_training_sample(client: TestClient, store: SqlAlchemyStore,
                                               events: list[Event]) -> None:
    from marginscope.engine.data import load_dataset

    rid = _recorded(client, store, events)
    r = client.get(f"/api/runs/{rid}/samples/5/image.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(r.content))
    assert image.size == (32, 32)  # 8x8 digits scaled by 4
    pixels = load_dataset("digits").train.images[5, 0]
    assert image.getpixel((0, 0)) == image.getpixel((3, 3))  # one source pixel, 4x4 block
    assert image.getpixel((4 * 4, 4 * 3)) == int(
        pixels[3, 4] if pixels.dtype.is_floating_point is False else round(float(pixels[3, 4]) * 255))


def test_bad_input_is_a_4xx(client: TestClient, store: SqlAlchemyStore, events: list[Event]) -> None:
    rid = _recorded(client, store, events)
    n = events[0].dataset["num_train"]  # type: ignore[attr-defined]
    assert client.get(f"/api/runs/{rid}/samples/{n}/image.png").status_code == 422
    assert client.get(f"/api/runs/{rid}/samples/-1/image.png").status_code == 422
    assert client.get(f"/api/runs/{rid}/samples/abc/image.png").status_code == 422
    assert client.get(f"/api/runs/{rid}/samples/{n}").status_code == 422
    assert client.get("/api/runs/9999/samples/1/image.png").status_code == 404
    assert client.get("/api/runs/9999/samples").status_code == 404
    assert client.get("/api/runs/9999/suspects").status_code == 404
    assert client.get(f"/api/runs/{rid}/samples", params={"view": "nope"}).status_code == 422
    assert client.get(f"/api/runs/{rid}/samples", params={"limit": 501}).status_code == 422
    assert client.get(f"/api/runs/{rid}/suspects", params={"format": "xml"}).status_code == 422
    assert client.get("/api/compare/samples", params={"runs": f"{rid}"}).status_code == 422
    assert client.get("/api/compare/samples", params={"runs": f"{rid},9999"}).status_code == 404
    # a run whose dataset cannot be read here: 404 naming why, not a 500
    other = create(client, dataset="cifar10", selector="mms")["id"]
    r = client.get(f"/api/runs/{other}/samples/0/image.png")
    assert r.status_code == 404 and "cannot be read" in r.json()["detail"]


def test_compare_overlap(client: TestClient, store: SqlAlchemyStore, events: list[Event]) -> None:
    a = _recorded(client, store, events)
    b = _recorded(client, store, events)
    body = client.get("/api/compare/samples", params={"runs": f"{a},{b}", "k": 20}).json()
    assert body["overlap"] == 1.0 and body["count"] == 20 and body["only"] == {str(a): [], str(b): []}
    half = _recorded(client, store, [e for e in events if not isinstance(e, SampleSnapshot)]
                     + _snapshots(events)[:1])
    body = client.get("/api/compare/samples", params={"runs": f"{a},{half}", "k": 20}).json()
    assert 0.0 <= body["overlap"] <= 1.0
    assert len(body["only"][str(a)]) == 20 - body["count"]


def test_websocket_carries_new_snapshots(client: TestClient, store: SqlAlchemyStore,
                                         events: list[Event]) -> None:
    rid = create(client, **CONFIG)["id"]
    snaps = _snapshots(events)
    first = events.index(snaps[0])
    write_events(store, rid, events[:first])
    with client.websocket_connect(f"/ws/runs/{rid}") as ws:
        assert ws.receive_json()["type"] == "snapshot"
        write_events(store, rid, [snaps[0]])
        for _ in range(10):
            message = ws.receive_json()
            if message["type"] == "samples":
                break
        assert message["type"] == "samples" and message["view"] == "lowest"
        assert message["step"] == 10 and [i["index"] for i in message["items"]] == snaps[0].lowest["index"]


def test_export_includes_samples(client: TestClient, store: SqlAlchemyStore, events: list[Event]) -> None:
    rid = _recorded(client, store, events)
    doc = json.loads(client.get(f"/api/runs/{rid}/export", params={"format": "json"}).content)
    assert [s["step"] for s in doc["samples"]["snapshots"]] == [10, 20, 30, 40]
    records = doc["samples"]["records"]
    assert sum(r["flipped"] for r in records) == len(_snapshots(events)[0].flipped)
    rows = list(csv.DictReader(io.StringIO(client.get(f"/api/runs/{rid}/export").text)))
    assert {"sample", "lowest"} <= {row["kind"] for row in rows}


def test_resume_truncates_and_delete_removes(client: TestClient, store: SqlAlchemyStore,
                                            events: list[Event]) -> None:
    rid = _recorded(client, store, events)
    store.truncate_after_step(rid, 20)
    assert client.get(f"/api/runs/{rid}/samples").json()["steps"] == [10, 20]
    totals: Counter[int] = Counter()
    for snap in _snapshots(events)[:2]:
        totals.update(dict(zip(snap.selected["index"], snap.selected["count"])))
    got = client.get(f"/api/runs/{rid}/samples", params={"view": "selected", "limit": 500}).json()["items"]
    assert {i["index"]: i["selected"] for i in got} == dict(totals)
    assert client.get(f"/api/runs/{rid}/suspects").json()["items"] == []  # back with the next snapshot
    assert client.delete(f"/api/runs/{rid}").status_code == 204
    from sqlalchemy import func, select

    from marginscope.backend.store.dbmodels import SqlRunSample, SqlSampleSnapshot
    with store.engine.connect() as conn:
        for table in (SqlRunSample, SqlSampleSnapshot):
            assert conn.execute(select(func.count()).select_from(table)
                                .where(table.run_id == rid)).scalar_one() == 0
