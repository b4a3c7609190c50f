"""Measure remote runs over HTTP: ingest throughput, step-to-page latency, events lost on a restart.

    .venv/bin/python scripts/ingest_bench.py [--out docs/benchmarks/scaling] [--events 20000]
        [--runs 8] [--run-events 5000] [--before REF]

Starts `marginscope serve` (a separate process, a fresh SQLite file in a temporary data dir, or a
fresh database of a throwaway PostgreSQL cluster) and reports to it with the engine's HttpReporter,
as `marginscope train --server` does (its default sending: at once when idle, batches of up to
1000 events while a post is in flight; each event spooled to a local file first). The events are the engine's own, made by hand so that the
network and the dashboard are measured, not the training: per step a StepMetrics, and every 5
steps the two MMS histograms (60 bins) and a ClassSelection.

1. throughput: `--events` events emitted as fast as possible by one client (its own process);
   the time from the first event to the dashboard's acknowledgement of the last (the reporter's
   close: every row is then committed, readable through the API). Events/s, and rows/s: the rows
   the store wrote for them (`marginscope.backend.recording.to_batch` counts them).
2. concurrent: `--runs` clients (one process each, released together) each report a run of
   `--run-events` events at once, on SQLite and on PostgreSQL: total events/s from the first
   event to the last acknowledgement, and how often the server's log says "database is locked".
3. latency (`latency()`; scripts/live_latency.py runs it too and stores latency.json, the figures
   docs/scaling.md shows): a paced run (a step every 20 ms, 400 steps) whose steps also carry a
   Scalars event {"bench/created": time of creation}; a websocket client of /ws/runs/{id} notes
   when each arrives. Median and p95 of arrival - creation: what a viewer of a remote run waits.
4. restart: a paced run (600 steps, 10 ms apart); the dashboard is killed (SIGKILL) after 150
   steps and started again 2 s later while training goes on. Then every emitted event is looked
   for in the store (its rows by kind and step): lost and duplicated events, counted one by one.
5. stages: where the server's time goes, each stage of the ingest route timed on its own in this
   process, with CPython's default garbage collector settings and with `marginscope serve`'s
   (scripts/ingest_stages.py).

`--before REF` measures 1 and 2 also with the code of the git commit REF (its engine/ and
backend/, from `git archive`, for the client and the server alike), side by side with this
checkout's in the same run, so both see the same machine load. Writes ingest.json (the
measurements, no machine paths) and prints the table docs/scaling.md shows (`render`, with the
figures stored before this change in ingest_before.json; tests/backend/test_ingest_doc.py ties
them).

Kept as one module: the four measurements share one server launcher, one event maker and one
reporter setup, and a reader checks a figure by reading how it was taken top to bottom.
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
sys.path.append(str(ROOT))  # after PYTHONPATH: `--before` imports the earlier commit's code

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

    def __init__(self, data_dir: Path, db_url: str | None = None) -> None:
        self.data_dir = data_dir
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_url = db_url or f"sqlite:///{data_dir / 'marginscope.db'}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MARGINSCOPE_")}
        self.env["MARGINSCOPE_DB_URL"] = self.db_url
        self.proc: subprocess.Popen[bytes] | None = None
        upgrade(self.db_url)

    def start(self) -> None:
        log = (self.data_dir / "server.log").open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "marginscope.backend.cli", "serve", "--port", str(self.port),
                                      "--data-dir", str(self.data_dir)], cwd=self.data_dir, env=self.env, stdout=log,
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
        return SqlAlchemyStore(self.db_url, data_dir=self.data_dir)

    def locked(self) -> int:
        """How many times the server's log says "database is locked"."""
        log = self.data_dir / "server.log"
        return log.read_text(errors="replace").count("database is locked") if log.exists() else 0


def reporter(dashboard: Dashboard, spool: Path, name: str) -> HttpReporter:
    return HttpReporter(dashboard.url, config=CONFIG.model_dump(mode="json"), name=name, spool_dir=spool,
                        max_backoff=1.0, close_timeout=120)


def run_events(n_events: int) -> list[Event]:
    """A run's first `n_events` events: RunStarted, then steps."""
    events: list[Event] = [started()]
    step = 0
    while len(events) < n_events:
        step += 1
        events += step_events(step)
    return events[:n_events]


def client(url: str, n_events: int, name: str) -> None:
    """One reporting process (`--client`): builds its events, says "ready", waits for a line on
    stdin, emits them as fast as it can, closes, and prints its times as one JSON line."""
    events = run_events(n_events)
    with tempfile.TemporaryDirectory() as spool:
        reporter = HttpReporter(url, config=CONFIG.model_dump(mode="json"), name=name, spool_dir=Path(spool),
                                max_backoff=1.0, close_timeout=300)
        print("ready", flush=True)
        sys.stdin.readline()
        t0 = time.time()
        for event in events:
            reporter(event)
        emitted = time.time()
        done = reporter.close()
        end = time.time()
    print(json.dumps({"start": t0, "emitted": emitted, "end": end, "done": done, "batches": reporter.batches}),
          flush=True)


def ingest(dashboard: Dashboard, runs: int, n_events: int) -> dict[str, Any]:
    """`runs` client processes, released together, each reporting a run of `n_events` events."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--client", dashboard.url, "--events", str(n_events)]
    procs = [subprocess.Popen([*cmd, "--name", f"ingest-{i}"], cwd=dashboard.data_dir, env=dashboard.env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE) for i in range(runs)]
    locked = dashboard.locked()
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", "a client did not start"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        answers = [json.loads(proc.communicate(timeout=600)[0].strip().splitlines()[-1]) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert all(a["done"] for a in answers), "not every event reached the dashboard"
    rows = sum(len(to_batch([e])[0].rows) for e in run_events(n_events)) * runs
    seconds = max(a["end"] for a in answers) - min(a["start"] for a in answers)
    return {"runs": runs, "events": n_events * runs, "rows": rows,
            "batches": sum(a["batches"] for a in answers), "seconds": round(seconds, 3),
            "emit_seconds": round(max(a["emitted"] - a["start"] for a in answers), 3),
            "events_per_s": round(n_events * runs / seconds), "rows_per_s": round(rows / seconds),
            "database_locked": dashboard.locked() - locked}


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


STORED_BEFORE = ROOT / "docs" / "benchmarks" / "scaling" / "ingest_before.json"  # ingest.json before fast ingest
GOALS = {"one": 20_000, "sqlite": 20_000, "postgresql": 50_000}  # events/s, from the issue


def render(results: dict[str, Any], stored_before: dict[str, Any]) -> str:
    """The tables of docs/scaling.md, from ingest.json and ingest_before.json (the figures stored
    before the fast ingest)."""
    t, c, r = results["throughput"], results["concurrent"], results["restart"]
    ref = results["before_ref"]

    def row(label: str, before: dict[str, Any], after: dict[str, Any], goal: int, stored: str = "–") -> str:
        return (f"| {label} | {stored} | {before['events_per_s']:,} | {after['events_per_s']:,} | "
                f"{after['events_per_s'] / goal:.0%} of {goal:,} |")

    runs = c["sqlite"]["after"]["runs"]
    return "\n".join([
        f"| ingest (events/s, first event to last row committed) | stored before | before ({ref}), this run "
        "| after, this run | after against the goal |",
        "|---|---|---|---|---|",
        row("one client, one run, SQLite", t["before"], t["after"], GOALS["one"],
            f"{stored_before['throughput']['events_per_s']:,}"),
        row(f"{runs} runs at once, SQLite", c["sqlite"]["before"], c["sqlite"]["after"], GOALS["sqlite"]),
        row(f"{runs} runs at once, PostgreSQL", c["postgresql"]["before"], c["postgresql"]["after"],
            GOALS["postgresql"]),
        f"| \"database is locked\" in the server log ({runs} runs, SQLite) | – | "
        f"{c['sqlite']['before']['database_locked']} | {c['sqlite']['after']['database_locked']} | none |",
        "",
        "| measure | result |",
        "|---|---|",
        f"| ingest throughput, one client (rows/s) | {t['after']['rows_per_s']:,} |",
        f"| events sent, rows written, batches | {t['after']['events']:,}, {t['after']['rows']:,}, "
        f"{t['after']['batches']:,} |",
        f"| dashboard killed and restarted mid-run: events sent | {r['events']:,} |",
        f"| events lost | {r['lost']} |",
        f"| events duplicated | {r['duplicated']} |",
        "",
        *render_stages(results["stages"]),
    ])


def render_stages(stages: dict[str, Any]) -> list[str]:
    """Where the server's time goes (scripts/ingest_stages.py), under both collector settings."""
    settings = list(stages)
    first = stages[settings[0]]
    lines = [f"| server stage, in process (ms per 1000 events, batches of {first['batch']:,}) | "
             + " | ".join(settings) + " |", "|---" * (len(settings) + 1) + "|"]
    for stage in first["ms_per_1000_events"]:
        lines.append(f"| {stage} | " + " | ".join(f"{stages[s]['ms_per_1000_events'][stage]:.1f}" for s in settings) + " |")
    lines.append("| all four: events/s | " + " | ".join(f"{stages[s]['events_per_s']:,}" for s in settings) + " |")
    return lines


def measure(events: int, runs: int, run_events: int, pg_url: str) -> dict[str, Any]:
    """`--measure`: throughput and concurrent ingest with the code this process imports (this
    checkout's, or `--before`'s through PYTHONPATH); each on a fresh database."""
    sys.path.insert(0, str(ROOT / "tests"))
    from postgres_cluster import create_database

    import marginscope.backend

    out: dict[str, Any] = {"code": "before" if os.environ.get("PYTHONPATH") and Path(marginscope.backend.__file__)
                           .is_relative_to(os.environ["PYTHONPATH"]) else "this checkout", "concurrent": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, db, n_runs, n_events in (("throughput", "sqlite", 1, events), ("sqlite", "sqlite", runs, run_events),
                                           ("postgresql", "postgresql", runs, run_events)):
            data = Path(tmp) / name
            data.mkdir()
            dashboard = Dashboard(data, create_database(pg_url) if db == "postgresql" else None)
            dashboard.start()
            try:
                result = ingest(dashboard, n_runs, n_events)
            finally:
                dashboard.stop()
            if name == "throughput":
                out["throughput"] = result
            else:
                out["concurrent"][name] = result
    return out


def checkout(ref: str, folder: Path) -> dict[str, str]:
    """The environment that imports `marginscope` from commit `ref` (engine/ and backend/ as the
    package maps them), extracted into `folder`."""
    archive = subprocess.run(["git", "archive", ref, "marginscope", "engine", "backend", "alembic", "frontend"],
                             cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    for part in ("engine", "backend"):
        (folder / "marginscope" / part).symlink_to(Path("..") / part)
    return {**os.environ, "PYTHONPATH": str(folder)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "scaling")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--run-events", type=int, default=5_000)
    parser.add_argument("--before", help="a git commit to measure throughput against, in the same run")
    parser.add_argument("--client", help=argparse.SUPPRESS)  # a reporting process of `ingest`
    parser.add_argument("--name", default="ingest", help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # PostgreSQL server URL: one side's figures
    args = parser.parse_args()
    if args.client:
        client(args.client, args.events, args.name)
        return
    if args.measure:
        print(json.dumps(measure(args.events, args.runs, args.run_events, args.measure)))
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from postgres_cluster import ThrowawayCluster

    import ingest_stages  # beside this script

    cluster = ThrowawayCluster().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sides = {"after": dict(os.environ)}
            if args.before:
                (Path(tmp) / "before").mkdir()
                sides = {"before": checkout(args.before, Path(tmp) / "before"), **sides}
            figures = {}
            for side, env in sides.items():
                done = subprocess.run([sys.executable, __file__, "--measure", cluster.url, "--events", str(args.events),
                                       "--runs", str(args.runs), "--run-events", str(args.run_events)],
                                      cwd=ROOT, env=env, check=True, capture_output=True, text=True)
                figures[side] = json.loads(done.stdout.strip().splitlines()[-1])
                print(side, json.dumps(figures[side]), flush=True)
            stages = ingest_stages.compare(run_events(args.events), CONFIG.model_dump(mode="json"))
            data, spool = Path(tmp) / "data", Path(tmp) / "spool"
            data.mkdir()
            dashboard = Dashboard(data)
            dashboard.start()
            try:
                paced = {"latency": latency(dashboard, spool), "restart": restart(dashboard, spool)}
            finally:
                dashboard.stop()
    finally:
        cluster.stop()
    before = figures.get("before", {})
    ref = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.strip() if args.before else None
    results = {
        "command": f"scripts/ingest_bench.py --events {args.events} --runs {args.runs} --run-events "
                   f"{args.run_events}" + (f" --before {ref}" if ref else ""),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "note": "dashboard, clients and PostgreSQL on one 2-core machine shared with other work; "
                            "before and after measured one after the other in this run"},
        "before_ref": ref,
        "throughput": {"before": before.get("throughput"), "after": figures["after"]["throughput"]},
        "concurrent": {db: {"before": before.get("concurrent", {}).get(db), "after": figures["after"]["concurrent"][db]}
                       for db in ("sqlite", "postgresql")},
        **paced,
        "stages": stages,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest.json").write_text(json.dumps(results, indent=2) + "\n")
    if ref:
        print(render(results, json.loads(STORED_BEFORE.read_text())))
    print(f"wrote {args.out / 'ingest.json'}")


if __name__ == "__main__":
    main()
