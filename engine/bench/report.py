"""What a suite leaves behind: ``results.md`` (the tables, with the setting and the machine it ran
on), ``curves.html`` (validation accuracy vs steps, wall-clock and CPU time, mean line and min-max
band over seeds) and ``results.json`` (everything, raw curves included). The same table functions
write the generated blocks of docs/benchmarks.md and the README (engine/bench/docs.py).

The figure embeds plotly.js, so the page opens offline and a results folder is self-contained.
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
    """Under label noise: final clean test accuracy and the share of trained samples whose label
    was flipped (uniform trains on the noise share itself)."""
    table = results["table"]
    noise = table.get("noise") or {}
    if not noise:
        return "(no label noise in these results)"
    lines = ["| arm | label noise | final clean test accuracy (mean ± sd) | vs uniform, points [95% CI] | "
             "trained samples with a flipped label (mean ± sd) |", "|---|---|---|---|---|"]
    for arm in table["arms"]:
        if arm not in noise:
            continue
        acc, n = table["test_accuracy"][arm], noise[arm]
        diff = "—" if arm == acc.get("reference") else _fmt_points(acc.get("diff", {}))
        share = f"{n['mean']:.1%}" + (f" ± {n['sd']:.1%}" if n.get("sd") is not None else "")
        lines.append(f"| {arm} | {n['label_noise']:.0%} | {_fmt_acc(acc)} | {diff} | {share} |")
    return "\n".join(lines)


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
    ] + _history_lines(results)


def _history_lines(results: dict[str, Any]) -> list[str]:
    """How the suite ran, when it was not one sitting: resumed, and runs discarded and run again."""
    lines = []
    if results.get("resumed"):
        lines.append(f"- Stopped and resumed {len(results['resumed'])} time(s) (`--resume`)")
    if results.get("discarded"):
        runs = ", ".join(f"{d['arm']} seed {d['seed']}" for d in results["discarded"])
        lines.append(f"- Discarded and run again: {runs} ({results['discarded'][0]['why']})")
    return lines


def results_markdown(results: dict[str, Any], command: str | None = None) -> str:
    parts = [f"# Benchmark {results['bench_id']}", ""]
    if command:
        parts.append(f"- Command: `{command}`")
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
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    draw(results, out, command)


def draw(results: dict[str, Any], out: Path, command: str | None = None) -> None:
    """results.md and curves.html (with plotly.js beside it) from a suite's results."""
    from plotly.offline import get_plotlyjs

    (out / "results.md").write_text(results_markdown(results, command or results.get("command")))
    (out / "curves.html").write_text(figure_html(results))
    (out / PLOTLY_JS).write_text(get_plotlyjs())
