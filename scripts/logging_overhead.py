"""Measure the worker's slowdown from full logging to the store versus no logging at all.

    .venv/bin/python scripts/logging_overhead.py [--steps 300] [--repeats 2] [--dataset mnist]

Trains the same run (same seed) alternately in two ways, in this process, ABAB so that drifting
machine load hits both arms alike:
- "none":  no callbacks, monitoring off (hist_every=0) — the engine alone;
- "full":  what backend/worker.py does with the most detailed settings: the run recorded by
           `record_run` (batched writer, heartbeat) into a temporary SQLite store, step metrics
           every step (log_every=1), histograms and selection statistics every step (hist_every=1).
Prints each run's training wall-clock (the engine's own counter, evaluation excluded) and the ratio
full / none per repeat and overall.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from marginscope.backend.recording import record_run  # noqa: E402
from marginscope.backend.settings import Settings  # noqa: E402
from marginscope.backend.store import open_store  # noqa: E402
from marginscope.backend.store.db import upgrade  # noqa: E402
from marginscope.engine.config import TrainConfig  # noqa: E402
from marginscope.engine.loop import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--selector", default="mms")
    args = parser.parse_args()
    base = dict(dataset=args.dataset, selector=args.selector, steps=args.steps, eval_every=args.steps,
                eval_samples=1000, regime="constant", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=tmp)
        upgrade(settings.db_url)
        store = open_store(settings)
        times: dict[str, list[float]] = {"none": [], "full": []}
        for repeat in range(args.repeats):
            for arm in ("none", "full"):
                if arm == "none":
                    result = train(TrainConfig(hist_every=0, log_every=args.steps, **base))
                else:
                    run = store.create_run(name=f"full-{repeat}", config=base, tags=[], notes="")
                    with record_run(store, run.id, heartbeat_interval=settings.heartbeat_interval) as recorder:
                        result = train(TrainConfig(hist_every=1, log_every=1, **base), [recorder],
                                       should_stop=recorder.should_stop)
                times[arm].append(result.wall_time)
                print(f"repeat {repeat} {arm:>4}: {result.wall_time:.2f} s for {args.steps} steps", flush=True)
            print(f"repeat {repeat} ratio full/none: {times['full'][-1] / times['none'][-1]:.3f}", flush=True)
        store.close()
    ratio = statistics.median(f / n for f, n in zip(times["full"], times["none"]))
    print(f"median ratio full/none over {args.repeats} repeats: {ratio:.3f} "
          f"({args.dataset}, {args.selector}, {args.steps} steps)")


if __name__ == "__main__":
    main()
