"""What a suite leaves behind: ``results.md`` (the table, with the setting and the machine it ran
on), ``curves.html`` (validation accuracy vs steps and vs wall-clock, mean line and min-max band over
seeds) and ``results.json`` (everything, raw curves included).

The figure embeds plotly.js, so the page opens offline and a results folder is self-contained.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any


def _fmt_count(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def _fmt_ratio(v: float | None) -> str:
    return "" if v is None else f" ({v:.2f}×)"


def table_markdown(results: dict[str, Any]) -> str:
    table = results["table"]
    lines = [
        "| arm | test acc (mean ± sd) | target | reached | steps (× uniform) | samples forwarded "
        "(×) | samples back-propagated (×) | wall-clock s (×) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in table["rows"]:
        acc = table["test_accuracy"][row["arm"]]
        acc_s = "—" if acc["mean"] is None else (
            f"{acc['mean']:.2%}" + (f" ± {acc['sd']:.2%}" if acc["sd"] is not None else ""))
        reached = f"{row['reached']}/{row['seeds']}"
        if row["reached"] == 0:
            cells = ["not reached"] * 4
        else:
            cells = [_fmt_count(row["step"]) + _fmt_ratio(row["step_ratio"]),
                     _fmt_count(row["samples_forwarded"]) + _fmt_ratio(row["samples_forwarded_ratio"]),
                     _fmt_count(row["samples_backpropagated"])
                     + _fmt_ratio(row["samples_backpropagated_ratio"]),
                     ("—" if row["wall_time"] is None else f"{row['wall_time']:.1f}")
                     + _fmt_ratio(row["wall_time_ratio"])]
        lines.append(f"| {row['arm']} | {acc_s} | {row['target']} | {reached} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_markdown(results: dict[str, Any], command: str | None = None) -> str:
    s, m = results["settings"], results["machine"]
    targets = results["table"]["target_values"]
    uniform_best = ", ".join(f"{v:.2%}" for v in targets.get("uniform's best", []) if v is not None)
    head = [
        f"# Benchmark {results['bench_id']}",
        "",
        f"- Command: `{command}`" if command else "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads)"
        + (f", {m['cuda']}" if m.get("cuda") else ""),
        f"- Load average (1/5/15 min) before: {results['load_average']['before']}, after: "
        f"{results['load_average']['after']}; suite took {results['duration_s'] / 60:.1f} min",
        f"- Setting: {s['dataset']}, {s['model']}, b = {s['batch_size']}, B = {s['candidates']}, "
        f"{s['steps']} steps, regime {s['regime']}, seeds {list(s['seeds'])}, validation every "
        f"{s['eval_every']} steps on {s['eval_samples'] or 'all'} samples, candidate chunk "
        f"{s['score_chunk_used'] or 'one batch'}" + (" (quick mode)" if s["quick"] else ""),
        f"- Uniform's best validation accuracy per seed: {uniform_best}",
        "- Steps/samples/wall-clock are the mean over the seeds that reached the target; ratios are "
        "the mean of per-seed ratios to uniform at the same seed (only seeds where both reached it).",
        "",
    ]
    return "\n".join(line for line in head if line is not None) + "\n" + table_markdown(results) + "\n"


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

    fig = make_subplots(rows=1, cols=2, subplot_titles=("validation accuracy vs steps",
                                                        "validation accuracy vs wall-clock (s)"))
    curves = _curves(results)
    lows = []
    for i, (arm, c) in enumerate(curves.items()):
        color = qualitative.Plotly[i % len(qualitative.Plotly)]
        for col, xkey in ((1, "step"), (2, "wall_time")):
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
