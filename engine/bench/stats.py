"""The tables' arithmetic: when each arm first reaches each target, how that compares with its
reference (uniform, same seed, same data) as paired per-seed ratios with 95% confidence intervals,
the best accuracy each arm reaches within equal time budgets, where its time goes, and (under label
noise) how often it trains on a flipped label.

Pure functions of the raw validation curves (the ``runs`` of a results dict), so a table can be
rebuilt from a saved ``results.json`` and checked without training anything. Older result files
(without CPU time, plateau settings or references) still build: what they lack shows as missing.

Statistics, stated once (docs/benchmarks.md repeats them):
- a ratio (arm / reference at the same seed) is summarised by its geometric mean over seeds with a
  95% Student-t interval computed on the log ratios (ratios multiply, so their logs are averaged);
- a difference (accuracy) by its mean over seeds with a 95% Student-t interval on the paired
  per-seed differences;
- one seed gives a point and no interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

MEASURES = ("step", "samples_forwarded", "samples_backpropagated", "wall_time", "cpu_time")
CLOCKS = ("wall_time", "cpu_time")
PLATEAU = "uniform's plateau"
DEFAULT_TARGETS = (0.98, 0.985, 0.988, 0.99, 0.992)
DEFAULT_BUDGETS = (0.25, 0.5, 0.75, 1.0)
DEFAULT_PLATEAU_SHARE = 0.1  # the plateau is the mean of the last 10% of evaluations (at least 3)
DEFAULT_PLATEAU_TOLERANCE = 0.001  # target = plateau - 0.1 points

# two-sided 95% Student-t quantiles t_{0.975, df}; beyond 30 degrees of freedom the normal's 1.96
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    return _T975[df - 1] if 1 <= df <= len(_T975) else 1.96


def mean_ci(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample sd and 95% t-interval of `values` (None where too few)."""
    n = len(values)
    if n == 0:
        return {"mean": None, "sd": None, "ci": None, "n": 0}
    mean = statistics.fmean(values)
    if n == 1:
        return {"mean": mean, "sd": None, "ci": None, "n": 1}
    sd = statistics.stdev(values)
    half = t975(n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "sd": sd, "ci": [mean - half, mean + half], "n": n}


def ratio_ci(ratios: Sequence[float]) -> dict[str, Any]:
    """Geometric mean of positive ratios and its 95% t-interval (on the logs)."""
    logs = [math.log(r) for r in ratios if r > 0]
    s = mean_ci(logs)
    if s["mean"] is None:
        return {"mean": None, "ci": None, "n": 0}
    return {"mean": math.exp(s["mean"]), "n": s["n"],
            "ci": [math.exp(s["ci"][0]), math.exp(s["ci"][1])] if s["ci"] else None}


def first_reach(evaluations: Sequence[dict[str, Any]], target: float) -> dict[str, Any] | None:
    """The first validation at or above `target` (its counters), or None."""
    return next((e for e in evaluations if e["accuracy"] >= target - 1e-12), None)


def plateau(evaluations: Sequence[dict[str, Any]], share: float = DEFAULT_PLATEAU_SHARE) -> float | None:
    """Mean validation accuracy of the last `share` of the evaluations (at least 3 of them)."""
    if not evaluations:
        return None
    k = min(len(evaluations), max(3, math.ceil(share * len(evaluations))))
    return statistics.fmean(e["accuracy"] for e in evaluations[-k:])


def reference_of(run: dict[str, Any]) -> str:
    """The arm a run is compared with: uniform under the same data settings (label noise ...)."""
    return run.get("reference", "uniform")


def _clock_total(run: dict[str, Any], clock: str) -> float | None:
    value = run["summary"].get(clock)
    if value is None and run["evaluations"]:
        value = run["evaluations"][-1].get(clock)
    return value


def _best_within(run: dict[str, Any], clock: str, limit: float) -> float | None:
    accs = [e["accuracy"] for e in run["evaluations"] if e.get(clock) is not None and e[clock] <= limit + 1e-9]
    return max(accs) if accs else None


def build_table(results: dict[str, Any]) -> dict[str, Any]:
    """Every table of a suite, from its raw runs (see the module docstring for the statistics)."""
    runs = results["runs"]
    settings = results["settings"]
    arms = list(dict.fromkeys(r["arm"] for r in runs))
    seeds = list(dict.fromkeys(r["seed"] for r in runs))
    by = {(r["arm"], r["seed"]): r for r in runs}
    ref_arm = {r["arm"]: reference_of(r) for r in runs}

    def ref(arm: str, seed: int) -> dict[str, Any] | None:
        return by.get((ref_arm[arm], seed))

    share = settings.get("plateau_share", DEFAULT_PLATEAU_SHARE)
    tol = settings.get("plateau_tolerance", DEFAULT_PLATEAU_TOLERANCE)
    targets: list[tuple[str, Callable[[str, int], float | None]]] = []

    def plateau_target(arm: str, seed: int) -> float | None:
        base = ref(arm, seed)
        p = plateau(base["evaluations"], share) if base else None
        return None if p is None else p - tol

    targets.append((PLATEAU, plateau_target))
    for t in settings.get("targets", DEFAULT_TARGETS):
        targets.append((f"{t:.1%}", lambda arm, seed, t=t: t))

    test_acc = {}
    for arm in arms:
        accs, diffs = [], []
        for s in seeds:
            run, base = by.get((arm, s)), ref(arm, s)
            acc = run["summary"].get("test_accuracy") if run else None
            if acc is None:
                continue
            accs.append(acc)
            if base is not None and base["summary"].get("test_accuracy") is not None:
                diffs.append(acc - base["summary"]["test_accuracy"])
        test_acc[arm] = {**mean_ci(accs), "diff": mean_ci(diffs), "reference": ref_arm[arm]}

    rows = []
    for name, target_of in targets:
        for arm in arms:
            reached, ratios = [], {m: [] for m in MEASURES}
            for s in seeds:
                run, target = by.get((arm, s)), target_of(arm, s)
                if run is None or target is None:
                    continue
                hit = first_reach(run["evaluations"], target)
                if hit is None:
                    continue
                reached.append(hit)
                base = ref(arm, s)
                base_hit = first_reach(base["evaluations"], target) if base else None
                if base_hit is not None:
                    for m in MEASURES:
                        if hit.get(m) is not None and base_hit.get(m):
                            ratios[m].append(hit[m] / base_hit[m])
            row: dict[str, Any] = {"target": name, "arm": arm, "reached": len(reached),
                                   "seeds": sum(1 for s in seeds if (arm, s) in by)}
            for m in MEASURES:
                values = [h[m] for h in reached if h.get(m) is not None]
                row[m] = statistics.fmean(values) if values else None
                summary = ratio_ci(ratios[m])
                row[f"{m}_ratio"], row[f"{m}_ci"] = summary["mean"], summary["ci"]
                row[f"{m}_ratios"] = ratios[m]
            rows.append(row)

    budgets = []
    for clock in CLOCKS:
        for f in settings.get("budgets", DEFAULT_BUDGETS):
            for arm in arms:
                bests, diffs = [], []
                for s in seeds:
                    run, base = by.get((arm, s)), ref(arm, s)
                    total = _clock_total(base, clock) if base else None
                    if run is None or not total:
                        continue
                    best = _best_within(run, clock, f * total)
                    if best is None:
                        continue
                    bests.append(best)
                    base_best = _best_within(base, clock, f * total)
                    if base_best is not None:
                        diffs.append(best - base_best)
                if bests:
                    budgets.append({"clock": clock, "budget": f, "arm": arm, **mean_ci(bests),
                                    "diff": mean_ci(diffs)})

    phases = {}
    for arm in arms:
        shares: dict[str, list[float]] = {"score": [], "refresh": [], "wall_per_step": [], "cpu_per_step": []}
        for s in seeds:
            run = by.get((arm, s))
            summary = run["summary"] if run else {}
            wall, times = summary.get("wall_time"), summary.get("phase_times") or {}
            if not wall or not times:
                continue
            shares["score"].append(times.get("score_wall_time", 0.0) / wall)
            shares["refresh"].append(times.get("refresh_wall_time", 0.0) / wall)
            shares["wall_per_step"].append(wall / max(summary.get("steps", 1), 1))
            shares["cpu_per_step"].append(times.get("cpu_time", 0.0) / max(summary.get("steps", 1), 1))
        if shares["score"]:
            phases[arm] = {k: statistics.fmean(v) for k, v in shares.items()}

    noise = {}
    for arm in arms:
        flipped = [r["selected_flipped_share"] for s in seeds if (r := by.get((arm, s)))
                   and r.get("selected_flipped_share") is not None]
        if flipped:
            noise[arm] = {**mean_ci(flipped), "label_noise": by[(arm, seeds[0])].get("label_noise")}

    return {"arms": arms, "seeds": seeds, "targets": [n for n, _ in targets],
            "target_values": {n: {arm: [f(arm, s) for s in seeds] for arm in arms} for n, f in targets},
            "plateau": {"share": share, "tolerance": tol}, "test_accuracy": test_acc, "rows": rows,
            "budgets": budgets, "phases": phases, "noise": noise}
