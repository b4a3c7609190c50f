"""Time what PostgreSQL adds to CI: the PostgreSQL half of the suites that run on both databases.

    python scripts/postgres_suite_time.py            # runs the tests, writes the JSON
    python scripts/postgres_suite_time.py --redraw   # prints the docs table from the stored JSON

Runs `pytest -m postgres` (every test of the store, API, live-hub, recording and migration suites,
on a throwaway PostgreSQL cluster started once for the session) and then the same tests' SQLite
half, each in its own pytest process, and stores the wall-clock of each with the machine's load
in docs/benchmarks/scaling/postgres.json; `render` draws docs/scaling.md's table from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks" / "scaling" / "postgres.json"
# the modules that run on both databases (tests/conftest.py: BOTH_BACKENDS)
BOTH = ["tests/backend/test_store.py", "tests/backend/test_store_hardening.py", "tests/backend/test_recording.py",
        "tests/backend/test_writer.py", "tests/backend/test_downsample.py", "tests/backend/test_live.py",
        "tests/backend/test_live_fanout.py", "tests/db/test_migrations.py",
        "tests/backend/test_launcher_ownership.py"]
API_GLOB = "tests/backend/test_api_*.py"


def _pytest(marker: str, paths: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marker, *paths]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-500:]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    return {"marker": marker, "seconds": round(seconds, 1), "passed": counts.get("passed", 0),
            "failed": counts.get("failed", 0), "skipped": counts.get("skipped", 0),
            "returncode": done.returncode}


def measure() -> dict[str, Any]:
    paths = BOTH + sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(API_GLOB))
    load_before = os.getloadavg()[0]
    postgres = _pytest("postgres", paths)
    sqlite = _pytest("not postgres", paths)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": "python scripts/postgres_suite_time.py",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1m_before": round(load_before, 1),
                    "note": "2-core machine under load (shared with other work while measured)"},
        "postgres_half": postgres,
        "sqlite_half": sqlite,
        "added_seconds": postgres["seconds"],
    }


def render(results: dict[str, Any]) -> str:
    pg, lite = results["postgres_half"], results["sqlite_half"]
    return "\n".join([
        "| the suites on both databases | tests | wall-clock (s) |",
        "|---|---|---|",
        f"| SQLite half (`-m \"not postgres\"`) | {lite['passed']} | {lite['seconds']:.0f} |",
        f"| PostgreSQL half (`-m postgres`, what PostgreSQL adds to CI) | {pg['passed']} | {pg['seconds']:.0f} |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redraw", action="store_true", help="print the table from the stored JSON")
    args = parser.parse_args()
    if not args.redraw:
        results = measure()
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(render(json.loads(RESULTS.read_text())))


if __name__ == "__main__":
    main()
