"""The ingest API on a real server (uvicorn on 127.0.0.1, a real SQLite file), by raw HTTP:
create, claim, event batches (idempotent by sequence number, a gap refused with the expected
number), heartbeat and cancel, limits, the token rules, and a remote run going stale."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import store_events as ev
from fastapi.testclient import TestClient
from ingest_server import ThreadServer

from marginscope.backend.main import create_app
from marginscope.backend.settings import Settings
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore
from marginscope.engine.events import CheckpointSaved, Event, LogMessage, RunFailed, RunFinished

TINY = {"dataset": "digits", "selector": "mms", "candidates": 64, "batch_size": 16, "steps": 30}
TRAINER = {"host": "gpu-node-7", "pid": 4242}
TOKEN = "ingest-token-0123456789"


@pytest.fixture
def server(settings: Settings) -> Iterator[ThreadServer]:
    with ThreadServer(settings) as s:
        yield s


@pytest.fixture
def http(server: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def create(http: httpx.Client, **body: Any) -> dict[str, Any]:
    r = http.post("/api/ingest/runs", json={"config": TINY, **TRAINER, **body})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def post(http: httpx.Client, run_id: int, seq: int, events: list[Event]) -> httpx.Response:
    return http.post(f"/api/ingest/runs/{run_id}/events",
                     json={"seq": seq, "events": [e.to_dict() for e in events]})


def some_events() -> list[Event]:
    return [ev.run_started(), ev.step_metrics(1), ev.histogram(1), ev.selection(1), ev.step_metrics(2),
            ev.evaluation(2, 0.7), LogMessage(step=2, level="info", message="hello")]


def rows(store: SqlAlchemyStore, run_id: int) -> dict[str, int]:
    scalars = store.get_scalars(run_id)
    return {"scalars": len(scalars), "distinct": len({(r.key, r.step) for r in scalars}),
            "histograms": len(list(store.iter_histograms(run_id, "candidates", until_seq=2**62))),
            "selection": len(list(store.iter_selection(run_id, until_seq=2**62))),
            "hello": sum(line.message == "hello" for line in store.get_logs(run_id, limit=10_000))}


def test_a_remote_run_is_running_at_once_with_its_host(http: httpx.Client) -> None:
    answer = create(http, name="on the gpu node", tags=["remote"])
    run = answer["run"]
    assert answer["next_seq"] == 0
    assert run["status"] == "running" and run["executor"] == "remote"
    assert run["host"] == "gpu-node-7" and run["pid"] == 4242 and run["stop_requested"] is False
    listed = http.get("/api/runs").json()["data"]
    assert [(r["id"], r["host"], r["status"]) for r in listed] == [(run["id"], "gpu-node-7", "running")]
    logs = [line["message"] for line in http.get(f"/api/runs/{run['id']}/logs").json()["data"]]
    assert logs[-1] == "status queued → running (remote: pid 4242 on gpu-node-7)"


def test_the_config_is_validated_as_a_launch(http: httpx.Client) -> None:
    r = http.post("/api/ingest/runs", json={"config": {**TINY, "selectr": "mms"}, **TRAINER})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "config", "selectr"]
    r = http.post("/api/ingest/runs", json={"config": {**TINY, "steps": 2**40}, **TRAINER})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "config", "steps"]
    r = http.post("/api/ingest/runs", json={"config": TINY, "host": "", "pid": 1})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "host"]
    assert http.get("/api/runs").json()["count"] == 0


def test_a_retried_batch_never_duplicates_a_row(http: httpx.Client, store: SqlAlchemyStore) -> None:
    rid = create(http)["run"]["id"]
    events = some_events()
    first = post(http, rid, 0, events)
    assert first.status_code == 200 and first.json() == {"next_seq": len(events), "stop": False}
    once = rows(store, rid)
    assert once == {"scalars": once["distinct"], "distinct": once["distinct"], "histograms": 1,
                    "selection": 1, "hello": 1} and once["distinct"] > 10
    for _ in range(2):  # the same batch again (its answer was lost)
        assert post(http, rid, 0, events).json() == {"next_seq": len(events), "stop": False}
    assert rows(store, rid) == once
    # a batch overlapping what is stored: only its new events are written
    more = [*events[5:], ev.step_metrics(3), ev.histogram(3)]
    assert post(http, rid, 5, more).json()["next_seq"] == 9
    after = rows(store, rid)
    assert after["histograms"] == 2 and after["scalars"] == after["distinct"] and after["hello"] == 1
    assert store.get_run(rid).ingest_seq == 9


def test_a_gap_is_refused_naming_the_expected_number(http: httpx.Client, store: SqlAlchemyStore) -> None:
    rid = create(http)["run"]["id"]
    assert post(http, rid, 0, some_events()[:3]).json()["next_seq"] == 3
    r = post(http, rid, 5, [ev.step_metrics(4)])
    assert r.status_code == 409
    assert r.json()["expected_seq"] == 3 and "from 3" in r.json()["detail"]
    assert store.get_run(rid).ingest_seq == 3 and rows(store, rid)["scalars"] == 6 + 4  # step, mms


def test_events_are_checked_as_the_engines(http: httpx.Client) -> None:
    rid = create(http)["run"]["id"]
    bad = [ev.step_metrics(1).to_dict(), {"kind": "nonsense"}]
    r = http.post(f"/api/ingest/runs/{rid}/events", json={"seq": 0, "events": bad})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "events", 1]
    assert "nonsense" in r.json()["detail"][0]["msg"] and "'step'" in r.json()["detail"][0]["msg"]
    broken = {**ev.step_metrics(1).to_dict(), "loss": "much"}
    r = http.post(f"/api/ingest/runs/{rid}/events", json={"seq": 0, "events": [broken]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:3] == ["body", "events", 0]
    huge = ev.step_metrics(1).to_dict()
    huge["counters"]["step"] = 2**40
    r = http.post(f"/api/ingest/runs/{rid}/events", json={"seq": 0, "events": [huge]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-2:] == ["counters", "step"]
    deep: dict = {}
    for _ in range(40):
        deep = {"x": deep}
    nested = {**ev.run_started().to_dict(), "config": deep}
    r = http.post(f"/api/ingest/runs/{rid}/events", json={"seq": 0, "events": [nested]})
    assert r.status_code == 422 and "nested deeper" in r.json()["detail"][0]["msg"]
    assert post(http, rid, 0, [ev.step_metrics(1)]).json()["next_seq"] == 1  # nothing was taken


def test_limits_on_body_size_and_batch_length(settings: Settings) -> None:
    with ThreadServer(settings.model_copy(update={"max_body_bytes": 64 * 1024})) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        rid = create(http)["run"]["id"]
        line = json.dumps(LogMessage(step=1, level="info", message="x" * 100).to_dict())
        big = '{"seq": 0, "events": [%s]}' % ",".join([line] * 1000)  # ~150 kB
        r = http.post(f"/api/ingest/runs/{rid}/events", content=big,
                      headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "65536 bytes" in r.json()["detail"]
        small = LogMessage(step=1, level="info", message="x").to_dict()
        r = http.post(f"/api/ingest/runs/{rid}/events", json={"seq": 0, "events": [small] * 1001})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "events"]
        assert http.post(f"/api/ingest/runs/{rid}/events",
                         json={"seq": 0, "events": [small] * 1000}).json()["next_seq"] == 1000


def test_heartbeat_and_a_cancel_from_the_dashboard(http: httpx.Client, store: SqlAlchemyStore) -> None:
    rid = create(http)["run"]["id"]
    before = store.get_run(rid).heartbeat_at
    time.sleep(0.01)
    assert http.post(f"/api/ingest/runs/{rid}/heartbeat", json={}).json() == {"stop": False, "status": "running"}
    assert store.get_run(rid).heartbeat_at > before
    cancelled = http.post(f"/api/runs/{rid}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "running" and cancelled.json()["stop_requested"] is True
    assert http.post(f"/api/ingest/runs/{rid}/heartbeat", json={}).json() == {"stop": True, "status": "running"}
    assert post(http, rid, 0, [ev.step_metrics(1)]).json() == {"next_seq": 1, "stop": True}
    # the trainer stops with a checkpoint and reports how it ended
    end = post(http, rid, 1, [CheckpointSaved(counters=ev.counters(1), path="run/checkpoint.pt"), RunFinished(counters=ev.counters(1), status="cancelled")])
    assert end.json() == {"next_seq": 3, "stop": True}
    run = http.get(f"/api/runs/{rid}").json()
    assert run["status"] == "cancelled" and run["checkpoint_step"] == 1
    assert post(http, rid, 3, [ev.step_metrics(2)]).status_code == 409  # an ended run takes no more
    assert post(http, rid, 1, [CheckpointSaved(counters=ev.counters(1), path="run/checkpoint.pt")]).json()["next_seq"] == 3  # a late retry is harmless


def test_finished_and_failed_as_a_local_run(http: httpx.Client) -> None:
    rid = create(http)["run"]["id"]
    post(http, rid, 0, [ev.run_started(), ev.step_metrics(1),
                        RunFinished(counters=ev.counters(1), status="finished", summary={"steps": 1})])
    run = http.get(f"/api/runs/{rid}").json()
    assert run["status"] == "finished" and run["summary"] == {"steps": 1} and run["finished_at"]
    rid = create(http)["run"]["id"]
    post(http, rid, 0, [RunFailed(step=0, error="OSError: disk full", traceback="Traceback ...")])
    run = http.get(f"/api/runs/{rid}").json()
    assert run["status"] == "failed" and run["error"] == "OSError: disk full"


def test_claim_takes_over_a_queued_run(settings: Settings) -> None:
    # no launcher thread: nothing else may start the queued run
    with TestClient(create_app(settings, supervise=False)) as http:
        rid = http.post("/api/runs", json={"config": TINY}).json()["id"]
        r = http.post(f"/api/ingest/runs/{rid}/claim", json=TRAINER)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["next_seq"] == 0 and body["config"]["candidates"] == 64
        assert body["run"]["status"] == "running" and body["run"]["executor"] == "remote"
        assert body["run"]["host"] == "gpu-node-7"
        assert http.post(f"/api/ingest/runs/{rid}/claim", json=TRAINER).status_code == 409
        assert http.post("/api/ingest/runs/999/claim", json=TRAINER).status_code == 404
        queued = http.post("/api/runs", json={"config": TINY}).json()["id"]  # nobody claimed it
        event = {"kind": "log", "step": 0, "level": "info", "message": "hello"}
        r = http.post(f"/api/ingest/runs/{queued}/events", json={"seq": 0, "events": [event]})
        assert r.status_code == 409 and "queued: it takes no new events" in r.json()["detail"]


def test_the_token_rules_are_the_launchs(settings: Settings) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(settings.model_copy(update={"token": TOKEN}), supervise=False)) as http:
        body = {"config": TINY, **TRAINER}
        assert http.post("/api/ingest/runs", json=body).status_code == 401
        rid = http.post("/api/ingest/runs", json=body, headers=auth).json()["run"]["id"]
        for path, payload in ((f"{rid}/events", {"seq": 0, "events": []}), (f"{rid}/heartbeat", {}),
                              (f"{rid}/claim", TRAINER)):
            assert http.post(f"/api/ingest/runs/{path}", json=payload).status_code == 401, path
        assert http.post(f"/api/ingest/runs/{rid}/heartbeat", json={}, headers=auth).status_code == 200
    # a server reached on a network address without a token answers nothing (ingest included)
    with TestClient(create_app(settings, supervise=False), base_url="http://192.0.2.10:8000") as http:
        r = http.post("/api/ingest/runs", json={"config": TINY, **TRAINER})
        assert r.status_code == 403 and "MARGINSCOPE_TOKEN" in r.json()["detail"]


def test_a_remote_run_that_stops_beating_is_crashed_and_revives(settings: Settings,
                                                                 store: SqlAlchemyStore) -> None:
    with ThreadServer(settings.model_copy(update={"stale_after": 1.0})) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        rid = create(http)["run"]["id"]
        deadline = time.monotonic() + 30
        while store.get_run(rid).status == "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        run = store.get_run(rid)
        assert run.status == "crashed" and "heartbeat stale" in (run.error or "")
        assert run.pid == 4242  # never signalled, never reaped as a worker of this host
        # the network came back: it reports again and runs again
        assert post(http, rid, 0, [ev.step_metrics(1)]).json() == {"next_seq": 1, "stop": False}
        assert store.get_run(rid).status == "running"


def test_an_integer_field_takes_a_whole_float_and_refuses_a_fraction_a_boolean_or_text() -> None:
    """Inside the strict event models too (a nested Counters): JSON Schema's integer, checked by
    pydantic-core alone."""
    from pydantic import ValidationError

    from marginscope.backend.recording.ingest import EVENT_MODELS

    def checkpoint(step: object) -> object:
        return EVENT_MODELS["checkpoint"].model_validate(
            {"kind": "checkpoint", "path": "x", "counters": {"step": step, "epoch": 1.0, "samples_forwarded": 3.0,
                                                            "samples_backpropagated": 2, "wall_time": 1.0}})

    assert checkpoint(1924678078.0).counters.step == 1924678078  # type: ignore[attr-defined]
    for bad in (5.5, True, "5", 2**31):
        with pytest.raises(ValidationError):
            checkpoint(bad)
