"""Measure the server under load: many live viewers of a training run, and a large export.

    .venv/bin/python scripts/load_figures.py viewers [--clients 50] [--steps 300]
    .venv/bin/python scripts/load_figures.py export [--rows 1000000] [--format csv]

Each starts `marginscope serve` on a free port of 127.0.0.1 with a temporary data dir and reads the
server's CPU time and memory from /proc (Linux).

- viewers: trains a real run in this process (digits, recorded by `record_run`, as the worker does)
  while N websocket clients read every message; prints the training time, the server's CPU seconds
  and its resident memory before and after (and its peak).
- export: writes a run of ROWS scalar rows straight through `log_batch`, then downloads its export
  to nowhere; prints the server's peak resident memory before and after the download.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from marginscope.backend.recording import record_run  # noqa: E402
from marginscope.backend.settings import Settings  # noqa: E402
from marginscope.backend.store import MetricPoint, Position, RunBatch, open_store  # noqa: E402
from marginscope.backend.store.db import upgrade  # noqa: E402
from marginscope.engine.config import TrainConfig  # noqa: E402


def proc(pid: int) -> dict[str, float]:
    """cpu (s), rss and peak (MB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    mb = {k: int(status[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}
    return {"cpu": cpu, "rss": mb["VmRSS"], "peak": mb["VmHWM"]}


def serve(data_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARGINSCOPE_")}
    env["PYTHONPATH"] = str(ROOT)
    server = subprocess.Popen([sys.executable, "-m", "marginscope.backend.cli", "serve", "--port", str(port),
                               "--data-dir", str(data_dir)], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/runs", timeout=1).status_code == 200:
                return server, port
        except httpx.HTTPError:
            time.sleep(0.2)


def viewers(clients: int, steps: int, settings: Settings) -> None:
    from marginscope.engine.loop import train

    server, port = serve(settings.data_dir)
    try:
        store = open_store(settings)
        config = TrainConfig(dataset="digits", selector="mms", candidates=64, batch_size=16,
                             steps=steps, eval_every=100, hist_every=5, log_every=1,
                             data_dir=str(settings.data_dir))
        run = store.create_run(name="viewers", config=config.model_dump(mode="json"))
        messages = [0] * clients
        ready = threading.Barrier(clients + 1)

        def client(i: int) -> None:
            with connect(f"ws://127.0.0.1:{port}/ws/runs/{run.id}", max_size=None) as ws:
                ws.recv()
                ready.wait()
                while True:
                    message = str(ws.recv(timeout=120))
                    messages[i] += 1
                    if '"status":"finished"' in message:
                        return

        with record_run(store, run.id, heartbeat_interval=settings.heartbeat_interval) as recorder:
            threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
            for t in threads:
                t.start()
            ready.wait()
            before, start = proc(server.pid), time.time()
            train(config, callbacks=[recorder], should_stop=recorder.should_stop)
            took = time.time() - start
        for t in threads:
            t.join(timeout=60)
        time.sleep(1)
        after = proc(server.pid)
        print(f"viewers={clients} steps={steps}: training {took:.1f} s, server CPU "
              f"{after['cpu'] - before['cpu']:.1f} s, RSS {before['rss']:.0f} → {after['rss']:.0f} MB "
              f"(peak {after['peak']:.0f} MB), messages per client {min(messages)}–{max(messages)}")
        store.close()
    finally:
        server.terminate()
        server.wait(timeout=20)


def export(rows: int, fmt: str, settings: Settings) -> None:
    store = open_store(settings)
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
    server, port = serve(settings.data_dir)
    try:
        httpx.get(f"http://127.0.0.1:{port}/api/runs/{run.id}", timeout=30)
        before, start, size = proc(server.pid), time.time(), 0
        with httpx.stream("GET", f"http://127.0.0.1:{port}/api/runs/{run.id}/export?format={fmt}",
                          timeout=600) as r:
            for chunk in r.iter_raw():
                size += len(chunk)
        after = proc(server.pid)
        print(f"export {fmt} of {rows:,} scalar rows: {size / 1e6:.1f} MB in {time.time() - start:.1f} s; "
              f"server peak RSS {before['peak']:.0f} → {after['peak']:.0f} MB "
              f"(+{after['peak'] - before['peak']:.0f} MB)")
    finally:
        server.terminate()
        server.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("viewers", "export"))
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", default="csv", choices=("csv", "json", "parquet"))
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp()) / "data"
    data_dir.mkdir(parents=True)
    settings = Settings(data_dir=data_dir)
    upgrade(settings.db_url)
    if args.what == "viewers":
        viewers(args.clients, args.steps, settings)
    else:
        export(args.rows, args.format, settings)


if __name__ == "__main__":
    main()
