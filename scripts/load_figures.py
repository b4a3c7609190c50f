"""Measure the server under load: many live viewers of a training run, and a large export.

    .venv/bin/python scripts/load_figures.py viewers [--clients 1 50] [--steps 1500] [--before DIR] [--repeats 2]
    .venv/bin/python scripts/load_figures.py export [--rows 1000000] [--format csv]

Each starts `marginscope serve` (scripts/ingest_bench.py's `Dashboard`: its own process, a fresh
SQLite file) and reads the server's CPU time and memory from /proc (Linux).

- viewers: for each N of `--clients`, a real digits training in this process reports to the
  dashboard through the engine's HttpReporter at its default settings (the write path of every
  run: backend/worker.py), while N websocket viewers of the run, in a process of their own (as
  browsers are), note when each message arrives. Per N: the training time, the server's CPU
  seconds and resident memory before and after (and its peak), the messages per viewer, and the
  longest any viewer waited for its next message while the run wrote rows (from its first message
  after training started to the end of training). The slowdown is the training time with N
  viewers over the time with the first N (1). With `--before DIR` (scripts/code_sides.py) the
  older code is measured in the same session, alternating, `--repeats` times each; the table
  shows the median of the repeats. Writes viewers.json and prints the table docs/reliability.md
  shows (`render`; tests/backend/test_live_doc.py ties the two).
- export: writes a run of ROWS scalar rows straight through `log_batch`, then downloads its export
  to nowhere; prints the server's peak resident memory before and after the download.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
GOALS = {"slowdown": 1.05, "max_wait_s": 1.0, "rss_growth_mb": 50}  # the issue's, for 50 viewers


def load(name: str) -> Any:
    """A sibling script as a module (by path: a side measuring older code has no scripts/ on sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def proc(pid: int) -> dict[str, float]:
    """cpu (s), rss and peak (MB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    mb = {k: int(status[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}
    return {"cpu": cpu, "rss": mb["VmRSS"], "peak": mb["VmHWM"]}


async def watch(port: int, run_id: int, clients: int, out: Path, timeout: float = 600) -> None:
    """The viewers' process: `clients` sockets on the run; says "ready" once every snapshot came,
    then notes the arrival time of every message until each saw the run finish; writes them to `out`."""
    from websockets.asyncio.client import connect

    sockets = [await connect(f"ws://127.0.0.1:{port}/ws/runs/{run_id}", max_size=None) for _ in range(clients)]
    for ws in sockets:
        await ws.recv()  # the snapshot
    arrivals: list[list[float]] = [[] for _ in sockets]
    print("ready", flush=True)

    async def read(ws: Any, times: list[float]) -> None:
        async for message in ws:
            times.append(time.time())
            if '"status":"finished"' in message:
                return

    try:
        await asyncio.wait_for(asyncio.gather(*(read(ws, t) for ws, t in zip(sockets, arrivals))), timeout)
    finally:
        out.write_text(json.dumps(arrivals))
        for ws in sockets:
            await ws.close()


def longest_wait(times: list[float], start: float, end: float) -> float:
    """The longest gap between a viewer's messages from its first one after `start` to `end`."""
    inside = [t for t in times if start < t <= end]
    return max((b - a for a, b in zip(inside, inside[1:])), default=end - start)


def one_viewers_run(bench: Any, clients: int, steps: int, tmp: Path) -> dict[str, Any]:
    from marginscope.engine.config import TrainConfig
    from marginscope.engine.loop import train
    from marginscope.engine.remote import HttpReporter

    data, spool = tmp / f"data-{clients}", tmp / f"spool-{clients}"
    data.mkdir()
    dashboard = bench.Dashboard(data)
    dashboard.start()
    try:
        config = TrainConfig(dataset="digits", selector="mms", candidates=64, batch_size=16, steps=steps,
                             eval_every=100, hist_every=5, log_every=1, data_dir=str(data))
        reporter = HttpReporter(dashboard.url, config=config.model_dump(mode="json"), name="viewers",
                                spool_dir=spool, close_timeout=120)
        out = tmp / f"arrivals-{clients}.json"
        viewers = subprocess.Popen([sys.executable, str(Path(__file__)), "watch", "--port", str(dashboard.port),
                                    "--run", str(reporter.run_id), "--clients", str(clients), "--arrivals", str(out)],
                                   stdout=subprocess.PIPE, text=True)
        try:
            assert viewers.stdout is not None and viewers.stdout.readline().strip() == "ready"
            before, start = proc(dashboard.proc.pid), time.time()
            train(config, callbacks=[reporter], should_stop=reporter.should_stop)
            end = time.time()
            assert reporter.close(), "not every event reached the dashboard"
            viewers.wait(120)
        finally:
            if viewers.poll() is None:
                viewers.kill()
                viewers.wait()
        time.sleep(1)
        after = proc(dashboard.proc.pid)
    finally:
        dashboard.stop()
    arrivals = json.loads(out.read_text())
    waits = [longest_wait(times, start, end) for times in arrivals]
    counts = [len(times) for times in arrivals]
    return {"clients": clients, "steps": steps, "train_s": round(end - start, 2),
            "server_cpu_s": round(after["cpu"] - before["cpu"], 2), "rss_before_mb": round(before["rss"], 1),
            "rss_after_mb": round(after["rss"], 1), "rss_growth_mb": round(after["rss"] - before["rss"], 1),
            "peak_mb": round(after["peak"], 1), "messages_min": min(counts), "messages_max": max(counts),
            "max_wait_s": round(max(waits), 3), "median_max_wait_s": round(statistics.median(waits), 3)}


def viewers_side(clients: list[int], steps: int) -> dict[str, Any]:
    """One run per viewer count, each against a fresh dashboard, with the code this process imports."""
    bench = load("ingest_bench")
    with tempfile.TemporaryDirectory() as tmp:
        return {str(n): one_viewers_run(bench, n, steps, Path(tmp)) for n in clients}


def median_of(repeats: list[dict[str, Any]], clients: str, figure: str) -> float:
    return float(statistics.median(r[clients][figure] for r in repeats))


def slowdown(repeats: list[dict[str, Any]], clients: str, base: str) -> float:
    """The median over repeats of (training time with `clients` viewers / with `base` viewers)."""
    return float(statistics.median(r[clients]["train_s"] / r[base]["train_s"] for r in repeats))


def render(results: dict[str, Any]) -> str:
    """The table of docs/reliability.md, from viewers.json (medians of the repeats)."""
    lines = ["| | training time | slowdown | server CPU | server RSS growth | messages per viewer "
             "| longest wait for a message |", "|---|---|---|---|---|---|---|"]
    for side in ("after", "before"):
        if side not in results:
            continue
        repeats = results[side]
        counts = list(repeats[0])
        for clients in counts:
            label = f"{clients} viewer{'s' if clients != '1' else ''}"
            messages = (f"{min(r[clients]['messages_min'] for r in repeats)}–"
                        f"{max(r[clients]['messages_max'] for r in repeats)}")
            lines.append(f"| {'before, ' if side == 'before' else ''}{label} "
                         f"| {median_of(repeats, clients, 'train_s'):.1f} s "
                         f"| {slowdown(repeats, clients, counts[0]):.2f}× "
                         f"| {median_of(repeats, clients, 'server_cpu_s'):.1f} s "
                         f"| {median_of(repeats, clients, 'rss_growth_mb'):.0f} MB "
                         f"| {messages} | {median_of(repeats, clients, 'max_wait_s'):.2f} s |")
    return "\n".join(lines)


def export(rows: int, fmt: str) -> None:
    from marginscope.backend.store import MetricPoint, Position, RunBatch

    with tempfile.TemporaryDirectory() as tmp:
        dashboard = load("ingest_bench").Dashboard(Path(tmp))  # migrates the fresh database
        store = dashboard.store()
        run = store.create_run(name="export", config={"dataset": "digits"})
        keys, per_batch = ("train/loss", "train/accuracy", "lr", "samples_per_s", "step_time"), 50_000
        written = 0
        while written < rows:
            points = []
            for i in range(written, min(rows, written + per_batch)):
                step = i // len(keys) + 1
                at = Position(step=step, epoch=step / 100, samples_forwarded=step * 64,
                              samples_backpropagated=step * 16, wall_time=step * 0.01)
                points.append(MetricPoint(key=keys[i % len(keys)], at=at, value=1.0 / step))
            store.log_batch(run.id, RunBatch(rows=points))
            written += len(points)
        store.close()
        dashboard.start()
        try:
            httpx.get(f"{dashboard.url}/api/runs/{run.id}", timeout=30)
            before, start, size = proc(dashboard.proc.pid), time.time(), 0
            with httpx.stream("GET", f"{dashboard.url}/api/runs/{run.id}/export?format={fmt}", timeout=600) as r:
                for chunk in r.iter_raw():
                    size += len(chunk)
            after = proc(dashboard.proc.pid)
            print(f"export {fmt} of {rows:,} scalar rows: {size / 1e6:.1f} MB in {time.time() - start:.1f} s; "
                  f"server peak RSS {before['peak']:.0f} → {after['peak']:.0f} MB "
                  f"(+{after['peak'] - before['peak']:.0f} MB)")
        finally:
            dashboard.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("viewers", "export", "watch"))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 50], help="viewer counts; the first is the base")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--before", type=Path, default=None, help="a source tree of the code to compare with")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "benchmarks" / "scaling")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", default="csv", choices=("csv", "json", "parquet"))
    parser.add_argument("--side-out", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)  # watch: the viewers' process
    parser.add_argument("--run", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--arrivals", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.what == "export":
        export(args.rows, args.format)
    elif args.what == "watch":
        asyncio.run(watch(args.port, args.run, args.clients[0], args.arrivals))
    elif args.side_out is not None:  # a child of run_sides: one measurement with the code it imports
        args.side_out.write_text(json.dumps(viewers_side(args.clients, args.steps)))
    else:
        counts = [str(n) for n in args.clients]
        sides = load("code_sides").run_sides(Path(__file__), ["viewers", "--steps", str(args.steps), "--clients",
                                                              *counts], args.before, args.repeats)
        results = {"command": f"scripts/load_figures.py viewers --clients {' '.join(counts)} --steps {args.steps} "
                              f"--repeats {args.repeats}" + (" --before <the code before>" if args.before else ""),
                   "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                               "note": "dashboard, training and viewers on one 2-core machine shared with other work"},
                   "goals": GOALS, **sides}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "viewers.json").write_text(json.dumps(results, indent=2) + "\n")
        print(render(results))
        print(f"wrote {args.out / 'viewers.json'}")


if __name__ == "__main__":
    main()
