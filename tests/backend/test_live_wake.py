"""A step's way to the page has no interval to wait out: a real dashboard (uvicorn on 127.0.0.1),
the engine's HttpReporter and a websocket viewer.

- an idle reporter posts an event at once: with a flush interval of an hour, the event is stored
  all the same (a reporter that waited for its interval would hold it for that hour);
- the ingest route wakes the live hub: with the hub's fallback polling turned off (an hour), a
  viewer still receives the rows the route committed.

Speed is never asserted (scripts/live_latency.py measures it); the tests only tell "sent when
idle" and "woken by ingest" from "waited for an interval", which an hour makes unmistakable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_server import ThreadServer
from servers import wait_for
from store_events import run_started, step_metrics
from websockets.sync.client import connect

from marginscope.backend.live import LiveHub
from marginscope.backend.settings import Settings
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore
from marginscope.engine.remote import HttpReporter

HOUR = 3600.0
NEVER = {"flush_interval": HOUR, "heartbeat_interval": HOUR}  # no timer of the reporter fires in a test
CONFIG = {"dataset": "digits", "steps": 10}


@pytest.fixture
def server(settings: Settings) -> Iterator[ThreadServer]:
    with ThreadServer(settings, supervise=False) as s:
        yield s


def test_an_idle_reporter_posts_an_event_at_once(server: ThreadServer, store: SqlAlchemyStore,
                                                 tmp_path: Path) -> None:
    reporter = HttpReporter(server.url, config=CONFIG, spool_dir=tmp_path / "spool", **NEVER)
    try:
        assert reporter.run_id is not None  # created at once: the config was given
        reporter(run_started())
        wait_for(lambda: reporter.pending == 0, "the idle reporter to post its one event", timeout=60,
                 interval=0.05)
        assert store.get_run(reporter.run_id).ingest_seq == 1
        for step in (1, 2, 3):  # each event that finds the reporter idle goes out on its own
            reporter(step_metrics(step))
            wait_for(lambda: reporter.pending == 0, f"step {step} to be posted", timeout=60, interval=0.05)
        assert store.get_run(reporter.run_id).step == 3
    finally:
        assert reporter.close(timeout=30)


def test_the_ingest_route_wakes_the_hub(server: ThreadServer, tmp_path: Path) -> None:
    hub: LiveHub = server.app.state.hub  # type: ignore[attr-defined]
    hub.poll_interval = HOUR  # from its next turn on, the hub polls no run: only a wake reads one
    reporter = HttpReporter(server.url, config=CONFIG, spool_dir=tmp_path / "spool", **NEVER)
    try:
        reporter(run_started())
        wait_for(lambda: reporter.pending == 0, "RunStarted to be posted", timeout=60, interval=0.05)
        with connect(f"ws://127.0.0.1:{server.port}/ws/runs/{reporter.run_id}") as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "snapshot"
            steps: list[int] = []
            for step in (1, 2, 3):
                reporter(step_metrics(step))
                while step not in steps:  # a TimeoutError here: the rows waited for a poll
                    message = json.loads(ws.recv(timeout=30))
                    assert message["type"] == "delta", message
                    steps += message["scalars"].get("train/loss", {}).get("step", [])
            assert steps == [1, 2, 3]
    finally:
        assert reporter.close(timeout=30)
