"""The table's arithmetic: when each arm first reaches each target, and how that compares with
uniform at the same seed.

Pure functions of the raw validation curves (the ``runs`` of a results dict), so a table can be
rebuilt from a saved ``results.json`` and checked without training anything.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

MEASURES = ("step", "samples_forwarded", "samples_backpropagated", "wall_time")


def first_reach(evaluations: Sequence[dict[str, Any]], target: float) -> dict[str, Any] | None:
    """The first validation at or above `target` (its counters), or None."""
    return next((e for e in evaluations if e["accuracy"] >= target - 1e-12), None)


def _mean_sd(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation; None where there are too few values for either."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def build_table(results: dict[str, Any]) -> dict[str, Any]:
    """Rows of (arm, target): how many seeds reached it, mean measures, mean per-seed ratios."""
    runs = results["runs"]
    arms = list(dict.fromkeys(r["arm"] for r in runs))
    seeds = list(dict.fromkeys(r["seed"] for r in runs))
    by = {(r["arm"], r["seed"]): r for r in runs}
    uniform = {s: by.get(("uniform", s)) for s in seeds}
    targets: list[tuple[str, Callable[[int], float | None]]] = [
        ("uniform's best", lambda s: uniform[s]["summary"]["best_val_accuracy"] if uniform[s] else None)]
    for t in results["settings"]["targets"]:
        targets.append((f"{t:.1%}", lambda s, t=t: t))

    test_acc = {}
    for arm in arms:
        accs = [by[(arm, s)]["summary"]["test_accuracy"] for s in seeds if (arm, s) in by
                and by[(arm, s)]["summary"]["test_accuracy"] is not None]
        mean, sd = _mean_sd(accs)
        test_acc[arm] = {"mean": mean, "sd": sd, "n": len(accs)}

    rows = []
    for name, target_of in targets:
        for arm in arms:
            reached, ratios = [], {m: [] for m in MEASURES}
            for s in seeds:
                run, target = by.get((arm, s)), target_of(s)
                if run is None or target is None:
                    continue
                hit = first_reach(run["evaluations"], target)
                if hit is None:
                    continue
                reached.append(hit)
                base = first_reach(uniform[s]["evaluations"], target) if uniform[s] else None
                if base is not None:
                    for m in MEASURES:
                        if base[m] > 0:
                            ratios[m].append(hit[m] / base[m])
            row: dict[str, Any] = {"target": name, "arm": arm, "reached": len(reached),
                                   "seeds": sum(1 for s in seeds if (arm, s) in by)}
            for m in MEASURES:
                row[m] = statistics.fmean(h[m] for h in reached) if reached else None
                row[f"{m}_ratio"] = statistics.fmean(ratios[m]) if ratios[m] else None
                row[f"{m}_ratios"] = ratios[m]
            rows.append(row)
    return {"arms": arms, "seeds": seeds, "targets": [n for n, _ in targets], "test_accuracy": test_acc,
            "target_values": {n: [f(s) for s in seeds] for n, f in targets}, "rows": rows}
