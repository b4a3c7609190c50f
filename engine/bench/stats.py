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

Protocol v2 (docs/benchmarks.md, "Protocol v2"; computed for results whose settings say
``protocol: 2``, beside everything above):
- **sustained reach** (`sustained_reach`): an arm reaches a target at the first of `SUSTAIN`
  consecutive validations at or above it (one noisy validation is not a reach);
- **censoring** (`time_to`, `censored_ratio`, `bounded_summary`): a seed that never reaches a target
  is kept as a censored observation, its time "at least its whole run"; a ratio with a censored arm
  is a lower bound, with a censored reference an upper bound, with both unknown. The summary is the
  geometric mean with the bound's direction (``≥ 1.12×``), a t-interval only when no seed is
  censored, and never a seed dropped;
- **the uniform frontier** (`frontier_points`, `frontier_at`): per seed, uniform trained for 25, 50,
  75 and 100% of the run, each with its LR schedule fully decayed (the regimes scale to the run's
  length), as points (training time, final test accuracy) joined by straight lines. An arm's
  **frontier gap** is its final test accuracy minus the frontier's at the arm's own training time,
  paired per seed. Past the frontier's last point (an arm slower than uniform's whole run) the gap is
  taken against that last point and is an upper bound (uniform given more time is assumed to do no
  worse); before its first point, a lower bound; never a silent extrapolation;
- **endpoints** (`ENDPOINTS`): one primary endpoint named in the settings before the suite runs;
  every endpoint's per-arm paired t-test p-values are Holm-adjusted across the arms (`holm`).

Kept as one module: both protocols' tables pair the same runs with the same primitives (t-intervals,
ratios, reach), and v1 goes once the stored suites are re-run under v2; split then, by table.
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
    """Every table of a suite, from its raw runs (see the module docstring for the statistics).
    Protocol v2 results also get ``sustained``, ``frontier`` and ``endpoints`` (`protocol_v2`)."""
    table = _build_v1(results)
    if results["settings"].get("protocol", 1) >= 2:
        table.update(protocol_v2(results, table))
    return table


def _build_v1(results: dict[str, Any]) -> dict[str, Any]:
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
            for key, summary_key in (("gradient_share", "flipped_gradient_share"),
                                     ("predicted_true", "flipped_predicted_true")):
                values = [v for s in seeds if (r := by.get((arm, s)))
                          and (v := r["summary"].get(summary_key)) is not None]
                if values:  # runs from before the harm was logged have none
                    noise[arm][key] = mean_ci(values)

    return {"arms": arms, "seeds": seeds, "targets": [n for n, _ in targets],
            "target_values": {n: {arm: [f(arm, s) for s in seeds] for arm in arms} for n, f in targets},
            "plateau": {"share": share, "tolerance": tol}, "test_accuracy": test_acc, "rows": rows,
            "budgets": budgets, "phases": phases, "noise": noise}


# --- protocol v2 ---------------------------------------------------------------------------------

SUSTAIN = 3  # a target is reached at the first of 3 consecutive validations at or above it
TOTALS = {"step": "steps", "samples_forwarded": "samples_forwarded",
          "samples_backpropagated": "samples_backpropagated", "wall_time": "wall_time", "cpu_time": "cpu_time"}
V2_MEASURES = ("step", "wall_time", "cpu_time")
EXACT, LOWER, UPPER, UNKNOWN = "exact", "lower", "upper", "unknown"  # what a per-seed value is

# name: (what it measures, kind); kind "ratio" is summarised on logs, "points" on differences
ENDPOINTS: dict[str, tuple[str, str]] = {
    "frontier-gap-wall": ("final test accuracy minus uniform's frontier at the arm's wall-clock, points", "points"),
    "frontier-gap-cpu": ("final test accuracy minus uniform's frontier at the arm's CPU time, points", "points"),
    "test-accuracy": ("final test accuracy minus the reference's, points", "points"),
    "plateau-wall": ("wall-clock to uniform's plateau (sustained), arm / reference", "ratio"),
    "plateau-steps": ("steps to uniform's plateau (sustained), arm / reference", "ratio"),
}


def sustained_reach(evaluations: Sequence[dict[str, Any]], target: float, k: int = SUSTAIN) -> dict[str, Any] | None:
    """The first validation of the first `k` in a row at or above `target` (its counters), or None.

    A run whose last validations are above the target but fewer than `k` of them has not reached it
    (it is censored: the run ended before the reach could be confirmed)."""
    streak = 0
    for i, e in enumerate(evaluations):
        streak = streak + 1 if e["accuracy"] >= target - 1e-12 else 0
        if streak >= k:
            return evaluations[i - k + 1]
    return None


def run_total(run: dict[str, Any], measure: str) -> float | None:
    """A run's whole `measure` (steps, samples, seconds): what a seed that never reaches a target
    is known to need at least."""
    value = run["summary"].get(TOTALS.get(measure, measure))
    if value is None and run["evaluations"]:
        value = run["evaluations"][-1].get(measure)
    return value


def time_to(run: dict[str, Any], target: float, measure: str, k: int = SUSTAIN) -> tuple[float | None, bool]:
    """(`measure` at the sustained reach of `target`, False), or (the run's total, True) when the
    run never reaches it: a censored observation, the true value is at least the total."""
    hit = sustained_reach(run["evaluations"], target, k)
    if hit is not None:
        return hit.get(measure), False
    return run_total(run, measure), True


def censored_ratio(arm: tuple[float | None, bool], ref: tuple[float | None, bool]) -> tuple[float | None, str]:
    """arm / reference for one seed, each (value, censored): exact when both reached; a lower bound
    (the true ratio is at least this) when only the arm is censored; an upper bound when only the
    reference is; unknown when neither reached."""
    (a, a_cens), (r, r_cens) = arm, ref
    if a is None or r is None or a <= 0 or r <= 0:
        return None, UNKNOWN
    if a_cens and r_cens:
        return None, UNKNOWN
    return a / r, LOWER if a_cens else UPPER if r_cens else EXACT


def t_test_p(values: Sequence[float]) -> float | None:
    """Two-sided p-value of a one-sample t-test of mean 0 (paired differences or log ratios)."""
    n = len(values)
    if n < 2:
        return None
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    if sd == 0:
        return 1.0 if mean == 0 else 0.0
    return student_t_two_sided(mean / (sd / math.sqrt(n)), n - 1)


def student_t_two_sided(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom: the regularized incomplete beta
    I_x(df/2, 1/2) at x = df / (df + t^2). Pure Python (no scipy in the engine's dependencies);
    tests/engine/test_protocol_v2.py checks it against scipy and a closed form."""
    x = df / (df + t * t)
    return min(1.0, max(0.0, _betainc(df / 2, 0.5, x)))


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast on this side only: use the symmetry
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * f / a


def holm(pvalues: dict[str, float | None]) -> dict[str, float | None]:
    """Holm's step-down adjustment of a family of p-values (None: not tested, not counted in m).

    Sorted ascending p_(1) <= ... <= p_(m), the adjusted p_(i) is max over j <= i of
    min(1, (m - j + 1) p_(j))."""
    tested = sorted((p, name) for name, p in pvalues.items() if p is not None)
    m, running, out = len(tested), 0.0, {name: None for name in pvalues}
    for i, (p, name) in enumerate(tested):
        running = max(running, min(1.0, (m - i) * p))
        out[name] = running
    return out


def bounded_summary(values: Sequence[tuple[float | None, str]], log: bool = False) -> dict[str, Any]:
    """Summary over seeds of per-seed (value, kind) pairs, censored ones kept.

    All exact: the mean (geometric when `log`) with its 95% t-interval and t-test p-value. Exact and
    lower bounds only: the mean of the values is a lower bound of the true mean (``bound: "lower"``),
    likewise upper; lower and upper bounds together, or any unknown seed: no bound ("none")."""
    kinds = [k for _, k in values]
    counts = {k: kinds.count(k) for k in (EXACT, LOWER, UPPER, UNKNOWN)}
    out: dict[str, Any] = {"n": len(values), "counts": counts, "mean": None, "ci": None, "p": None,
                           "bound": None, "values": [v for v, _ in values], "kinds": kinds}
    if not values:
        return out
    if counts[UNKNOWN] or (counts[LOWER] and counts[UPPER]):
        out["bound"] = "none"
        return out
    xs = [math.log(v) if log else v for v, _ in values]
    s = mean_ci(xs)
    out["mean"] = math.exp(s["mean"]) if log else s["mean"]
    if counts[LOWER] or counts[UPPER]:
        out["bound"] = "lower" if counts[LOWER] else "upper"
        return out
    out["bound"] = "exact"
    if s["ci"]:
        out["ci"] = [math.exp(c) for c in s["ci"]] if log else s["ci"]
    out["p"] = t_test_p(xs)
    return out


def frontier_points(by: dict[tuple[str, int], dict[str, Any]], reference: str, seed: int,
                    clock: str) -> list[tuple[float, float, str]]:
    """Uniform's frontier at one seed: (training time on `clock`, final test accuracy, arm) of the
    reference run and of its shortened copies (runs with a ``frontier`` share), sorted by time."""
    points = []
    for (arm, s), run in by.items():
        if s != seed or (arm != reference and not (run.get("frontier") and reference_of(run) == reference)):
            continue
        t, acc = run_total(run, clock), run["summary"].get("test_accuracy")
        if t is not None and acc is not None:
            points.append((t, acc, arm))
    return sorted(points)


def frontier_at(points: Sequence[tuple[float, float, Any]], t: float) -> tuple[float | None, str]:
    """The frontier's accuracy at time `t`, straight lines between its points, and where `t` lies:
    "inside"; "after" its last point (the last point's accuracy is returned, and the arm's gap
    against it is an upper bound); "before" its first point (the first point's, a lower bound)."""
    if not points:
        return None, "none"
    if t > points[-1][0]:
        return points[-1][1], "after"
    if t < points[0][0]:
        return points[0][1], "before"
    for (t0, a0, *_), (t1, a1, *_) in zip(points, points[1:]):
        if t0 <= t <= t1:
            return (a0 if t1 == t0 else a0 + (a1 - a0) * (t - t0) / (t1 - t0)), "inside"
    return points[-1][1], "inside"  # a single point, at exactly its time


def protocol_v2(results: dict[str, Any], v1: dict[str, Any]) -> dict[str, Any]:
    """The protocol v2 tables: sustained time-to-target with censoring, the frontier gaps, and
    the endpoints with Holm-adjusted p-values (see the module docstring)."""
    runs, settings = results["runs"], results["settings"]
    arms, seeds = v1["arms"], v1["seeds"]
    by = {(r["arm"], r["seed"]): r for r in runs}
    ref_arm = {r["arm"]: reference_of(r) for r in runs}
    frontier_arms = {r["arm"] for r in runs if r.get("frontier")}
    k = settings.get("sustain", SUSTAIN)

    sustained = []
    for name in v1["targets"]:
        for arm in arms:
            row: dict[str, Any] = {"target": name, "arm": arm, "reached": 0, "seeds": 0}
            per = {m: [] for m in V2_MEASURES}
            for i, s in enumerate(seeds):
                run, base, target = by.get((arm, s)), by.get((ref_arm[arm], s)), v1["target_values"][name][arm][i]
                if run is None or target is None:
                    continue
                row["seeds"] += 1
                row["reached"] += sustained_reach(run["evaluations"], target, k) is not None
                for m in V2_MEASURES:
                    mine = time_to(run, target, m, k)
                    if base is not None and mine[0] is not None:
                        per[m].append(censored_ratio(mine, time_to(base, target, m, k)))
            for m in V2_MEASURES:
                row[m] = bounded_summary(per[m], log=True)
            sustained.append(row)

    frontier = []
    for clock in CLOCKS:
        for arm in arms:
            gaps, where = [], []
            for s in seeds:
                run = by.get((arm, s))
                if run is None or run["summary"].get("test_accuracy") is None:
                    continue
                t = run_total(run, clock)
                points = frontier_points(by, ref_arm[arm], s, clock)
                if t is None or not points:
                    continue
                acc, at = frontier_at(points, t)
                where.append(at)
                gaps.append((run["summary"]["test_accuracy"] - acc,
                             {"inside": EXACT, "after": UPPER, "before": LOWER}[at]))
            if gaps:
                frontier.append({"clock": clock, "arm": arm, "where": where, **bounded_summary(gaps)})

    primary = settings.get("primary")
    tested = [a for a in arms if a not in frontier_arms and ref_arm[a] != a]
    fgap = {(f["clock"], f["arm"]): f for f in frontier}
    plateau_rows = {r["arm"]: r for r in sustained if r["target"] == PLATEAU}
    endpoints = []
    for name, (what, kind) in ENDPOINTS.items():
        entries: dict[str, dict[str, Any]] = {}
        for arm in tested:
            if name.startswith("frontier-gap"):
                e = fgap.get(("wall_time" if name.endswith("wall") else "cpu_time", arm))
            elif name == "test-accuracy":
                e = bounded_summary([(d, EXACT) for d in _test_diffs(by, arm, ref_arm[arm], seeds)])
            else:
                e = (plateau_rows.get(arm) or {}).get("wall_time" if name.endswith("wall") else "step")
            if e and e["n"]:
                entries[arm] = e
        if not entries:
            continue
        adjusted = holm({a: e["p"] for a, e in entries.items()})
        for arm, e in entries.items():
            endpoints.append({"endpoint": name, "what": what, "kind": kind, "primary": name == primary,
                              "arm": arm, "reference": ref_arm[arm], "holm_m": sum(
                                  1 for x in entries.values() if x["p"] is not None),
                              "p_holm": adjusted[arm], **{key: e[key] for key in (
                                  "n", "counts", "mean", "ci", "p", "bound")}})
    return {"protocol": 2, "sustain": k, "sustained": sustained, "frontier": frontier,
            "frontier_arms": sorted(frontier_arms), "primary": primary, "endpoints": endpoints}


def _test_diffs(by: dict[tuple[str, int], dict[str, Any]], arm: str, ref: str, seeds: Sequence[int]) -> list[float]:
    out = []
    for s in seeds:
        run, base = by.get((arm, s)), by.get((ref, s))
        if run and base and run["summary"].get("test_accuracy") is not None \
                and base["summary"].get("test_accuracy") is not None:
            out.append(run["summary"]["test_accuracy"] - base["summary"]["test_accuracy"])
    return out
