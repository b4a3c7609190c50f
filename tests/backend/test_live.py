"""The live hub over real websockets (TestClient) on rows written through a second store, as a
worker process would: snapshot, numbered deltas, `?since=` catch-up, status changes, coalescing,
the runs-list stream, bad id/token, and closing on shutdown."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from api_helpers import TOKEN, create
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from store_events import full_run, histogram, run_started, step_metrics

from marginscope.backend.live import LiveHub
from marginscope.backend.recording import write_events
from marginscope.backend.store import RunStatus
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore
from marginscope.engine.events import COUNTER_KEYS

pytest_plugins = ["api_fixtures"]


def _rows(message: dict[str, Any]) -> int:
    scalars = sum(len(column["value"]) for column in message["scalars"].values())
    return scalars + sum(len(message[k]) for k in ("histograms", "selection", "logs"))


def _points(scalars: dict[str, dict[str, list[Any]]], key: str | None = None) -> set[tuple[str, int]]:
    """(key, step) of every point in a message's scalar columns."""
    return {(k, step) for k, column in scalars.items() if key in (None, k) for step in column["step"]}


def test_snapshot_then_deltas(client: TestClient, store: SqlAlchemyStore) -> None:
    rid = create(client)["id"]
    write_events(store, rid, full_run(10)[:-2])  # no test/finish yet
    last = store.get_run(rid).last_seq
    with client.websocket_connect(f"/ws/runs/{rid}") as ws:
        snap = ws.receive_json()
        assert snap["type"] == "snapshot" and snap["seq"] == last
        assert snap["run"]["id"] == rid and snap["run"]["progress"]["step"] == 10
        loss = snap["scalars"]["train/loss"]
        assert loss["step"] == list(range(1, 11))
        assert set(loss) == {*COUNTER_KEYS, "value"}  # every counter, so any x axis can be drawn
        assert loss["samples_backpropagated"] == [r.samples_backpropagated for r in
                                                  store.get_scalars(rid, keys=["train/loss"])]
        assert snap["edges"]["candidates"] == [0.0, 0.5, 1.0, 2.0, 4.0]
        assert snap["histograms"]["selected"]["steps"] == [5, 10]
        write_events(store, rid, [step_metrics(11), histogram(11)])
        delta = ws.receive_json()
        assert delta["type"] == "delta" and delta["seq"] > last
        assert _points(delta["scalars"]) >= {("train/loss", 11), ("lr", 11)}
        assert set(delta["scalars"]["train/loss"]) == set(loss)  # the snapshot's shape
        assert [h["step"] for h in delta["histograms"]] == [11]
        assert delta["run"]["progress"]["step"] == 11  # progress moved


def test_since_yields_exactly_the_missed_rows(client: TestClient, store: SqlAlchemyStore) -> None:
    rid = create(client)["id"]
    events = full_run(20)
    write_events(store, rid, events[:30])
    cut = store.get_run(rid).last_seq
    write_events(store, rid, events[30:])
    missed = store.changes_since(rid, cut, limit=100_000)
    with client.websocket_connect(f"/ws/runs/{rid}?since={cut}") as ws:
        first = ws.receive_json()
        assert first["type"] == "delta"  # no snapshot: the client can be caught up
        assert first["seq"] == missed.seq == store.get_run(rid).last_seq
        sent = [(key, step, value) for key, column in first["scalars"].items()
                for step, value in zip(column["step"], column["value"], strict=True)]
        assert sorted(sent) == sorted((r.key, r.step, r.value) for r in missed.scalars)
        assert [h["step"] for h in first["histograms"]] == [h.step for h in missed.histograms]
        assert [line["seq"] for line in first["logs"]] == [line.seq for line in missed.logs]
        assert _rows(first) == len(missed.scalars) + len(missed.histograms) + len(missed.selection) + \
            len(missed.logs)


def test_since_at_the_head_waits_for_new_rows(client: TestClient, store: SqlAlchemyStore) -> None:
    rid = create(client)["id"]
    write_events(store, rid, [run_started(), step_metrics(1)])
    head = store.get_run(rid).last_seq
    with client.websocket_connect(f"/ws/runs/{rid}?since={head}") as ws:
        time.sleep(0.3)
        write_events(store, rid, [step_metrics(2)])
        delta = ws.receive_json()
        assert delta["type"] == "delta" and {s for _, s in _points(delta["scalars"])} == {2}


def test_since_beyond_the_head_gets_a_snapshot(client: TestClient, store: SqlAlchemyStore) -> None:
    rid = create(client)["id"]
    with client.websocket_connect(f"/ws/runs/{rid}?since=99999") as ws:
        assert ws.receive_json()["type"] == "snapshot"


def test_status_changes_arrive_as_deltas(client: TestClient, store: SqlAlchemyStore) -> None:
    rid = create(client)["id"]
    with client.websocket_connect(f"/ws/runs/{rid}") as ws:
        assert ws.receive_json()["run"]["status"] == "queued"
        store.set_status(rid, RunStatus.RUNNING)
        delta = ws.receive_json()
        assert delta["run"]["status"] == "running" and delta["logs"]
        store.set_status(rid, RunStatus.FAILED, error="boom", traceback="tb")
        delta = ws.receive_json()
        assert delta["run"]["status"] == "failed" and delta["run"]["error"] == "boom"


def test_bursts_are_coalesced(client: TestClient, store: SqlAlchemyStore) -> None:
    rid = create(client)["id"]
    write_events(store, rid, [run_started(200)])
    steps = 100
    messages: list[dict[str, Any]] = []
    with client.websocket_connect(f"/ws/runs/{rid}") as ws:
        ws.receive_json()

        def write() -> None:
            for s in range(1, steps + 1):  # 100 separate commits within ~1 s
                write_events(store, rid, [step_metrics(s)])
                time.sleep(0.01)

        writer = threading.Thread(target=write)
        start = time.monotonic()
        writer.start()
        seen: set[int] = set()
        while len(seen) < steps:
            messages.append(ws.receive_json())
            seen |= {s for _, s in _points(messages[-1]["scalars"])}
        elapsed = time.monotonic() - start
        writer.join()
    seqs = [m["seq"] for m in messages]
    assert seqs == sorted(set(seqs))  # strictly increasing
    assert len(messages) <= elapsed / 0.1 + 2, (len(messages), elapsed)  # ≤ ~10 messages/s
    assert len(messages) < steps  # coalesced
    losses = [s for m in messages for s in m["scalars"].get("train/loss", {}).get("step", [])]
    assert losses == list(range(1, steps + 1))  # nothing lost or repeated


def test_runs_stream_reports_status_changes(client: TestClient, store: SqlAlchemyStore) -> None:
    a = create(client)["id"]
    with client.websocket_connect("/ws/runs") as ws:
        snap = ws.receive_json()
        assert snap["type"] == "snapshot" and [r["id"] for r in snap["runs"]] == [a]
        store.set_status(a, RunStatus.RUNNING)
        message = ws.receive_json()
        while message["run"]["id"] != a or message["run"]["status"] != "running":
            message = ws.receive_json()
        assert message["type"] == "run"
        b = create(client)["id"]
        message = ws.receive_json()
        while message["run"]["id"] != b:
            message = ws.receive_json()
        assert message["run"]["status"] == "queued"


def test_unknown_or_malformed_run_is_refused(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as exc, client.websocket_connect("/ws/runs/999") as ws:
        ws.receive_json()
    assert exc.value.code == 1008
    with pytest.raises(WebSocketDisconnect) as exc, client.websocket_connect("/ws/runs/abc") as ws:
        ws.receive_json()
    assert exc.value.code == 1008
    with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws/runs/1?since=-5") as ws:
        ws.receive_json()


def test_token_is_required_when_set(token_client: TestClient) -> None:
    rid = token_client.post("/api/runs", json={"config": {"dataset": "digits"}},
                            headers={"Authorization": f"Bearer {TOKEN}"}).json()["id"]
    for path in (f"/ws/runs/{rid}", "/ws/runs", f"/ws/runs/{rid}?token={TOKEN}"):  # never in a URL
        with pytest.raises(WebSocketDisconnect) as exc, token_client.websocket_connect(path) as ws:
            ws.receive_json()
        assert exc.value.code == 1008
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with token_client.websocket_connect(f"/ws/runs/{rid}", headers=auth) as ws:
        assert ws.receive_json()["type"] == "snapshot"
    with token_client.websocket_connect("/ws/runs", headers=auth) as ws:
        assert ws.receive_json()["type"] == "snapshot"


def test_hub_stop_closes_sockets(client: TestClient) -> None:
    rid = create(client)["id"]
    hub = client.app.state.hub  # type: ignore[attr-defined]
    with client.websocket_connect(f"/ws/runs/{rid}") as ws, client.websocket_connect("/ws/runs") as ws2:
        ws.receive_json()
        ws2.receive_json()
        client.portal.call(hub.stop)  # type: ignore[union-attr]
        assert _close_code(ws) == 1001
        assert _close_code(ws2) == 1001


def _close_code(ws: Any) -> int:
    """The code of the socket's close frame, past the messages already on their way (the runs
    list's poller may broadcast the run created before the socket joined: its snapshot held it)."""
    while "code" not in (message := ws.receive()):
        assert message["type"] == "websocket.send", message
    return int(message["code"])


def test_a_resume_that_drops_rows_sends_a_fresh_snapshot(client: TestClient, store: SqlAlchemyStore) -> None:
    rid = create(client)["id"]
    write_events(store, rid, [run_started()] + [step_metrics(s) for s in range(1, 11)])
    with client.websocket_connect(f"/ws/runs/{rid}") as ws:
        assert ws.receive_json()["scalars"]["train/loss"]["step"][-1] == 10
        store.truncate_after_step(rid, 5)  # what the worker does before resuming at 5
        delta = ws.receive_json()
        assert delta["type"] == "delta" and "resuming from the checkpoint at step 5" in \
            delta["logs"][-1]["message"]
        snap = ws.receive_json()
        assert snap["type"] == "snapshot" and snap["scalars"]["train/loss"]["step"] == [1, 2, 3, 4, 5]
        write_events(store, rid, [step_metrics(6)])
        assert {s for _, s in _points(ws.receive_json()["scalars"])} == {6}


def test_a_downsampled_snapshot_keeps_each_points_counters(client: TestClient,
                                                           store: SqlAlchemyStore) -> None:
    rid = create(client)["id"]
    write_events(store, rid, [run_started()] + [step_metrics(s) for s in range(1, 41)])
    _, snap = LiveHub(store, snapshot_points=6)._snapshot(rid)
    loss = snap["scalars"]["train/loss"]
    assert 2 < len(loss["step"]) <= 6  # downsampled
    rows = {r.step: r for r in store.get_scalars(rid, keys=["train/loss"])}
    for i, step in enumerate(loss["step"]):
        assert [loss[c][i] for c in (*COUNTER_KEYS, "value")] == \
            [getattr(rows[step], c) for c in (*COUNTER_KEYS, "value")]
