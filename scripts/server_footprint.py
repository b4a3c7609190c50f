"""How long `marginscope serve` takes to answer its first request, and how much memory it holds idle.

    .venv/bin/python scripts/server_footprint.py --out docs/benchmarks/server/footprint.json [--repeats 5]

Each repeat: a fresh temporary data dir, `marginscope db upgrade` on it (not timed), then
`python -m marginscope serve` on 127.0.0.1 and a free port, in its own process (uvicorn runs in it:
its pid is the server's). Timed: from just before the spawn to the first 200 of GET /api/session
(the cheapest route: no database, no token), polled every 10 ms. Then the server is left idle for
`--idle` seconds and its resident memory read from /proc/<pid>/status (VmRSS); then GET
/api/options (the launch form's vocabulary: the route that used to reach into the engine) and the
RSS read again. Whether the process mapped libtorch is read from /proc/<pid>/maps: the direct
answer to "did the server load torch". The server is stopped (SIGTERM, SIGKILL after 20 s) before
the next repeat.

One start before the repeats is not recorded: it fills the bytecode cache (unless
PYTHONDONTWRITEBYTECODE is set, which the JSON records) and the OS's file cache, as on a machine
that has served before. Writes the JSON to --out (median, min and max of each figure, and every
repeat's values; no machine paths). `render(before, after)` draws the table docs/server.md shows
from two such files (tests/backend/test_server_footprint_doc.py ties them). Linux only (/proc).

To measure another version of MarginScope with this same script, put its package first on
PYTHONPATH (the server subprocess inherits it, and a package found on the path wins over the
editable install): how docs/benchmarks/server/footprint_before.json measured the server before it
was torch-free.
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
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
START_TIMEOUT = 120.0
FIGURES = ("start_s", "rss_mb", "rss_after_options_mb")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """The process's resident set (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no VmRSS for pid {pid}")


def maps_torch(pid: int) -> bool:
    """Whether the process has torch's shared library mapped (it imported torch)."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def clean_env() -> dict[str, str]:
    """The caller's environment without any MARGINSCOPE_* setting: each repeat uses its own data dir."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MARGINSCOPE_")}


def one_start(idle: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        env = clean_env()
        subprocess.run([sys.executable, "-m", "marginscope", "db", "upgrade", "--data-dir", str(data_dir)],
                       env=env, check=True, capture_output=True)
        port = free_port()
        url = f"http://{HOST}:{port}"
        log = (Path(tmp) / "server.log").open("wb")
        began = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "marginscope", "serve", "--host", HOST, "--port",
                                 str(port), "--data-dir", str(data_dir)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with httpx.Client(timeout=5) as client:
                while True:
                    try:
                        if client.get(f"{url}/api/session").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if proc.poll() is not None:
                        raise SystemExit(f"the server exited ({proc.returncode}): "
                                         f"{(Path(tmp) / 'server.log').read_text()[-2000:]}")
                    if time.perf_counter() - began > START_TIMEOUT:
                        raise SystemExit(f"the server did not answer in {START_TIMEOUT:g} s")
                    time.sleep(0.01)
                start_s = time.perf_counter() - began
                time.sleep(idle)
                idle_rss = rss_mb(proc.pid)
                assert client.get(f"{url}/api/options").status_code == 200
                time.sleep(0.5)
                return {"start_s": round(start_s, 3), "rss_mb": round(idle_rss, 1),
                        "rss_after_options_mb": round(rss_mb(proc.pid), 1), "torch_loaded": maps_torch(proc.pid)}
        finally:
            stop(proc)
            log.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(20)


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}


def measure(repeats: int, idle: float) -> dict[str, Any]:
    one_start(idle)  # not recorded: fills the bytecode and file caches, as on a machine that served before
    runs = [one_start(idle) for _ in range(repeats)]
    results: dict[str, Any] = {
        "command": f"scripts/server_footprint.py --repeats {repeats} --idle {idle:g}",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "note": "one 2-core machine shared with other work",
                    "bytecode_cache": not os.environ.get("PYTHONDONTWRITEBYTECODE")},
        "repeats": repeats,
    }
    for figure in FIGURES:
        results[figure] = summary([r[figure] for r in runs])
    results["torch_loaded"] = any(r["torch_loaded"] for r in runs)
    results["runs"] = runs
    return results


def render(before: dict[str, Any], after: dict[str, Any]) -> str:
    """The table of docs/server.md, from footprint_before.json and footprint.json."""
    def cell(results: dict[str, Any], figure: str, unit: str, digits: int) -> str:
        s = results[figure]
        return f"{s['median']:.{digits}f} {unit} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"

    rows = [
        ("start to the first answered request, median (min–max)", "start_s", "s", 2),
        ("resident memory when idle, median (min–max)", "rss_mb", "MiB", 0),
        ("resident memory after GET /api/options, median (min–max)", "rss_after_options_mb", "MiB", 0),
    ]
    lines = ["| measure | before | after |", "|---|---|---|"]
    lines += [f"| {label} | {cell(before, f, u, d)} | {cell(after, f, u, d)} |" for label, f, u, d in rows]
    lines.append(f"| torch loaded in the server | {'yes' if before['torch_loaded'] else 'no'} | "
                 f"{'yes' if after['torch_loaded'] else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--idle", type=float, default=2.0, help="seconds idle before RSS is read")
    args = parser.parse_args()
    results = measure(args.repeats, args.idle)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({f: results[f] for f in (*FIGURES, "torch_loaded")}, indent=2))


if __name__ == "__main__":
    main()
