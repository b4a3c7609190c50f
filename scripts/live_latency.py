"""Measure how long a training step takes to reach a viewer's page, through the real write path.

    .venv/bin/python scripts/live_latency.py [--before DIR] [--repeats 3] [--out docs/benchmarks/scaling]

Each measurement starts `marginscope serve` in its own process (a fresh SQLite file) and reports
to it from this process with the engine's HttpReporter at its default settings, as every run does
(backend/worker.py: a launched run's trainer; `marginscope train --server`: a remote one). A
websocket client of /ws/runs/{id} notes when each step's rows arrive. Two runs per measurement:

- paced: scripts/ingest_bench.py's `latency()`: hand-made events of a typical step (StepMetrics,
  every 5 steps two 60-bin histograms and a class selection) 20 ms apart, each step stamped with
  its creation time in a Scalars event; arrival - creation;
- training: a real digits training (the engine's loop), a stamping callback placed before the
  reporter; arrival of a step's `train/loss` - the moment the loop emitted that StepMetrics.

Median, p95 and max per run. With `--before DIR` (scripts/code_sides.py) the older code is
measured in the same session, alternating with this checkout, `--repeats` times each; a figure of
the table is the median of its repeats. Writes latency.json (every repeat's figures, no machine
paths) and prints the table docs/scaling.md shows (`render`; tests/backend/test_live_doc.py ties
the two). All clocks are `time.time()` of this one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

HERE = Path(__file__).resolve().parent
GOAL_P95_S = 0.3  # the goal for a step's way to the page at the default settings


def load(name: str) -> Any:
    """A sibling script as a module (by path: a side measuring older code has no scripts/ on sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def delays(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    """median / p95 / max (s) of arrival - start over (start, arrival) pairs."""
    ordered = sorted(arrived - start for start, arrived in pairs)
    return {"received": len(ordered), "median_s": round(statistics.median(ordered), 3),
            "p95_s": round(ordered[int(0.95 * (len(ordered) - 1))], 3), "max_s": round(ordered[-1], 3)}


def training(dashboard: Any, spool: Path, steps: int) -> dict[str, Any]:
    """A real digits run reported through HttpReporter; emitted → arrived of each step's loss."""
    from marginscope.engine.config import TrainConfig
    from marginscope.engine.events import Event, StepMetrics
    from marginscope.engine.loop import train
    from marginscope.engine.remote import HttpReporter

    config = TrainConfig(dataset="digits", selector="mms", candidates=64, batch_size=16, steps=steps,
                         eval_every=100, hist_every=5, log_every=1, threads=1,
                         data_dir=str(dashboard.data_dir))
    reporter = HttpReporter(dashboard.url, config=config.model_dump(mode="json"), name="latency",
                            spool_dir=spool, close_timeout=120)
    emitted: dict[int, float] = {}
    arrived: dict[int, float] = {}
    ready, done = threading.Event(), threading.Event()

    def listen() -> None:
        with connect(f"ws://127.0.0.1:{dashboard.port}/ws/runs/{reporter.run_id}", max_size=None) as ws:
            ws.recv()  # the snapshot
            ready.set()
            while not done.is_set():
                try:
                    message = json.loads(ws.recv(timeout=1))
                except TimeoutError:
                    continue
                now = time.time()
                for step in (message.get("scalars") or {}).get("train/loss", {}).get("step", []):
                    arrived.setdefault(step, now)

    def stamp(event: Event) -> None:
        if isinstance(event, StepMetrics):
            emitted[event.counters.step] = time.time()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    ready.wait(30)
    start = time.time()
    train(config, callbacks=[stamp, reporter], should_stop=reporter.should_stop)
    took = time.time() - start
    assert reporter.close(), "not every event reached the dashboard"
    deadline = time.monotonic() + 10
    while len(arrived) < len(emitted) and time.monotonic() < deadline:
        time.sleep(0.1)
    done.set()
    listener.join(5)
    return {"steps": steps, "train_s": round(took, 2), "posts": reporter.batches,
            **delays([(emitted[s], arrived[s]) for s in emitted if s in arrived])}


def one_side(steps: int) -> dict[str, Any]:
    """Both runs against one fresh dashboard, with the code this process imports."""
    bench = load("ingest_bench")
    with tempfile.TemporaryDirectory() as tmp:
        data, spool = Path(tmp) / "data", Path(tmp) / "spool"
        data.mkdir()
        dashboard = bench.Dashboard(data)
        dashboard.start()
        try:
            paced = bench.latency(dashboard, spool)
            return {"paced": paced, "training": training(dashboard, spool, steps)}
        finally:
            dashboard.stop()


def median_of(repeats: list[dict[str, Any]], run: str, figure: str) -> float:
    return float(statistics.median(r[run][figure] for r in repeats))


def render(results: dict[str, Any]) -> str:
    """The table of docs/scaling.md, from latency.json: before and after, the median of the repeats."""
    sides = [side for side in ("before", "after") if side in results]
    lines = ["| step to page (s) | " + " | ".join(sides) + " |", "|---|" + "---|" * len(sides)]
    for run, label in (("paced", "paced events, 20 ms apart"), ("training", "a digits training")):
        for figure in ("median_s", "p95_s", "max_s"):
            cells = [f"{median_of(results[side], run, figure):.2f}" for side in sides]
            lines.append(f"| {label}: {figure.removesuffix('_s')} | " + " | ".join(cells) + " |")
    lines.append("| repeats, each side | " + " | ".join(str(len(results[side])) for side in sides) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "benchmarks" / "scaling")
    parser.add_argument("--before", type=Path, default=None, help="a source tree of the code to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400, help="steps of the training run")
    parser.add_argument("--side-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side_out is not None:  # a child of run_sides: one measurement with the code it imports
        args.side_out.write_text(json.dumps(one_side(args.steps)))
        return
    sides = load("code_sides").run_sides(Path(__file__), ["--steps", str(args.steps)], args.before, args.repeats)
    results = {"command": f"scripts/live_latency.py --repeats {args.repeats} --steps {args.steps}"
                          + (" --before <the code before>" if args.before else ""),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "note": "dashboard, reporter and viewer on one 2-core machine shared with other work"},
               "goal_p95_s": GOAL_P95_S, **sides}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latency.json").write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"wrote {args.out / 'latency.json'}")


if __name__ == "__main__":
    main()
