"""What a suite leaves behind: ``results.md`` (the tables, with the setting and the machine it ran
on), ``curves.html`` (validation accuracy vs steps, wall-clock and CPU time, mean line and min-max
band over seeds) and ``results.json`` (everything, raw curves included). The same table functions
write the generated blocks of docs/benchmarks.md and the README (engine/bench/docs.py).

The figure embeds plotly.js, so the page opens offline and a results folder is self-contained.

Kept as one module: every table's Markdown shares the same formatters (counts, percentages, ratios
with bounds and intervals), and the v1 tables go once the stored suites are re-run under v2.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any


def _fmt_count(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def _fmt_pct(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}%}"


def _fmt_ratio(v: float | None, ci: list[float] | None = None) -> str:
    if v is None:
        return "—"
    return f"{v:.2f}×" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _fmt_points(stat: dict[str, Any]) -> str:
    """A difference of accuracies in points, with its CI: +0.21 [+0.05, +0.37]."""
    if not stat or stat.get("mean") is None:
        return "—"
    text = f"{stat['mean'] * 100:+.2f}"
    return text + (f" [{stat['ci'][0] * 100:+.2f}, {stat['ci'][1] * 100:+.2f}]" if stat.get("ci") else "")


def _fmt_acc(stat: dict[str, Any]) -> str:
    if stat.get("mean") is None:
        return "—"
    return f"{stat['mean']:.2%}" + (f" ± {stat['sd']:.2%}" if stat.get("sd") is not None else "")


def _has(results: dict[str, Any], measure: str) -> bool:
    return any(r.get(measure) is not None for r in results["table"]["rows"])


def summary_markdown(results: dict[str, Any], target: str | None = None) -> str:
    """One row per arm: final test accuracy, its paired difference to the reference, and the
    ratios to reach `target` (default: uniform's plateau) in steps, wall-clock and CPU time."""
    table = results["table"]
    target = target or table["targets"][0]
    rows = {r["arm"]: r for r in table["rows"] if r["target"] == target}
    cpu = _has(results, "cpu_time")
    head = ("| arm | final test accuracy (mean ± sd) | vs uniform, points [95% CI] | reached | "
            f"steps to {target} (×) | wall-clock (×) |" + (" CPU time (×) |" if cpu else ""))
    lines = [head, "|---" * (7 if cpu else 6) + "|"]
    for arm in table["arms"]:
        acc, row = table["test_accuracy"][arm], rows[arm]
        ref = acc.get("reference")
        cells = [arm, _fmt_acc(acc), "—" if arm == ref else _fmt_points(acc.get("diff", {})),
                 f"{row['reached']}/{row['seeds']}"]
        for m in ("step", "wall_time") + (("cpu_time",) if cpu else ()):
            cells.append("not reached" if row["reached"] == 0 else _fmt_ratio(row[f"{m}_ratio"], row[f"{m}_ci"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_markdown(results: dict[str, Any]) -> str:
    """Every (target, arm): seeds reached, mean steps / samples / seconds to it and ratios to the
    reference at the same seed (geometric mean [95% CI])."""
    table = results["table"]
    cpu = _has(results, "cpu_time")
    measures = ["step", "samples_forwarded", "samples_backpropagated", "wall_time"] + (["cpu_time"] if cpu else [])
    titles = {"step": "steps", "samples_forwarded": "samples forwarded", "samples_backpropagated":
              "samples back-propagated", "wall_time": "wall-clock s", "cpu_time": "CPU s"}
    lines = ["| target | arm | reached | " + " | ".join(f"{titles[m]} (×)" for m in measures) + " |",
             "|---" * (3 + len(measures)) + "|"]
    for row in table["rows"]:
        reached = f"{row['reached']}/{row['seeds']}"
        if row["reached"] == 0:
            cells = ["not reached"] * len(measures)
        else:
            cells = []
            for m in measures:
                value = "—" if row[m] is None else (f"{row[m]:.1f}" if m.endswith("_time") else _fmt_count(row[m]))
                ratio = row[f"{m}_ratio"]
                cells.append(value + ("" if ratio is None else f" ({_fmt_ratio(ratio, row[f'{m}_ci'])})"))
        lines.append(f"| {row['target']} | {row['arm']} | {reached} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def budget_markdown(results: dict[str, Any], clock: str = "wall_time") -> str:
    """Best validation accuracy each arm reaches within 25/50/75/100% of the reference's training
    time (same seed), with the paired difference to the reference in points [95% CI]."""
    table = results["table"]
    entries = [b for b in table.get("budgets", []) if b["clock"] == clock]
    if not entries:
        return f"(no {clock.replace('_', ' ')} recorded in these results)"
    budgets = sorted({b["budget"] for b in entries})
    by = {(b["arm"], b["budget"]): b for b in entries}
    lines = ["| arm | " + " | ".join(f"{f:.0%} of uniform's {'wall-clock' if clock == 'wall_time' else 'CPU time'}"
                                     for f in budgets) + " |", "|---" * (1 + len(budgets)) + "|"]
    for arm in table["arms"]:
        cells = []
        for f in budgets:
            b = by.get((arm, f))
            if b is None:
                cells.append("no validation yet")
                continue
            ref = table["test_accuracy"][arm].get("reference")
            cells.append(_fmt_pct(b["mean"]) + ("" if arm == ref else f" ({_fmt_points(b['diff'])})"))
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def phases_markdown(results: dict[str, Any]) -> str:
    """Where each arm's training time goes: per-step wall and CPU time, scoring and refresh shares."""
    phases = results["table"].get("phases") or {}
    if not phases:
        return "(no per-phase times recorded in these results)"
    lines = ["| arm | wall-clock ms / step | CPU ms / step | scoring share | refresh share | training step share |",
             "|---|---|---|---|---|---|"]
    for arm, p in phases.items():
        rest = 1.0 - p["score"] - p["refresh"]
        lines.append(f"| {arm} | {p['wall_per_step'] * 1e3:.1f} | {p['cpu_per_step'] * 1e3:.1f} | "
                     f"{p['score']:.0%} | {p['refresh']:.0%} | {rest:.0%} |")
    return "\n".join(lines)


def noise_markdown(results: dict[str, Any]) -> str:
    """Under label noise: final clean test accuracy, the share of trained samples whose label was
    flipped (uniform trains on the noise share itself) and, for runs that logged it, the harm: the
    share of the training signal (gradient size at the logits) from flipped labels, and the share of
    the flipped samples trained on that the model predicted as their true class."""
    table = results["table"]
    noise = table.get("noise") or {}
    if not noise:
        return "(no label noise in these results)"
    harm = any("gradient_share" in n for n in noise.values())
    head = ("| arm | label noise | final clean test accuracy (mean ± sd) | vs uniform, points [95% CI] | "
            "trained samples with a flipped label (mean ± sd) |")
    lines = [head + (" training signal from flipped labels | flipped ones predicted as their true class |"
                     if harm else ""), "|---|---|---|---|---|" + ("---|---|" if harm else "")]
    for arm in table["arms"]:
        if arm not in noise:
            continue
        acc, n = table["test_accuracy"][arm], noise[arm]
        diff = "—" if arm == acc.get("reference") else _fmt_points(acc.get("diff", {}))
        line = f"| {arm} | {n['label_noise']:.0%} | {_fmt_acc(acc)} | {diff} | {_fmt_share(n)} |"
        if harm:
            line += "".join(f" {_fmt_share(n[k]) if k in n else '—'} |" for k in ("gradient_share", "predicted_true"))
        lines.append(line)
    return "\n".join(lines)


def _fmt_share(m: dict[str, Any]) -> str:
    return f"{m['mean']:.1%}" + (f" ± {m['sd']:.1%}" if m.get("sd") is not None else "")


def setting_lines(results: dict[str, Any]) -> list[str]:
    """The setting and machine of a suite, as Markdown bullets."""
    s, m = results["settings"], results["machine"]
    plateau = results["table"].get("plateau", {})
    return [
        f"- Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads)"
        + (f", {m['cuda']}" if m.get("cuda") else ""),
        f"- Load average (1/5/15 min) before: {results['load_average']['before']}, after: "
        f"{results['load_average']['after']}; the suite took {results['duration_s'] / 60:.1f} min",
        f"- Setting: {s['dataset']}, {s['model']}, b = {s['batch_size']}, B = {s['candidates']}, "
        f"{s['steps']} steps, regime {s['regime']}, seeds {list(s['seeds'])}, validation every "
        f"{s['eval_every']} steps on {s['eval_samples'] or 'all'} samples, candidate chunk "
        f"{s['score_chunk_used'] or 'one batch'}, arm order "
        + ("rotated per seed" if s.get("rotate") else "fixed (the same for every seed)")
        + (f", label noise {s['label_noise']:.0%}" if s.get("label_noise") else "")
        + (" (quick mode)" if s.get("quick") else ""),
        f"- Uniform's plateau: mean validation accuracy of its last {plateau.get('share', 0.1):.0%} of "
        f"evaluations (at least 3), minus a tolerance of {plateau.get('tolerance', 0.001) * 100:.2f} points",
        "- Ratios: geometric mean over seeds of arm / uniform at the same seed, 95% Student-t interval "
        "on the log ratios; differences in points: mean of paired per-seed differences, 95% t-interval.",
    ] + _v2_setting_lines(results) + _history_lines(results)


def _v2_setting_lines(results: dict[str, Any]) -> list[str]:
    s = results["settings"]
    if s.get("protocol", 1) < 2:
        return []
    from marginscope.engine.bench.stats import ENDPOINTS

    frontier = s.get("frontier") or []
    level = s.get("discard_load")
    return [
        f"- Protocol v2: primary endpoint `{s['primary']}` ({ENDPOINTS[s['primary']][0]}), named before the "
        "suite ran; the other endpoints' p-values Holm-adjusted across arms",
        f"- A target is reached at the first of {s.get('sustain', 3)} validations in a row at or above it; a "
        "seed that never reaches it is censored (a bound), never dropped",
        ("- Uniform's frontier: uniform at " + ", ".join(f"{f:.0%}" for f in sorted(frontier))
         + " and 100% of the run, each with its LR schedule scaled to its own length") if frontier
        else "- No uniform frontier in this suite",
        f"- Load rule (torch threads: {s.get('threads') or 'all cores'}): with one thread, a run with CPU time / "
        f"wall-clock below {s.get('discard_cpu_share', 0.9):.2f} or a 1-min load average above "
        f"{'cores + 1' if level is None else f'{level:g}'} at its end is discarded and run again, at most "
        f"{s.get('max_reruns', 2)} times (runs under {s.get('min_judged_wall', 5.0):g} s are not judged); "
        "the sample tracker is off",
    ]


def _history_lines(results: dict[str, Any]) -> list[str]:
    """How the suite ran, when it was not one sitting: resumed, and runs discarded and run again."""
    lines = []
    if results.get("resumed"):
        lines.append(f"- Stopped and resumed {len(results['resumed'])} time(s) (`--resume`)")
    by_hand = [d for d in results.get("discarded") or [] if not d.get("rule")]
    by_rule = [d for d in results.get("discarded") or [] if d.get("rule")]
    if by_hand:
        runs = ", ".join(f"{d['arm']} seed {d['seed']}" for d in by_hand)
        lines.append(f"- Discarded and run again: {runs} ({by_hand[0]['why']})")
    if by_rule:
        lines.append("- Discarded by the load rule and run again: "
                     + "; ".join(f"{d['arm']} seed {d['seed']} ({d['why']})" for d in by_rule))
    flagged = [r for r in results.get("runs", []) if r.get("load_flag")]
    if flagged:
        lines.append("- Kept after the last re-run allowed, still failing the load rule: "
                     + "; ".join(f"{r['arm']} seed {r['seed']} ({r['load_flag']})" for r in flagged))
    return lines


def results_markdown(results: dict[str, Any], command: str | None = None) -> str:
    parts = [f"# Benchmark {results['bench_id']}", ""]
    if command:
        parts.append(f"- Command: `{command}`")
    if _is_v2(results):
        parts += setting_lines(results) + ["", "## Endpoints (protocol v2)", "", endpoints_markdown(results), "",
                                           "## Uniform's frontier", "", frontier_markdown(results), "",
                                           "## Sustained time to target (censored seeds as bounds)", "",
                                           sustained_markdown(results), "",
                                           "## Where the time goes", "", phases_markdown(results), ""]
        if results["table"].get("noise"):
            parts += ["## Label noise", "", noise_markdown(results), ""]
        return "\n".join(parts)
    parts += setting_lines(results) + ["", "## Summary", "", summary_markdown(results), "",
                                       "## Every target", "", table_markdown(results), "",
                                       "## Equal wall-clock budgets (best validation accuracy)", "",
                                       budget_markdown(results, "wall_time"), "",
                                       "## Equal CPU-time budgets (best validation accuracy)", "",
                                       budget_markdown(results, "cpu_time"), "",
                                       "## Where the time goes", "", phases_markdown(results), ""]
    if results["table"].get("noise"):
        parts += ["## Label noise", "", noise_markdown(results), ""]
    return "\n".join(parts)


def _curves(results: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """Per arm: x (steps), mean wall-clock, mean/min/max validation accuracy over seeds."""
    out = {}
    for arm in results["table"]["arms"]:
        evs = [r["evaluations"] for r in results["runs"] if r["arm"] == arm]
        n = min(len(e) for e in evs)
        if n == 0:
            continue
        acc = [[e[i]["accuracy"] for e in evs] for i in range(n)]
        out[arm] = {
            "step": [statistics.fmean(e[i]["step"] for e in evs) for i in range(n)],
            "wall_time": [statistics.fmean(e[i]["wall_time"] for e in evs) for i in range(n)],
            "cpu_time": [statistics.fmean(e[i].get("cpu_time") or 0.0 for e in evs) for i in range(n)],
            "mean": [statistics.fmean(a) for a in acc], "low": [min(a) for a in acc],
            "high": [max(a) for a in acc],
        }
    return out


PLOTLY_JS = "plotly.min.js"  # the one copy of plotly.js a results folder's figures load


def figure_html(results: dict[str, Any]) -> str:
    """Offline HTML: validation accuracy vs steps and vs wall-clock. It loads plotly.js from
    `PLOTLY_JS` beside it (written by `write_outputs`), so figures share one copy, not 5 MB each."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=("validation accuracy vs steps",
                                                        "vs wall-clock (s)", "vs CPU time (s)"))
    curves = _curves(results)
    lows = []
    for i, (arm, c) in enumerate(curves.items()):
        color = qualitative.Plotly[i % len(qualitative.Plotly)]
        for col, xkey in ((1, "step"), (2, "wall_time"), (3, "cpu_time")):
            x = c[xkey]
            fig.add_trace(go.Scatter(x=x + x[::-1], y=c["high"] + c["low"][::-1], fill="toself",
                                     line={"width": 0}, fillcolor=color, opacity=0.18,
                                     hoverinfo="skip", showlegend=False, legendgroup=arm), row=1, col=col)
            fig.add_trace(go.Scatter(x=x, y=c["mean"], mode="lines+markers", name=arm, legendgroup=arm,
                                     line={"color": color}, marker={"size": 4},
                                     showlegend=col == 1), row=1, col=col)
        lows.extend(c["mean"][len(c["mean"]) // 3:])
    low = max(0.0, min(lows) - 0.01) if lows else 0.0
    fig.update_yaxes(range=[low, 1.0], tickformat=".1%")
    fig.update_xaxes(title_text="training steps", row=1, col=1)
    fig.update_xaxes(title_text="wall-clock seconds of training", row=1, col=2)
    fig.update_xaxes(title_text="CPU seconds of training (the process)", row=1, col=3)
    s = results["settings"]
    fig.update_layout(title=f"{results['bench_id']}: {s['dataset']}, {s['model']}, b={s['batch_size']}, "
                      f"B={s['candidates']}, seeds {list(s['seeds'])} (band: min-max over seeds)",
                      height=560, legend={"orientation": "h", "y": -0.15})
    return fig.to_html(include_plotlyjs=PLOTLY_JS, full_html=True, div_id="curves")  # same page each draw


def write_outputs(results: dict[str, Any], out: Path, command: str | None = None) -> None:
    """results.json (format 2: evaluations by column, engine/bench/results.py), then `draw` from
    what the file holds (its clocks to the microsecond, the tables rebuilt from them), so that
    ``--redraw`` of the file draws the same results.md and curves.html."""
    from marginscope.engine.bench.results import from_any_format, to_format2, write_results
    from marginscope.engine.bench.stats import build_table

    out.mkdir(parents=True, exist_ok=True)
    write_results(results, out / "results.json")
    stored = from_any_format(to_format2(results))
    stored["table"] = build_table(stored)
    draw(stored, out, command)


def draw(results: dict[str, Any], out: Path, command: str | None = None) -> None:
    """results.md and curves.html (with plotly.js beside it) from a suite's results."""
    from plotly.offline import get_plotlyjs

    (out / "results.md").write_text(results_markdown(results, command or results.get("command")))
    (out / "curves.html").write_text(figure_html(results))
    (out / PLOTLY_JS).write_text(get_plotlyjs())


# --- protocol v2 tables ----------------------------------------------------------------------------

def _fmt_bounded(stat: dict[str, Any] | None, kind: str) -> str:
    """A summary over seeds that may hold censored ones: ``1.12× [1.01, 1.25]`` when every seed is
    exact, ``≥ 1.12×`` / ``≤ +0.20`` when some are bounds of one direction, ``no bound (...)``."""
    if not stat or not stat.get("n"):
        return "—"
    counts = stat.get("counts") or {}
    if stat.get("bound") == "none":
        why = (f"{counts['unknown']} seed(s) where neither reached" if counts.get("unknown")
               else "bounds in both directions")
        return f"no bound ({why})"
    if kind == "ratio":
        text = _fmt_ratio(stat["mean"], stat.get("ci") if stat.get("bound") == "exact" else None)
    else:
        text = _fmt_points({"mean": stat["mean"], "ci": stat.get("ci") if stat.get("bound") == "exact" else None})
    return {"lower": "≥ ", "upper": "≤ "}.get(stat.get("bound"), "") + text


def _fmt_p(p: float | None) -> str:
    return "—" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def _is_v2(results: dict[str, Any]) -> bool:
    return "endpoints" in results["table"]


def endpoints_markdown(results: dict[str, Any]) -> str:
    """Protocol v2's summary: every endpoint per arm, the primary one first: estimate [95% CI]
    (or its bound when seeds are censored), seeds, the paired t-test p-value, and Holm's adjusted
    p-value across the arms tested on that endpoint (m of them)."""
    if not _is_v2(results):
        return "(protocol v1 results: no endpoints; see the tables of first reach)"
    entries = sorted(results["table"]["endpoints"], key=lambda e: not e["primary"])
    lines = ["| endpoint | arm | estimate [95% CI] | seeds (censored or bounded) | p (paired t) | Holm p (m) |",
             "|---|---|---|---|---|---|"]
    for e in entries:
        bounded = e["n"] - e["counts"].get("exact", 0)
        name = f"**{e['endpoint']}** (primary)" if e["primary"] else e["endpoint"]
        lines.append(f"| {name} | {e['arm']} | {_fmt_bounded(e, e['kind'])} | {e['n']} ({bounded}) | "
                     f"{_fmt_p(e['p'])} | {_fmt_p(e['p_holm'])} ({e['holm_m']}) |")
    return "\n".join(lines)


def frontier_markdown(results: dict[str, Any]) -> str:
    """Uniform's frontier (mean training time and final test accuracy of each of its points), then
    every arm's frontier gap on both clocks, in points [95% CI], with how many seeds lie past the
    frontier's last point (their gap is an upper bound) or before its first (a lower bound)."""
    table = results["table"]
    if not table.get("frontier"):
        return "(no uniform frontier in these results)"
    by = {(r["arm"], r["seed"]): r for r in results["runs"]}
    points = [a for a in table["arms"] if a in table["frontier_arms"] or
              (table["test_accuracy"][a].get("reference") == a and any(
                  r.get("frontier") and r.get("reference") == a for r in results["runs"]))]
    lines = ["| frontier point | seeds | wall-clock s | CPU s | final test accuracy (mean ± sd) |", "|---|---|---|---|---|"]
    for arm in sorted(points, key=lambda a: statistics.fmean(
            [r["summary"].get("steps") or 0 for (x, _), r in by.items() if x == a])):
        runs = [r for (x, _), r in by.items() if x == arm]
        wall = [r["summary"]["wall_time"] for r in runs if r["summary"].get("wall_time") is not None]
        cpu = [r["summary"]["cpu_time"] for r in runs if r["summary"].get("cpu_time") is not None]
        lines.append(f"| {arm} | {len(runs)} | {statistics.fmean(wall) if wall else 0:.1f} | "
                     f"{statistics.fmean(cpu) if cpu else 0:.1f} | {_fmt_acc(table['test_accuracy'][arm])} |")
    gaps = {(f["clock"], f["arm"]): f for f in table["frontier"]}
    lines += ["", "| arm | frontier gap at its wall-clock, points [95% CI] | past / before the frontier (wall) | "
              "frontier gap at its CPU time, points [95% CI] | past / before (CPU) |", "|---|---|---|---|---|"]
    for arm in table["arms"]:
        if arm in points:
            continue
        cells = []
        for clock in ("wall_time", "cpu_time"):
            f = gaps.get((clock, arm))
            where = f["where"] if f else []
            cells += [_fmt_bounded(f, "points"), f"{where.count('after')} / {where.count('before')} of {len(where)}"]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sustained_markdown(results: dict[str, Any]) -> str:
    """Every (target, arm) under protocol v2: seeds that reached it and held it (the first of 3
    validations in a row at or above it), and the paired ratios to the reference in steps,
    wall-clock and CPU time, censored seeds kept as bounds."""
    table = results["table"]
    if not _is_v2(results):
        return "(protocol v1 results: see the tables of first reach)"
    lines = [f"| target | arm | reached and held ({table['sustain']} in a row) | steps (×) | wall-clock (×) | CPU time (×) |",
             "|---|---|---|---|---|---|"]
    for row in table["sustained"]:
        cells = [_fmt_bounded(row[m], "ratio") for m in ("step", "wall_time", "cpu_time")]
        lines.append(f"| {row['target']} | {row['arm']} | {row['reached']}/{row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
