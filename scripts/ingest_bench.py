"""Measure remote runs over HTTP: ingest throughput, step-to-page latency, events lost on a restart.

    .venv/bin/python scripts/ingest_bench.py [--out docs/benchmarks/scaling] [--events 20000]

Starts `marginscope serve` (a separate process, a fresh SQLite file in a temporary data dir) and
reports to it from this process with the engine's HttpReporter, as `marginscope train --server`
does (its default sending: at once when idle, batches of up to 500 events while a post is in
flight; each event spooled to a local file first). The events are the engine's own, made by hand so that the network and the dashboard are
measured, not the training: per step a StepMetrics, and every 5 steps the two MMS histograms
(60 bins) and a ClassSelection.

1. throughput: `--events` events emitted as fast as possible by one client; the time from the
   first event to the dashboard's acknowledgement of the last (the reporter's close). Events/s,
   and rows/s: the rows the store wrote for them (`marginscope.backend.recording.to_batch` counts them).
2. latency (`latency()`, run by scripts/live_latency.py, which stores its figures in
   latency.json): a paced run (a step every 20 ms, 400 steps) whose steps also carry a Scalars
   event {"bench/created": time of creation}; a websocket client of /ws/runs/{id} notes when each
   arrives. Median and p95 of arrival - creation: what a viewer of a remote run waits.
3. restart: a paced run (600 steps, 10 ms apart); the dashboard is killed (SIGKILL) after 150
   steps and started again 2 s later while training goes on. Then every emitted event is looked
   for in the store (its rows by kind and step): lost and duplicated events, counted one by one.

Writes ingest.json (the measurements, no machine paths) and prints the table docs/scaling.md
shows (`render`; tests/backend/test_ingest_doc.py ties the two).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from marginscope.backend.recording import to_batch  # noqa: E402
from marginscope.backend.store.db import upgrade  # noqa: E402
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore  # noqa: E402
from marginscope.engine.config import TrainConfig  # noqa: E402
from marginscope.engine.events import (  # noqa: E402
    ClassSelection,
    Counters,
    Event,
    Histogram,
    RunStarted,
    Scalars,
    StepMetrics,
)
from marginscope.engine.remote import HttpReporter  # noqa: E402

BINS = 60
CONFIG = TrainConfig(dataset="digits", selector="mms", candidates=640, batch_size=64, steps=100_000)


def counters(step: int) -> Counters:
    return Counters(step=step, epoch=step / 20, samples_forwarded=step * 704,
                    samples_backpropagated=step * 64, wall_time=step * 0.05)


def step_events(step: int) -> list[Event]:
    """One step of a typical run: StepMetrics, and every 5 steps two histograms and a selection."""
    c = counters(step)
    events: list[Event] = [StepMetrics(counters=c, lr=0.1, loss=1.0 / step, accuracy=0.9, samples_per_s=5000.0,
                                       score_time=0.01, step_time=0.05)]
    if step % 5 == 0:
        for population in ("candidates", "selected"):
            events.append(Histogram(counters=c, population=population, counts=[step % 7 + i for i in range(BINS)],  # type: ignore[arg-type]
                                    quantiles={"p5": 0.1, "p25": 0.2, "p50": 0.3, "p75": 0.4, "p95": 0.5},
                                    mean=0.3, count=640, threshold=0.25))
        events.append(ClassSelection(counters=c, candidate_counts=[64] * 10, selected_counts=[6] * 10,
                                     selected_misclassified=0.2))
    return events


def started() -> RunStarted:
    return RunStarted(config=CONFIG.model_dump(mode="json"), dataset={"name": "digits", "class_names": list("0123456789")},
                      model={"name": "small-cnn"}, device="cpu", total_steps=100_000, steps_per_epoch=20,
                      hist_edges=[float(i) for i in range(BINS + 1)])


class Dashboard:
    """`marginscope serve` in a subprocess on a fixed port and data dir (killed and restarted)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MARGINSCOPE_")}
        self.proc: subprocess.Popen[bytes] | None = None
        upgrade(f"sqlite:///{data_dir / 'marginscope.db'}")

    def start(self) -> None:
        log = (self.data_dir / "server.log").open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "marginscope.backend.cli", "serve", "--port", str(self.port),
                                      "--data-dir", str(self.data_dir)], cwd=ROOT, env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/options", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the dashboard did not start")

    def kill(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)

    def store(self) -> SqlAlchemyStore:
        return SqlAlchemyStore(f"sqlite:///{self.data_dir / 'marginscope.db'}", data_dir=self.data_dir)


def reporter(dashboard: Dashboard, spool: Path, name: str) -> HttpReporter:
    return HttpReporter(dashboard.url, config=CONFIG.model_dump(mode="json"), name=name, spool_dir=spool,
                        max_backoff=1.0, close_timeout=120)


def throughput(dashboard: Dashboard, spool: Path, n_events: int) -> dict[str, Any]:
    events: list[Event] = [started()]
    step = 0
    while len(events) < n_events:
        step += 1
        events += step_events(step)
    events = events[:n_events]
    rows = sum(len(to_batch([e])[0].rows) for e in events)
    client = reporter(dashboard, spool, "throughput")
    t0 = time.perf_counter()
    for event in events:
        client(event)
    emitted = time.perf_counter() - t0
    assert client.close(), "not every event reached the dashboard"
    seconds = time.perf_counter() - t0
    return {"events": n_events, "rows": rows, "batches": client.batches, "seconds": round(seconds, 3),
            "emit_seconds": round(emitted, 3), "events_per_s": round(n_events / seconds),
            "rows_per_s": round(rows / seconds)}


def latency(dashboard: Dashboard, spool: Path, steps: int = 400, pace: float = 0.02) -> dict[str, Any]:
    client = reporter(dashboard, spool, "latency")
    assert client.run_id is not None
    arrived: dict[float, float] = {}
    ready = threading.Event()
    done = threading.Event()

    def listen() -> None:
        with connect(f"ws://127.0.0.1:{dashboard.port}/ws/runs/{client.run_id}") as ws:
            ready.set()
            while not done.is_set():
                try:
                    message = json.loads(ws.recv(timeout=1))
                except TimeoutError:
                    continue
                now = time.time()
                column = (message.get("scalars") or {}).get("bench/created")
                if column:
                    for created in column["value"]:
                        arrived.setdefault(created, now)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    ready.wait(30)
    client(started())
    created = []
    for step in range(1, steps + 1):
        for event in step_events(step):
            client(event)
        t = time.time()
        created.append(t)
        client(Scalars(counters=counters(step), values={"bench/created": t}))
        time.sleep(pace)
    assert client.close()
    deadline = time.monotonic() + 10
    while len(arrived) < len(created) and time.monotonic() < deadline:
        time.sleep(0.1)
    done.set()
    listener.join(5)
    delays = sorted(arrived[t] - t for t in created if t in arrived)
    return {"steps": steps, "step_interval_s": pace, "received": len(delays),
            "median_s": round(statistics.median(delays), 3),
            "p95_s": round(delays[int(0.95 * (len(delays) - 1))], 3), "max_s": round(delays[-1], 3)}


def restart(dashboard: Dashboard, spool: Path, steps: int = 600, pace: float = 0.01,
            kill_at: int = 150, down_s: float = 2.0) -> dict[str, Any]:
    client = reporter(dashboard, spool, "restart")
    run_id = client.run_id
    emitted: list[Event] = [started()]
    client(emitted[0])
    down_until = None
    for step in range(1, steps + 1):
        for event in step_events(step):
            client(event)
            emitted.append(event)
        if step == kill_at:
            dashboard.kill()
            down_until = time.monotonic() + down_s
        if down_until is not None and time.monotonic() >= down_until:
            threading.Thread(target=dashboard.start, daemon=True).start()  # training goes on meanwhile
            down_until = None
        time.sleep(pace)
    assert client.close(), "not every event reached the dashboard"
    store = dashboard.store()
    try:
        want = Counter(_key(e) for e in emitted)
        got: Counter[tuple[Any, ...]] = Counter()
        got.update(("step", r.step) for r in store.get_scalars(run_id, keys=["train/loss"]))
        for population in ("candidates", "selected"):
            got.update(("histogram", population, h.step)
                       for h in store.iter_histograms(run_id, population, until_seq=2**62))
        got.update(("selection", s.step) for s in store.iter_selection(run_id, until_seq=2**62))
        got[("started",)] = int(bool(store.get_run(run_id).run_info.get("dataset")))
    finally:
        store.close()
    lost = sum((want - got).values())
    duplicated = sum((got - want).values())
    return {"events": len(emitted), "killed_after_step": kill_at, "down_s": down_s, "lost": lost,
            "duplicated": duplicated}


def _key(event: Event) -> tuple[Any, ...]:
    if isinstance(event, StepMetrics):
        return ("step", event.counters.step)
    if isinstance(event, Histogram):
        return ("histogram", event.population, event.counters.step)
    if isinstance(event, ClassSelection):
        return ("selection", event.counters.step)
    return ("started",)


def render(results: dict[str, Any]) -> str:
    """The table of docs/scaling.md, from ingest.json."""
    t, r = results["throughput"], results["restart"]
    return "\n".join([
        "| measure | result |",
        "|---|---|",
        f"| ingest throughput, one client (events/s) | {t['events_per_s']:,} |",
        f"| ingest throughput, one client (rows/s) | {t['rows_per_s']:,} |",
        f"| events sent, rows written, batches | {t['events']:,}, {t['rows']:,}, {t['batches']:,} |",
        f"| dashboard killed and restarted mid-run: events sent | {r['events']:,} |",
        f"| events lost | {r['lost']} |",
        f"| events duplicated | {r['duplicated']} |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "scaling")
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data, spool = Path(tmp) / "data", Path(tmp) / "spool"
        data.mkdir()
        dashboard = Dashboard(data)
        dashboard.start()
        try:
            results = {
                "command": f"scripts/ingest_bench.py --events {args.events}",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "note": "dashboard and client on one 2-core machine shared with other work"},
                "throughput": throughput(dashboard, spool, args.events),
                "restart": restart(dashboard, spool),
            }
        finally:
            dashboard.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"wrote {args.out / 'ingest.json'}")


if __name__ == "__main__":
    main()
