"""The live hub under many viewers: one store read and one serialisation per run per tick, fanned
out to every viewer byte for byte; a viewer that stops reading is held in a bounded queue (reset
to a fresh snapshot) and slows nobody else — on a real uvicorn server on 127.0.0.1.

Speed is never asserted here (scripts/load_figures.py measures it); counts and bounds are."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from api_helpers import create
from fastapi import FastAPI
from fastapi.testclient import TestClient
from store_events import run_started, step_metrics
from websockets.sync.client import connect

import marginscope.backend.live
from marginscope.backend.live import LiveHub
from marginscope.backend.recording import write_events
from marginscope.backend.store import RunStatus
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore
from marginscope.engine.events import LogMessage

pytest_plugins = ["api_fixtures"]

VIEWERS = 40


class CountingStore:
    """The real store, counting the calls made to it."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)
        return counted


def _steps(text: str, key: str = "train/loss") -> list[int]:
    return json.loads(text)["scalars"].get(key, {}).get("step", [])  # type: ignore[no-any-return]


def test_every_viewer_gets_the_same_bytes_from_one_read_per_tick(
        client: TestClient, store: SqlAlchemyStore, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = create(client)["id"]
    write_events(store, rid, [run_started()] + [step_metrics(s) for s in range(1, 4)])
    hub: LiveHub = client.app.state.hub  # type: ignore[attr-defined]
    hub.snapshot_max_age = 60.0  # viewers connect one by one here; they may all share one snapshot
    counting = CountingStore(hub.store)
    hub.store = counting  # type: ignore[assignment]
    serialised = Counter[str]()
    real_dumps = getattr(marginscope.backend.live, "_dumps", json.dumps)

    def counting_dumps(message: dict[str, Any]) -> str:
        serialised[message["type"]] += 1
        return real_dumps(message)
    monkeypatch.setattr(marginscope.backend.live, "_dumps", counting_dumps, raising=False)

    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(client.websocket_connect(f"/ws/runs/{rid}"))
                   for _ in range(VIEWERS)]
        snapshots = {ws.receive_text() for ws in sockets}
        assert len(snapshots) == 1 and _steps(snapshots.pop()) == [1, 2, 3]
        assert counting.calls["get_scalars"] == 1 and serialised["snapshot"] == 1  # shared
        reads_before = counting.calls["changes_since"]
        ticks = 5
        for s in range(4, 4 + ticks):  # one write per tick
            write_events(store, rid, [step_metrics(s)])
            time.sleep(0.3)
        received: list[list[str]] = []
        for ws in sockets:
            texts = [ws.receive_text()]
            while 3 + ticks not in _steps(texts[-1]):
                texts.append(ws.receive_text())
            received.append(texts)
    assert all(texts == received[0] for texts in received)  # the same bytes, in the same order
    assert [s for text in received[0] for s in _steps(text)] == list(range(4, 4 + ticks))
    deltas = len(received[0])
    assert counting.calls["changes_since"] - reads_before == deltas <= ticks  # not × VIEWERS
    assert serialised["delta"] == deltas


# ---------------------------------------------------------------------- a real server


@contextlib.contextmanager
def _serve(app: FastAPI) -> Iterator[int]:
    """uvicorn on 127.0.0.1 (a free port) in a thread; stopped on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@contextlib.contextmanager
def _never_reading(port: int, path: str) -> Iterator[socket.socket]:
    """A websocket client that completes the handshake and then never reads (a tiny receive
    buffer, so the server's sends soon block)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    try:
        yield sock
    finally:
        sock.close()


def _until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_viewer_that_never_reads_is_bounded_and_slows_nobody(app: FastAPI,
                                                                store: SqlAlchemyStore) -> None:
    rid = store.create_run(name=None, config={"dataset": "digits"}).id
    write_events(store, rid, [run_started()])
    batches = 30
    padding = [LogMessage(step=0, level="info", message="x" * 50_000)] * 8  # ~400 kB per delta
    with _serve(app) as port:
        hub: LiveHub = app.state.hub
        hub.viewer_queue = 4
        with _never_reading(port, f"/ws/runs/{rid}"):
            _until(lambda: hub.clients == 1, 10, "the slow viewer joined")
            fast_steps: list[int] = []
            queued: list[int] = []

            def read_all() -> None:
                with connect(f"ws://127.0.0.1:{port}/ws/runs/{rid}", max_size=None,
                             open_timeout=10) as ws:
                    while len(fast_steps) < batches:
                        fast_steps.extend(_steps(str(ws.recv(timeout=30))))

            reader = threading.Thread(target=read_all)
            reader.start()
            _until(lambda: hub.clients == 2, 10, "the fast viewer joined")
            for step in range(1, batches + 1):
                write_events(store, rid, [step_metrics(step), *padding])
                hub.wake(rid)  # as the ingest route does after its commit: a delta per write
                queued.append(max(v.queue.qsize() for f in hub._feeds.values() for v in f.viewers))
                time.sleep(0.1)
            reader.join(60)
            assert not reader.is_alive(), "the fast viewer was held up"
            assert fast_steps == list(range(1, batches + 1))  # all, once, in order
            assert max(queued) <= hub.viewer_queue
            assert hub.lagged >= 1  # the slow viewer fell behind and was reset, not buffered


def test_a_runs_list_client_that_never_reads_is_bounded(app: FastAPI, store: SqlAlchemyStore) -> None:
    notes = "n" * 20_000  # ~20 kB per run message, so the socket's buffers fill quickly
    ids = [store.create_run(name=None, config={"dataset": "digits"}, notes=notes).id for _ in range(40)]
    with _serve(app) as port:
        hub: LiveHub = app.state.hub
        hub.list_queue = 8
        with _never_reading(port, "/ws/runs"):
            _until(lambda: hub.clients == 1, 10, "the list client joined")
            queued: list[int] = []
            for round_ in range(30):
                status = (RunStatus.RUNNING, RunStatus.QUEUED)[round_ % 2]
                for rid in ids:
                    store.set_status(rid, status)
                time.sleep(hub.list_interval + 0.1)  # one poll sees each round
                queued.extend(v.queue.qsize() for v in hub._list_viewers)
                if hub.lagged:
                    break
            assert hub.lagged >= 1
            assert max(queued) <= hub.list_queue
