// run-plots.js — the run page's plots, drawn from its state (run-state.js): the two MMS heatmaps,
// the histogram at one step, candidate quantiles, per-class selection, and the scalar curves.
//
// Every plot is redrawn whole with Plotly.react; layouts carry a constant `uirevision`, so zoom,
// pan and legend toggles survive every redraw. Long runs draw at most MAX_COLUMNS heatmap columns.

import { fmtNum, escapeHtml } from "./api.js";
import { $ } from "./ui.js";
import {
  classColor, X_AXES, layout, draw, logFriendly, shares, logShareMatrix, shareColorbar, lrDrops,
  vlines, thin,
} from "./plots.js";
import { timing, nowMs } from "./run-state.js";

const MAX_COLUMNS = 800; // heatmap columns drawn at most

function mmsAxis(S, extra = {}) {
  return { title: { text: "minimal margin score" }, type: logFriendly(S.centres) ? "log" : "linear", exponentformat: "power", dtick: logFriendly(S.centres) ? 1 : undefined, ...extra };
}

export function drawHeatmaps(S) {
  for (const pop of S.vocabulary.populations) {
    const H = S.hist[pop];
    const el = `heat-${pop}`;
    const title = pop === "candidates" ? "MMS of candidates over steps (dotted: selection threshold)" : "MMS of selected samples over steps";
    if (!S.centres.length || !H.steps.length) {
      draw(el, [], layout(title, "step", "minimal margin score", { annotations: [waiting("waiting for the first histogram…")] }));
      continue;
    }
    // Long runs: draw at most MAX_COLUMNS columns (evenly strided, newest kept) so redraws stay fast.
    const idx = thin(H.steps.length, MAX_COLUMNS);
    const xs = idx ? idx.map((i) => H.steps[i]) : H.steps;
    const rows = idx ? idx.map((i) => H.counts[i]) : H.counts;
    const traces = [{
      type: "heatmap", x: xs, y: S.centres, z: logShareMatrix(rows, S.centres.length),
      colorscale: "Viridis", zmin: -4, zmax: 0, hoverongaps: false,
      colorbar: shareColorbar(`share of ${pop} (log scale)`),
      hovertemplate: "step %{x}<br>MMS ≈ %{y:.3g}<br>log10(share) %{z:.2f}<extra></extra>",
      name: pop,
    }];
    const thr = S.hist.selected.thresholds;
    if (pop === "candidates" && thr.some((t) => t !== null && t > 0)) {
      traces.push({
        type: "scatter", mode: "lines", x: S.hist.selected.steps, y: thr.map((t) => (t > 0 ? t : null)),
        line: { color: "#fff", width: 1.5, dash: "dot" }, name: "selection threshold",
        hovertemplate: "threshold %{y:.3g} at step %{x}<extra></extra>",
      });
    }
    const count = H.steps.length;
    const p = draw(el, traces, layout(title, "step", "", {
      yaxis: mmsAxis(S), showlegend: false,
    }));
    if (pop === "candidates") {
      const last = H.steps[count - 1];
      p.then(() => {
        const t = nowMs();
        for (const st of H.steps.slice(-8)) if (timing.drawn[st] === undefined && timing.received[st]) timing.drawn[st] = t;
        document.getElementById(el).dataset.columns = String(count);
        document.getElementById(el).dataset.lastStep = String(last);
      });
    } else {
      p.then(() => { document.getElementById(el).dataset.columns = String(count); });
    }
  }
}

function waiting(text) {
  return { text, xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false, font: { color: "#888", size: 13 } };
}

export function drawCurrentHist(S) {
  const C = S.hist.candidates;
  const Sel = S.hist.selected;
  const slider = $("#hist-slider");
  const n = C.steps.length;
  slider.max = String(Math.max(0, n - 1));
  slider.disabled = n < 2;
  if (S.follow || S.histIndex > n - 1) S.histIndex = Math.max(0, n - 1);
  slider.value = String(S.histIndex);
  if (!n || !S.centres.length) {
    $("#hist-step-label").textContent = "–";
    draw("hist-current", [], layout("Current MMS histogram", "minimal margin score", "share of population", { annotations: [waiting("waiting for the first histogram…")] }));
    return;
  }
  const i = S.histIndex;
  const step = C.steps[i];
  const j = Sel.steps.indexOf(step);
  $("#hist-step-label").textContent = `step ${step} · epoch ${fmtNum(C.epochs[i], 2)}`;
  const traces = [{
    type: "scatter", mode: "lines", line: { shape: "hvh", color: "#1f77b4", width: 1.5 }, fill: "tozeroy",
    fillcolor: "rgba(31,119,180,0.25)", x: S.centres, y: shares(C.counts[i]), name: "candidates",
    hovertemplate: "MMS ≈ %{x:.3g}: %{y:.2%}<extra>candidates</extra>",
  }];
  const shapes = [];
  const annotations = [];
  if (j >= 0) {
    traces.push({
      type: "scatter", mode: "lines", line: { shape: "hvh", color: "#d62728", width: 1.5 }, fill: "tozeroy",
      fillcolor: "rgba(214,39,40,0.25)", x: S.centres, y: shares(Sel.counts[j]), name: "selected",
      hovertemplate: "MMS ≈ %{x:.3g}: %{y:.2%}<extra>selected</extra>",
    });
    const thr = Sel.thresholds[j];
    if (thr !== null && thr !== undefined && thr > 0) {
      shapes.push(...vlines([thr], "#111", "dash"));
      annotations.push({ x: logFriendly(S.centres) ? Math.log10(thr) : thr, xref: "x", y: 1, yref: "paper", text: `threshold ${fmtNum(thr)}`, showarrow: false, xanchor: "left", yanchor: "top", font: { size: 11 } });
    }
  }
  draw("hist-current", traces, layout(`MMS histogram at step ${step}`, "", "share of population", {
    xaxis: mmsAxis(S), yaxis: { tickformat: ".0%", rangemode: "tozero" }, shapes, annotations,
  }));
}

function lrDropSteps(S) {
  const lr = S.scalars.lr;
  return lr ? lrDrops(lr.step, lr.value) : [];
}

export function drawQuantiles(S) {
  const C = S.hist.candidates;
  if (!C.steps.length) {
    draw("quantiles", [], layout("Candidate MMS quantiles", "step", "minimal margin score", { annotations: [waiting("waiting for the first histogram…")] }));
    return;
  }
  const q = C.quantiles;
  const pos = (a) => a.map((v) => (v > 0 ? v : null));
  const traces = [
    { type: "scatter", mode: "lines", x: C.steps, y: pos(q.p95), name: "p95", line: { color: "#9ecae1", width: 1 } },
    { type: "scatter", mode: "lines", x: C.steps, y: pos(q.p50), name: "p50 (median)", line: { color: "#1f77b4", width: 2 } },
    { type: "scatter", mode: "lines", x: C.steps, y: pos(q.p5), name: "p5", line: { color: "#08519c", width: 1, dash: "dot" } },
  ];
  const drops = lrDropSteps(S);
  const annotations = drops.map((x) => ({ x, xref: "x", y: 0, yref: "paper", text: "LR drop", showarrow: false, font: { size: 10, color: "#666" }, yanchor: "bottom", xanchor: "left" }));
  draw("quantiles", traces, layout("Candidate MMS quantiles (dashed lines: LR drops)", "step", "", {
    yaxis: { title: { text: "minimal margin score" }, type: "log", exponentformat: "power" },
    shapes: vlines(drops), annotations,
  }));
}

export function drawSelection(S) {
  const sel = S.selection;
  const k = sel.candidate_counts[0]?.length || 0;
  if (!sel.steps.length) {
    const none = layout("Per-class share: selected vs candidates", "step", "share of samples", { annotations: [waiting("waiting for selection statistics…")] });
    draw("class-share", [], none);
    draw("misclassified", [], layout("Selected samples that were misclassified", "step", "share of selected", { annotations: [waiting("waiting for selection statistics…")] }));
    return;
  }
  const traces = [];
  for (let c = 0; c < k; c++) {
    const name = sel.class_names[c] ?? String(c);
    traces.push({
      type: "scatter", mode: "lines", x: sel.steps, y: sel.selected_counts.map((r) => shares(r)[c]),
      name: `${name}`, legendgroup: `c${c}`, line: { color: classColor(c), width: 1.8 },
      hovertemplate: `class ${escapeHtml(name)} selected: %{y:.1%}<extra></extra>`,
    });
    traces.push({
      type: "scatter", mode: "lines", x: sel.steps, y: sel.candidate_counts.map((r) => shares(r)[c]),
      name: `${name} (candidates)`, legendgroup: `c${c}`, showlegend: false,
      line: { color: classColor(c), width: 1, dash: "dot" },
      hovertemplate: `class ${escapeHtml(name)} candidates: %{y:.1%}<extra></extra>`,
    });
  }
  draw("class-share", traces, layout("Per-class share: selected (solid) vs candidates (dotted)", "step", "share of samples", {
    yaxis: { tickformat: ".0%", rangemode: "tozero" }, legend: { orientation: "v", x: 1.01, y: 1, font: { size: 10 } },
    margin: { l: 56, r: 8, t: 36, b: 44 },
  }));
  draw("misclassified", [{
    type: "scatter", mode: "lines+markers", marker: { size: 3 }, x: sel.steps, y: sel.misclassified_share,
    name: "misclassified share", line: { color: "#d62728" },
    hovertemplate: "step %{x}: %{y:.1%} of selected misclassified<extra></extra>",
  }], layout("Selected samples that were misclassified", "step", "share of selected", {
    yaxis: { tickformat: ".0%", rangemode: "tozero" }, showlegend: false,
  }));
}

function xy(S, key) {
  const s = S.scalars[key];
  if (!s) return null;
  return { x: s[S.xAxis], y: s.value };
}

function line(S, key, name, color, extra = {}) {
  const d = xy(S, key);
  if (!d) return null;
  return { type: "scatter", mode: "lines", x: d.x, y: d.y, name, line: { color, width: 1.6 }, ...extra };
}

function dropShapes(S) {
  const lr = S.scalars.lr;
  if (!lr) return [];
  const xs = [];
  for (let i = 1; i < lr.value.length; i++) if (lr.value[i] < lr.value[i - 1] * (1 - 1e-9)) xs.push(lr[S.xAxis][i]);
  return vlines(xs.filter((x) => x !== null && x !== undefined));
}

export function drawScalars(S) {
  const xt = X_AXES[S.xAxis];
  const marker = { mode: "lines+markers", marker: { size: 5 } };
  const lossTraces = [line(S, "train/loss", "training batch (selected)", "#1f77b4"), line(S, "val/loss", "validation", "#ff7f0e", marker), line(S, "test/loss", "test (final)", "#2ca02c", { mode: "markers", marker: { size: 9, symbol: "star" } })].filter(Boolean);
  draw("loss", lossTraces, layout("Loss", xt, "cross-entropy (nats)", { shapes: dropShapes(S), yaxis: { type: "log", exponentformat: "power" } }));
  const accTraces = [line(S, "train/accuracy", "training batch (selected)", "#1f77b4"), line(S, "val/accuracy", "validation", "#ff7f0e", marker), line(S, "test/accuracy", "test (final)", "#2ca02c", { mode: "markers", marker: { size: 9, symbol: "star" } })].filter(Boolean);
  draw("accuracy", accTraces, layout("Accuracy", xt, "accuracy", { shapes: dropShapes(S), yaxis: { tickformat: ".0%" } }));

  const sps = line(S, "samples_per_s", "samples back-propagated / s", "#9467bd");
  const st = S.scalars.step_time;
  const sc = S.scalars.score_time;
  const tt = [sps].filter(Boolean);
  if (st) tt.push({ type: "scatter", mode: "lines", x: st[S.xAxis], y: st.value.map((v) => v * 1000), name: "step time (ms)", yaxis: "y2", line: { color: "#8c564b", width: 1, dash: "dot" } });
  if (sc) tt.push({ type: "scatter", mode: "lines", x: sc[S.xAxis], y: sc.value.map((v) => v * 1000), name: "scoring time (ms)", yaxis: "y2", line: { color: "#e377c2", width: 1, dash: "dot" } });
  draw("throughput", tt, layout("Throughput", xt, "samples back-propagated / s", {
    yaxis2: { title: { text: "ms per step" }, overlaying: "y", side: "right", rangemode: "tozero", showgrid: false },
    yaxis: { rangemode: "tozero" }, margin: { l: 64, r: 56, t: 36, b: 48 },
  }));
  const lr = line(S, "lr", "learning rate", "#2ca02c", { line: { shape: "hv", color: "#2ca02c" } });
  draw("lr", lr ? [lr] : [], layout("Learning rate", xt, "learning rate", { yaxis: { type: "log", exponentformat: "power" }, showlegend: false }));
}
