"""Measure the delay from a training step's event to a websocket client of the real server.

    .venv/bin/python scripts/live_latency.py [--steps 400] [--clients 1]

Starts `marginscope serve` on a free port with a temporary data dir, creates a run directly in the
store, and trains it *in this process* with the real engine, recorded by `record_run` (what
backend/worker.py does), while websocket clients in threads receive the deltas. Three clocks per
step (all `time.time()` on this machine):

- emitted:   when the engine handed the StepMetrics event to the callbacks (a stamping callback
             placed before the writer);
- committed: when the `store.log_batch` transaction holding that step returned (a thin wrapper
             around the store);
- arrived:   when a client's websocket received the delta holding that step's `train/loss`.

Prints median / p95 / max of emitted→arrived (what a user sees: includes the writer's 0.5 s flush
interval) and committed→arrived (the hub's own share: 0.1 s polling + coalescing + send).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, cast

import httpx
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from marginscope.backend.recording import record_run
from marginscope.backend.settings import Settings
from marginscope.backend.store import AbstractStore, MetricPoint, RunBatch, open_store
from marginscope.backend.store.db import upgrade
from marginscope.engine.config import TrainConfig
from marginscope.engine.events import Event, StepMetrics


class TimedStore:
    """Delegates to the real store; records when each log_batch transaction returned."""

    def __init__(self, store: Any, committed: dict[int, float]) -> None:
        self._store, self._committed = store, committed

    def log_batch(self, run_id: int, batch: RunBatch) -> int:
        seq = self._store.log_batch(run_id, batch)
        now = time.time()
        for row in batch.rows:
            if isinstance(row, MetricPoint) and row.key == "train/loss":
                self._committed.setdefault(row.at.step, now)
        return seq

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--clients", type=int, default=1)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp()) / "data"
    data_dir.mkdir(parents=True)
    settings = Settings(data_dir=data_dir)
    upgrade(settings.db_url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARGINSCOPE_")}
    server = subprocess.Popen([sys.executable, "-m", "marginscope.backend.cli", "serve", "--port", str(port),
                               "--data-dir", str(data_dir)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/runs", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        store = open_store(settings)
        config = TrainConfig(dataset="digits", selector="mms", candidates=64, batch_size=16,
                             steps=args.steps, eval_every=100, hist_every=5, log_every=1,
                             data_dir=str(data_dir))
        run = store.create_run(name="latency", config=config.model_dump(mode="json"))
        emitted: dict[int, float] = {}
        committed: dict[int, float] = {}
        arrived: list[dict[int, float]] = [{} for _ in range(args.clients)]
        messages = [0] * args.clients
        ready = threading.Barrier(args.clients + 1)

        def client(i: int) -> None:
            with connect(f"ws://127.0.0.1:{port}/ws/runs/{run.id}") as ws:
                json.loads(ws.recv())
                ready.wait()
                while True:
                    message = json.loads(ws.recv())
                    now = time.time()
                    messages[i] += 1
                    for step in message["scalars"].get("train/loss", {}).get("step", []):
                        arrived[i].setdefault(step, now)
                    if message["run"] and message["run"]["status"] == "finished":
                        return

        def stamp(event: Event) -> None:
            if isinstance(event, StepMetrics):
                emitted[event.counters.step] = time.time()

        from marginscope.engine.loop import train

        timed = cast(AbstractStore, TimedStore(store, committed))
        # marked running at once: the server's launcher starts the queued runs it sees
        with record_run(timed, run.id, heartbeat_interval=settings.heartbeat_interval) as recorder:
            threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
            for t in threads:
                t.start()
            ready.wait()
            start = time.time()
            train(config, callbacks=[stamp, recorder], should_stop=recorder.should_stop)
        took = time.time() - start
        for t in threads:
            t.join(timeout=30)

        for i in range(args.clients):
            steps = sorted(set(arrived[i]) & set(emitted) & set(committed))
            e2a = [(arrived[i][s] - emitted[s]) * 1000 for s in steps]
            c2a = [(arrived[i][s] - committed[s]) * 1000 for s in steps]
            e2c = [(committed[s] - emitted[s]) * 1000 for s in steps]
            print(f"client {i}: {len(steps)} steps matched, {messages[i]} messages in {took:.1f} s "
                  f"({messages[i] / took:.1f}/s)")
            for name, xs in (("emitted→arrived", e2a), ("emitted→committed", e2c),
                             ("committed→arrived", c2a)):
                print(f"  {name:<18} median {statistics.median(xs):6.0f} ms   p95 {pct(xs, 0.95):6.0f} ms"
                      f"   max {max(xs):6.0f} ms")
        store.close()
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
