"""End to end: the real server (`marginscope serve` in a subprocess), real workers, real websockets.

One test walks a user's path: launch a tiny `digits` run through the API and watch its deltas over
a websocket until it finishes; stop the dashboard while a run trains and find it re-attached after a
restart, then cancel it; kill -9 a worker while the dashboard is down, find it crashed after the
restart's reconciliation with its reported metrics kept, and resume it to the end: the resumed
worker sends what the killed one spooled but never reported, so the series is whole.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import REPO, DashboardProcess, wait_for
from websockets.sync.client import connect

pytestmark = pytest.mark.slow

TINY = {"dataset": "digits", "selector": "mms", "candidates": 64, "batch_size": 16, "steps": 60,
        "eval_every": 20, "hist_every": 5, "log_every": 5}


class Server(DashboardProcess):
    """`marginscope serve` with a fast heartbeat, and the CLI's other commands on its data dir."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, {"MARGINSCOPE_HEARTBEAT_INTERVAL": "0.5"})

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "marginscope.backend.cli", *args, "--data-dir", str(self.data_dir)],
                              cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120,
                              check=False)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data")
    srv.data_dir.mkdir()
    assert srv.cli("db", "upgrade").returncode == 0
    srv.start()
    yield srv
    srv.stop()
    listing = srv.cli("runs", "list", "--json")
    for run in json.loads(listing.stdout)["data"] if listing.returncode == 0 else []:
        if run["status"] == "running" and run["pid"]:  # leave no worker behind
            try:
                os.killpg(run["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def test_launch_watch_restart_cancel_crash_resume(server: Server) -> None:
    # --- 1. a tiny run, watched live over a websocket until it finishes
    run = server.post("/api/runs", {"name": "e2e", "config": TINY}, expect=201)
    rid = run["id"]
    deltas: list[dict[str, Any]] = []
    with connect(f"ws://127.0.0.1:{server.port}/ws/runs/{rid}", open_timeout=30) as ws:
        snapshot = json.loads(ws.recv(timeout=30))
        assert snapshot["type"] == "snapshot" and snapshot["run"]["id"] == rid
        seq = snapshot["seq"]
        status = snapshot["run"]["status"]
        while status not in ("finished", "failed"):
            message = json.loads(ws.recv(timeout=120))
            if message["type"] == "samples":  # a new sample snapshot (outside the seq cursor)
                assert message["items"] and message["step"] > 0
                continue
            assert message["type"] == "delta" and message["seq"] > seq
            seq = message["seq"]
            deltas.append(message)
            if message["run"]:
                status = message["run"]["status"]
    assert status == "finished", server.get(f"/api/runs/{rid}")
    streamed = sorted({s for d in deltas for s in d["scalars"].get("train/loss", {}).get("step", [])})
    assert streamed[-1] == 60 and len(streamed) >= 6  # deltas arrived while it trained
    # how many deltas carry scalars depends on how fast the tiny run trains versus the writer's
    # 0.5 s flush: on an idle machine the whole run can arrive in one or two deltas
    assert sum(1 for d in deltas if d["scalars"]) >= 1
    done = server.get(f"/api/runs/{rid}")
    assert done["progress"]["step"] == 60 and "test/accuracy" in done["latest"]
    loss = server.get(f"/api/runs/{rid}/metrics?keys=train/loss")["series"]["train/loss"]
    assert loss["step"] == list(range(5, 61, 5))
    hist = server.get(f"/api/runs/{rid}/histograms?population=selected")
    assert hist["steps"] and len(hist["edges"]) == len(hist["counts"][0]) + 1
    assert (server.data_dir / "runs" / str(rid) / "worker.log").exists()

    # --- 2. the dashboard restarts while a run trains: re-attached, then cancelled
    long = server.post("/api/runs", {"config": {**TINY, "steps": 100_000, "eval_every": 1000}},
                       expect=201)["id"]
    wait_for(lambda: server.get(f"/api/runs/{long}")["progress"]["step"] >= 10, "run 2 to train")
    pid = server.get(f"/api/runs/{long}")["pid"]
    server.stop()
    assert _alive(pid), "stopping the dashboard must not stop the worker"
    server.start()
    assert server.get(f"/api/runs/{long}")["status"] == "running"  # re-attached
    server.post(f"/api/runs/{long}/cancel")
    wait_for(lambda: server.get(f"/api/runs/{long}")["status"] == "cancelled", "the cancel", 60)
    wait_for(lambda: not _alive(pid), "the worker to exit", 30)
    server.post(f"/api/runs/{long}/cancel", expect=409)

    # --- 3. kill -9 while the dashboard is down → crashed at restart → resume to the end
    # long enough (200 steps, many seconds of training) that it is still training when it is frozen,
    # a few milliseconds after the check below: a run that finished first would test nothing
    crash_cfg = {**TINY, "steps": 200, "checkpoint_every": 20, "eval_every": 40}
    rid3 = server.post("/api/runs", {"config": crash_cfg}, expect=201)["id"]
    wait_for(lambda: (server.get(f"/api/runs/{rid3}")["checkpoint_step"] or 0) >= 20
             and server.get(f"/api/runs/{rid3}")["progress"]["step"] >= 30, "run 3 to checkpoint")
    before = server.get(f"/api/runs/{rid3}")
    os.killpg(before["pid"], signal.SIGSTOP)  # frozen: it cannot report or end while we stop
    assert before["status"] == "running" and before["progress"]["step"] < 200
    server.stop()
    os.killpg(before["pid"], signal.SIGKILL)
    wait_for(lambda: not _alive(before["pid"]), "the kill", 10)
    server.start()
    crashed = server.get(f"/api/runs/{rid3}")
    assert crashed["status"] == "crashed" and "gone" in crashed["error"]
    kept = server.get(f"/api/runs/{rid3}/metrics?keys=train/loss")["series"]["train/loss"]["step"]
    assert kept and kept[-1] >= before["progress"]["step"]  # flushed rows survive the kill
    assert server.post(f"/api/runs/{rid3}/resume")["status"] == "queued"
    wait_for(lambda: server.get(f"/api/runs/{rid3}")["status"] in ("finished", "failed"), "the resume")
    final = server.get(f"/api/runs/{rid3}")
    assert final["status"] == "finished", final["error"]
    steps = server.get(f"/api/runs/{rid3}/metrics?keys=train/loss")["series"]["train/loss"]["step"]
    assert steps == list(range(5, 201, 5))  # one series, continued, no duplicated steps
    logs = [line["message"] for line in server.get(f"/api/runs/{rid3}/logs")["data"]]
    assert any("resum" in m for m in logs)
