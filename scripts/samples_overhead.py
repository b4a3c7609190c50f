"""Measure what the sample tracker costs a training step, and how much it writes.

    .venv/bin/python scripts/samples_overhead.py [--steps 200] [--repeats 2] [--threads 1] \
        [--out docs/benchmarks/samples/overhead.json]

Two measurements, on MNIST with the default selector (mms, B=640, b=64):
- end to end: the same run (same seed) trained alternately with tracking off (samples_every=0) and
  on (the default samples_every=50, samples_k=64), ABAB so that drifting machine load hits both
  arms alike; the ratio on/off of the engine's training wall-clock (evaluation excluded), per
  repeat and the median. On a busy machine this ratio is noisy to a few percent either way;
- the tracker alone: its per-step work (`observe`, and `snapshot` every samples_every steps) on
  tensors of a real step's shapes (N=50,000, B=640, b=64, K=10), timed over many steps and divided
  by the measured step time of the "off" arm — the part of a step the tracker takes.
Also counts what tracking writes: snapshot events per 10,000 steps and their JSON bytes, and the
per-sample rows (at most the training-set size, updated in place).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from marginscope.engine.bench.machine import machine_info  # noqa: E402
from marginscope.engine.callbacks import Recorder  # noqa: E402
from marginscope.engine.config import TrainConfig  # noqa: E402
from marginscope.engine.events import Counters, SampleSnapshot  # noqa: E402
from marginscope.engine.monitoring import StepRecord  # noqa: E402
from marginscope.engine.samples import SampleTracker  # noqa: E402
from marginscope.engine.selection import Selection  # noqa: E402
from marginscope.engine.loop import train  # noqa: E402


def tracker_seconds_per_step(steps: int, every: int, k: int, n: int = 50_000, pool: int = 640,
                             b: int = 64, classes: int = 10, dim: int = 128) -> float:
    """Seconds of tracker work per step on a step's worth of real-shaped tensors (CPU)."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, classes, (n,), generator=g)
    tracker = SampleTracker(n, every=every, k=k, labels=labels, flipped=torch.arange(0),
                            device=torch.device("cpu"), scores_are_mms=True)  # as for mms
    weight = torch.randn(classes, dim, generator=g)
    records = []
    for _ in range(16):  # a few distinct steps, reused
        idx = torch.randperm(n, generator=g)[:pool]
        logits = torch.randn(pool, classes, generator=g)
        chosen = torch.randperm(pool, generator=g)[:b]
        selection = Selection(index=chosen, scores=torch.rand(pool, generator=g), logits=logits,
                              threshold=0.5)
        records.append(StepRecord(lr=0.1, selection=selection, chosen=chosen, labels=labels[idx],
                                  batch_labels=labels[idx][chosen], logits=logits[chosen],
                                  loss=torch.zeros(()), score_time=0.0, indices=idx))
    counters = Counters(step=0, epoch=0.0, samples_forwarded=0, samples_backpropagated=0, wall_time=0.0)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        record = records[step % len(records)]
        tracker.observe(record, record.indices, weight)
        if tracker.due(step, step == steps):
            tracker.snapshot(counters, scored=True)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/samples/overhead.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    defaults = TrainConfig()
    every, k = defaults.samples_every, defaults.samples_k
    base = dict(dataset="mnist", steps=args.steps, eval_every=args.steps, eval_samples=1000,
                regime="constant", seed=0, threads=args.threads)
    times: dict[str, list[float]] = {"off": [], "on": []}
    snapshots: list[SampleSnapshot] = []
    for repeat in range(args.repeats):
        for arm in ("off", "on"):
            rec = Recorder()
            result = train(TrainConfig(samples_every=0 if arm == "off" else every, samples_k=k, **base), [rec])
            times[arm].append(result.wall_time)
            if arm == "on":
                snapshots = rec.of(SampleSnapshot)
            print(f"repeat {repeat} {arm:>3}: {result.wall_time:.2f} s for {args.steps} steps", flush=True)
    ratios = [on / off for on, off in zip(times["on"], times["off"])]
    step_seconds = statistics.median(times["off"]) / args.steps
    tracker = tracker_seconds_per_step(2000, every, k)
    later = [s for s in snapshots if not s.flipped]  # the first one may carry the flipped list
    event_bytes = statistics.mean(len(json.dumps(s.to_dict())) for s in later or snapshots)
    row_bytes = statistics.mean(len(json.dumps(s.lowest)) + len(json.dumps(s.selected))
                                for s in later or snapshots)  # what a sample_snapshots row holds
    report: dict[str, Any] = {
        "command": f"python scripts/samples_overhead.py --steps {args.steps} --repeats {args.repeats}"
                   + (f" --threads {args.threads}" if args.threads else ""),
        "dataset": "mnist", "selector": defaults.selector, "candidates": defaults.candidates,
        "batch_size": defaults.batch_size, "samples_every": every, "samples_k": k,
        "end_to_end": {"wall_off": times["off"], "wall_on": times["on"],
                       "ratio_on_off": [round(r, 4) for r in ratios],
                       "median_ratio": round(statistics.median(ratios), 4)},
        "tracker": {"seconds_per_step": tracker, "step_seconds": step_seconds,
                    "share_of_step": round(tracker / step_seconds, 5)},
        "writes_per_10k_steps": {"snapshot_rows": 10_000 // every,
                                 "snapshot_json_bytes": round(event_bytes * (10_000 // every)),
                                 "mean_snapshot_json_bytes": round(event_bytes),
                                 "snapshot_row_json_bytes": round(row_bytes * (10_000 // every)),
                                 "per_sample_rows_at_most": 50_000},
        "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("end_to_end", "tracker", "writes_per_10k_steps")}, indent=2))


if __name__ == "__main__":
    main()
