"""Throughput of one run on 2 processes (DDP, gloo) against 1 process, on this machine.

    python scripts/ddp_bench.py [--out docs/benchmarks/scaling/ddp.json] [--steps 60] [--repeats 2]

Both sides train the same run (offline MNIST, small CNN, mms, the same global B and b) with the
same CPU budget: 1 process with as many torch threads as there are cores, against N processes with
cores/N threads each. They run alternately, `--repeats` times, through the user's own commands
(`marginscope train` and `marginscope train --nproc N`), and each side's median is kept.
Throughput is samples back-propagated per second of training wall time (the run's `wall_time`:
its steps, monitoring and, under DDP, the gradient all-reduce; not start-up, validation or test).
The JSON names the machine's core count and torch version, never its paths.
"""

from __future__ import annotations

import argparse
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

import torch

ROOT = Path(__file__).resolve().parents[1]
RUN = dict(dataset="mnist", selector="mms", candidates=256, batch_size=64, regime="constant", lr=0.05,
           eval_every=1000, eval_samples=500, hist_every=10, log_every=10, device="cpu", seed=0)


def train_once(nproc: int, threads: int, steps: int) -> dict[str, Any]:
    """One run through the command line; its summary.json plus the command's own wall clock."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [f"--{k.replace('_', '-')}={v}" for k, v in {**RUN, "steps": steps, "threads": threads}.items()]
        if nproc > 1:
            args.append(f"--nproc={nproc}")
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "marginscope.engine.cli", "train", *args, f"--out={tmp}"], cwd=ROOT,
                       check=True, stdout=subprocess.DEVNULL, timeout=900)
        elapsed = time.perf_counter() - started
        summary = json.loads((Path(tmp) / "summary.json").read_text())
    return {"nproc": nproc, "threads_per_process": threads, "steps": summary["steps"],
            "samples_backpropagated": summary["samples_backpropagated"],
            "wall_time": round(summary["wall_time"], 3),
            "samples_per_s": round(summary["samples_backpropagated"] / summary["wall_time"], 1),
            "command_seconds": round(elapsed, 1), "test_accuracy": summary["test_accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "scaling" / "ddp.json")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--nproc", type=int, default=2)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    # the same CPU budget both ways, and one process with one thread: what each rank has
    sides = [(1, cores), (args.nproc, max(1, cores // args.nproc)), (1, max(1, cores // args.nproc))]
    runs = []
    for repeat in range(args.repeats):
        for nproc, threads in sides:
            result = train_once(nproc, threads, args.steps)
            print(f"repeat {repeat}: {nproc} process(es) x {threads} thread(s): "
                  f"{result['samples_per_s']} samples/s", flush=True)
            runs.append(result)
    median = {(n, t): statistics.median(r["samples_per_s"] for r in runs
                                        if (r["nproc"], r["threads_per_process"]) == (n, t)) for n, t in sides}
    (one, ddp, single) = (median[side] for side in sides)
    report = {
        "what": "samples back-propagated per second of training wall time, one run, same global B and b",
        "command": f"python scripts/ddp_bench.py --steps {args.steps} --repeats {args.repeats} --nproc {args.nproc}",
        "machine": {"cpu_cores": cores, "torch": torch.__version__.split("+")[0], "python": platform.python_version(),
                    "backend": "gloo", "device": "cpu"},
        "run": {**RUN, "steps": args.steps},
        "repeats": args.repeats,
        "runs": runs,
        "median_samples_per_s": [{"nproc": n, "threads_per_process": t, "samples_per_s": round(v, 1)}
                                 for (n, t), v in median.items()],
        "ratio": round(ddp / one, 2),  # N processes / 1 process, the same CPU budget
        "ratio_vs_one_thread": round(ddp / single, 2),  # N processes / 1 process with one rank's threads
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.nproc} processes / 1 process: {report['ratio']}x ({ddp:.0f} vs {one:.0f} samples/s); "
          f"/ 1 process with {sides[2][1]} thread(s): {report['ratio_vs_one_thread']}x; wrote {args.out}")


if __name__ == "__main__":
    main()
