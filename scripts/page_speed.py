"""How fast the compare page draws 10 runs of 10,000 steps, in a real Chromium: a benchmark, not a test.

    .venv/bin/python scripts/page_speed.py [--runs 10] [--steps 10000] [--loads 5] [--out docs/benchmarks/pages]

Records the runs into a temporary data dir through the project's own recording layer (the same
synthetic event streams the browser tests use: step metrics, MMS histograms and selection
statistics every 10 steps, validation every 100), serves them with `uvicorn
marginscope.backend.main:create_app` on a free loopback port, and opens
/compare?runs=...&group=selector in headless Chromium (Playwright, the system's chromium).

Timed: navigation start → every plot of the page drawn (`window.__compareLoadMs`, set by
js/compare.js). The first load is cold (empty cache); the next ones are warm (reloads in the same
browser context: the HTML is revalidated, the versioned scripts come from the cache). Also
written: which plotly.js was served and its size on the wire (gzip) and unpacked. The JSON goes
to <out>/compare_<runs>x<steps>.json with the machine it ran on and its load (on a shared machine
the server's twenty-odd API answers, not plotly.js, are most of a warm load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the tests' dashboard subprocess (servers.py)
sys.path.insert(0, str(REPO / "tests" / "frontend"))  # the browser tests' server and recorded runs

from dashboard_helpers import CHROMIUM_ARGS, Server, chromium_path  # noqa: E402
from recorded_runs import record  # noqa: E402

from marginscope.backend.routes.pages import plotly_bundle  # noqa: E402


def record_runs(server: Server, runs: int, steps: int) -> list[int]:
    from marginscope.backend.settings import Settings
    from marginscope.backend.store import open_store

    store = open_store(Settings(data_dir=server.data_dir, db_url=""))
    try:
        return [record(store, f"{'uniform' if k % 2 == 0 else 'mms'}-seed{k // 2}", k // 2,
                       "uniform" if k % 2 == 0 else "mms", steps=steps) for k in range(runs)]
    finally:
        store.close()


def measure(url: str, loads: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise SystemExit("Chromium not found (apt-get install -y chromium)")
    times: list[float] = []
    plotly: dict[str, Any] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        page = context.new_page()
        for attempt in range(loads):
            if attempt == 0:
                page.goto(url)
            else:
                page.reload()
            deadline = time.monotonic() + 120
            while not page.evaluate("window.__compareLoadMs"):
                if time.monotonic() > deadline:
                    raise SystemExit("the compare page did not draw in 120 s")
                page.wait_for_timeout(20)
            times.append(round(page.evaluate("window.__compareLoadMs"), 1))
            if attempt == 0:
                entry = page.evaluate("performance.getEntriesByType('resource').find(e => e.name.includes('plotly'))?.toJSON()")
                plotly = {"url_path": entry["name"].split("//", 1)[-1].split("/", 1)[-1],
                          "transfer_bytes": entry["transferSize"], "decoded_bytes": entry["decodedBodySize"]}
        browser.close()
    return {"cold_ms": times[0], "warm_ms": times[1:], "warm_median_ms": statistics.median(times[1:]),
            "plotly_js": plotly}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--loads", type=int, default=5, help="page loads: one cold, then warm reloads")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "pages")
    args = parser.parse_args()
    if args.loads < 2:
        parser.error("--loads must be at least 2 (one cold, one warm)")

    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        server.migrate()
        started = time.monotonic()
        ids = record_runs(server, args.runs, args.steps)
        print(f"recorded {args.runs} runs x {args.steps} steps in {time.monotonic() - started:.0f} s")
        server.start()
        try:
            url = f"{server.url}/compare?runs={','.join(map(str, ids))}&baseline={ids[0]}&group=selector"
            result = measure(url, args.loads)
        finally:
            server.stop()
    bundle = plotly_bundle()
    report = {
        "what": "navigation start to every plot drawn on /compare (grouped by selector), Chromium headless",
        "runs": args.runs, "steps": args.steps, "loads": args.loads, **result,
        "plotly_bundle": bundle.name if bundle else None,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    # a busy machine slows the server's answers, which dominate a warm load
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"compare_{args.runs}x{args.steps}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"written to {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
