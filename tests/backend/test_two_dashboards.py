"""Two dashboards (two `marginscope serve` processes) on one PostgreSQL database.

Runs launched from either are seen live by both (their runs websockets report both runs to the
end); each run is started by the dashboard it was launched from (its worker log is in that
dashboard's data folder, `launcher` names it); a restart of one dashboard does not re-attach,
crash or start the other's running run; and the other's run can be cancelled from either.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import DashboardProcess, wait_for
from websockets.sync.client import connect

from marginscope.backend.store.db import upgrade
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore

pytestmark = pytest.mark.slow

TINY = {"dataset": "digits", "selector": "mms", "candidates": 64, "batch_size": 16, "steps": 40,
        "eval_every": 20, "hist_every": 5, "log_every": 5}
HOST = socket.gethostname()


class Dashboard(DashboardProcess):
    """`marginscope serve` with its own data folder on a shared database, and a fast heartbeat."""

    def __init__(self, data_dir: Path, db_url: str) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(data_dir, {"MARGINSCOPE_DB_URL": db_url, "MARGINSCOPE_HEARTBEAT_INTERVAL": "0.5"})

    def run(self, run_id: int) -> dict[str, Any]:
        return dict(self.get(f"/api/runs/{run_id}"))


class RunsFeed:
    """A reader of a dashboard's /ws/runs in a thread: the last status it reported per run id."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.statuses: dict[int, str] = {}
        self._ws = connect(f"ws://127.0.0.1:{dashboard.port}/ws/runs", open_timeout=30)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _note(self, value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("id"), int) and isinstance(value.get("status"), str):
                self.statuses[value["id"]] = value["status"]
            for item in value.values():
                self._note(item)
        elif isinstance(value, list):
            for item in value:
                self._note(item)

    def _read(self) -> None:
        try:
            for text in self._ws:
                self._note(json.loads(text))
        except Exception:  # noqa: BLE001 - closed at the end of the test
            return

    def close(self) -> None:
        self._ws.close()
        self._thread.join(timeout=10)


@pytest.fixture
def dashboards(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Dashboard, Dashboard]]:
    upgrade(postgres_url)
    a = Dashboard(tmp_path / "a", postgres_url)
    b = Dashboard(tmp_path / "b", postgres_url)
    try:
        yield a.start(), b.start()
    finally:
        a.stop()
        b.stop()
        store = SqlAlchemyStore(postgres_url, data_dir=tmp_path)
        try:  # no worker may outlive the test, whatever it left running
            for run in store.list_runs(status="running")[0]:
                if run.pid:
                    with contextlib.suppress(OSError):
                        os.killpg(run.pid, signal.SIGKILL)
        finally:
            store.close()

def test_runs_from_either_dashboard_are_live_on_both_and_started_once(
        dashboards: tuple[Dashboard, Dashboard]) -> None:
    a, b = dashboards
    feeds = [RunsFeed(a), RunsFeed(b)]
    try:
        from_a = a.post("/api/runs", {"name": "from-a", "config": TINY}, expect=201)
        from_b = b.post("/api/runs", {"name": "from-b", "config": TINY}, expect=201)
        assert from_a["launcher"] == f"{HOST}:{a.port}" and from_b["launcher"] == f"{HOST}:{b.port}"
        ids = (from_a["id"], from_b["id"])
        wait_for(lambda: all(feed.statuses.get(i) == "finished" for feed in feeds for i in ids),
                 "both runs finished on both dashboards' live feeds")
        for dashboard in (a, b):
            for run_id in ids:
                assert dashboard.run(run_id)["status"] == "finished"
                assert dashboard.run(run_id)["progress"]["step"] == TINY["steps"]
        # each run was started by its own dashboard, once
        assert (a.data_dir / "runs" / str(from_a["id"]) / "worker.log").exists()
        assert not (b.data_dir / "runs" / str(from_a["id"])).exists()
        assert (b.data_dir / "runs" / str(from_b["id"]) / "worker.log").exists()
        assert not (a.data_dir / "runs" / str(from_b["id"])).exists()
    finally:
        for feed in feeds:
            feed.close()


def test_a_restarted_dashboard_leaves_the_others_run_alone_and_can_cancel_it(
        dashboards: tuple[Dashboard, Dashboard]) -> None:
    a, b = dashboards
    long_run = a.post("/api/runs", {"name": "long", "config": {**TINY, "steps": 100_000}}, expect=201)
    run_id = long_run["id"]
    wait_for(lambda: b.run(run_id)["status"] == "running" and b.run(run_id)["progress"]["step"] > 0,
             "the run of dashboard A training, seen from B")
    pid = b.run(run_id)["pid"]
    b.stop()
    b.start()  # its reconciliation sees a running run of another launcher
    step = b.run(run_id)["progress"]["step"]
    wait_for(lambda: b.run(run_id)["progress"]["step"] > step, "the run still training after B's restart", 60)
    run = b.run(run_id)
    assert (run["status"], run["pid"], run["launcher"]) == ("running", pid, f"{HOST}:{a.port}")
    assert not (b.data_dir / "runs" / str(run_id)).exists()  # B never started a worker for it
    b.post(f"/api/runs/{run_id}/cancel")  # same machine: B may signal A's worker
    wait_for(lambda: a.run(run_id)["status"] == "cancelled", "the run cancelled from B", 60)
