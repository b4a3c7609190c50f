// run-plots.js — the run page's plots, drawn from its state (run-state.js): the two MMS heatmaps,
// the histogram at one step, candidate quantiles, per-class selection, and the scalar curves.
//
// Every plot is redrawn whole with Plotly.react; layouts carry a constant `uirevision`, so zoom,
// pan and legend toggles survive every redraw. Long runs draw at most MAX_COLUMNS heatmap columns.

import { fmtNum } from "./api.js";
import { $ } from "./ui.js";
import {
  X_AXES, layout, draw, logFriendly, shares, logShareMatrix, shareColorbar, lrDrops,
  vlines, thin, logAxis, smoothed, syncX, ema,
} from "./plots.js";
import { plotTheme } from "./theme.js";
import { timing, nowMs } from "./run-state.js";

const MAX_COLUMNS = 800; // heatmap columns drawn at most

function mmsAxis(S, extra = {}) {
  return { title: { text: "minimal margin score" }, type: logFriendly(S.centres) ? "log" : "linear", exponentformat: "power", dtick: logFriendly(S.centres) ? 1 : undefined, ...extra };
}

/**
 * The heatmap's cell edges on the MMS axis: the run's bin edges, with a first edge of 0 (which a
 * log axis cannot place) moved one bin-ratio below the next, so the near-zero bin is a cell as
 * tall as its neighbours instead of a block reaching below the axis.
 */
function cellEdges(S) {
  const e = S.edges.slice();
  if (e.length > 2 && e[0] <= 0 && logFriendly(S.centres)) e[0] = e[1] * (e[1] / e[2]);
  return e;
}

export function drawHeatmaps(S) {
  for (const pop of S.vocabulary.populations) {
    const H = S.hist[pop];
    const el = `heat-${pop}`;
    const thr = S.hist.selected.thresholds;
    const hasThreshold = pop === "candidates" && thr.some((t) => t !== null && t > 0);
    const title = pop === "candidates"
      ? `MMS of candidates over steps${hasThreshold ? " (dotted: selection threshold)" : ""}`
      : "MMS of selected samples over steps";
    if (!S.centres.length || !H.steps.length) {
      draw(el, [], layout(title, "step", "minimal margin score", { annotations: [waiting("waiting for the first histogram…")] }));
      continue;
    }
    // Long runs: draw at most MAX_COLUMNS columns (evenly strided, newest kept) so redraws stay fast.
    const idx = thin(H.steps.length, MAX_COLUMNS);
    const xs = idx ? idx.map((i) => H.steps[i]) : H.steps;
    const rows = idx ? idx.map((i) => H.counts[i]) : H.counts;
    const traces = [{
      type: "heatmap", x: xs, y: S.edges.length === S.centres.length + 1 ? cellEdges(S) : S.centres, z: logShareMatrix(rows, S.centres.length),
      colorscale: "Viridis", zmin: -4, zmax: 0, hoverongaps: false,
      colorbar: shareColorbar(`share of ${pop} (log scale)`),
      hovertemplate: "step %{x}<br>MMS ≈ %{y:.3g}<br>log10(share) %{z:.2f}<extra></extra>",
      name: pop,
    }];
    if (hasThreshold) {
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
  return { text, xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false, font: { color: plotTheme().muted, size: 13 } };
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
      shapes.push(...vlines([thr], plotTheme().fg, "dash"));
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
    { type: "scatter", mode: "lines", x: C.steps, y: pos(q.p5), name: "p5", line: { color: "#6baed6", width: 1 } },
  ];
  const drops = lrDropSteps(S);
  const annotations = drops.map((x) => ({ x, xref: "x", y: 0, yref: "paper", text: "LR drop", showarrow: false, font: { size: 10, color: plotTheme().muted }, yanchor: "bottom", xanchor: "left" }));
  const all = [...pos(q.p95), ...pos(q.p5)];
  draw("quantiles", traces, layout(`Candidate MMS quantiles${drops.length ? " (grey verticals: LR drops)" : ""}`, "step", "", {
    yaxis: logAxis(all, { title: { text: "minimal margin score" } }), hovermode: "x unified",
    shapes: vlines(drops), annotations,
  }), { toggleLog: true });
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
  // One row per class: log2(selected share / candidate share), so 10 or 100 classes stay readable
  // (red: the selector over-picks the class, blue: under-picks it).
  const names = Array.from({ length: k }, (_, c) => String(sel.class_names[c] ?? c));
  const ratio = [];
  const text = [];
  for (let c = 0; c < k; c++) {
    ratio.push([]);
    text.push([]);
    sel.steps.forEach((_, t) => {
      const sv = shares(sel.selected_counts[t])[c];
      const cv = shares(sel.candidate_counts[t])[c];
      ratio[c].push(sv > 0 && cv > 0 ? Math.log2(sv / cv) : null);
      text[c].push(`selected ${(100 * sv).toFixed(1)}% · candidates ${(100 * cv).toFixed(1)}%`);
    });
  }
  draw("class-share", [{
    type: "heatmap", x: sel.steps, y: names, z: ratio, text, zmid: 0, zmin: -2, zmax: 2,
    colorscale: "RdBu", reversescale: true, hoverongaps: false,
    colorbar: { title: { text: "selected ÷ candidates", side: "right" }, tickvals: [-2, -1, 0, 1, 2], ticktext: ["¼×", "½×", "1×", "2×", "4×"], thickness: 12, len: 0.9 },
    hovertemplate: "class %{y} at step %{x}<br>%{text}<extra></extra>",
  }], layout("Per-class selection: share selected ÷ share among candidates", "step", "class", {
    yaxis: { type: "category", automargin: true, autorange: "reversed" },
  }));
  draw("misclassified", [{
    type: "scatter", mode: "lines+markers", marker: { size: 3 }, x: sel.steps, y: sel.misclassified_share,
    name: "misclassified share", line: { color: "#d62728" },
    hovertemplate: "step %{x}: %{y:.1%} of selected misclassified<extra></extra>",
  }], layout("Selected samples that were misclassified", "step", "share of selected", {
    yaxis: { tickformat: ".0%", rangemode: "tozero" }, showlegend: false, hovermode: "x unified",
  })).then(() => syncX(["heat-candidates", "heat-selected", "quantiles", "class-share", "misclassified"]));
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

/** The scalar curves: loss, accuracy, throughput and LR, smoothed by S.smoothing, x synced. */
export function drawScalars(S) {
  const xt = X_AXES[S.xAxis];
  const w = S.smoothing ?? 0;
  const marker = { mode: "lines+markers", marker: { size: 5 } };
  const star = { mode: "markers", marker: { size: 9, symbol: "star" } };
  const trainLoss = line(S, "train/loss", "training batch (selected)", "#1f77b4");
  const lossTraces = [...(trainLoss ? smoothed(trainLoss, w) : []), line(S, "val/loss", "validation", "#ff7f0e", marker), line(S, "test/loss", "test (final)", "#2ca02c", star)].filter(Boolean);
  const lossValues = lossTraces.flatMap((t) => t.y);
  const unified = { hovermode: "x unified" };
  draw("loss", lossTraces, layout("Loss", xt, "cross-entropy (nats)", { shapes: dropShapes(S), yaxis: logAxis(lossValues), ...unified }), { toggleLog: true });
  const trainAcc = line(S, "train/accuracy", "training batch (selected)", "#1f77b4");
  const accTraces = [...(trainAcc ? smoothed(trainAcc, w) : []), line(S, "val/accuracy", "validation", "#ff7f0e", marker), line(S, "test/accuracy", "test (final)", "#2ca02c", star)].filter(Boolean);
  draw("accuracy", accTraces, layout("Accuracy", xt, "accuracy", { shapes: dropShapes(S), yaxis: { tickformat: ".0%" }, ...unified }), { toggleLog: true });

  // throughput: smoothed like the curves (per-step timings are spiky), ms per step on the right
  const sps = line(S, "samples_per_s", "samples back-propagated / s", "#9467bd");
  const st = S.scalars.step_time;
  const sc = S.scalars.score_time;
  const tt = sps ? smoothed(sps, Math.max(w, 0.6)) : [];
  const ms = (s, name, color) => ({ type: "scatter", mode: "lines", x: s[S.xAxis], y: ema(s.value.map((v) => v * 1000), Math.max(w, 0.6)), name, yaxis: "y2", line: { color, width: 1, dash: "dot" } });
  if (st) tt.push(ms(st, "step time (ms)", "#8c564b"));
  if (sc) tt.push(ms(sc, "scoring time (ms)", "#e377c2"));
  draw("throughput", tt, layout("Throughput", xt, "samples / s", {
    yaxis2: { title: { text: "ms per step" }, overlaying: "y", side: "right", rangemode: "tozero", showgrid: false, nticks: 5, tickformat: ".3~g", automargin: true },
    yaxis: { rangemode: "tozero", nticks: 6, tickformat: ".3~s" }, margin: { l: 64, r: 56, t: 36, b: 48 }, ...unified,
  }), { toggleLog: true });
  // LR: log only when it changes by a decade or more (a constant LR on a log axis is one odd tick)
  const lr = line(S, "lr", "learning rate", "#2ca02c", { line: { shape: "hv", color: "#2ca02c" } });
  const values = lr ? lr.y.filter((v) => v > 0) : [];
  const decades = values.length ? Math.log10(Math.max(...values) / Math.min(...values)) : 0;
  draw("lr", lr ? [lr] : [], layout("Learning rate", xt, "learning rate", {
    yaxis: decades >= 1 ? logAxis(values) : { type: "linear", exponentformat: "power", rangemode: "tozero" }, showlegend: false, ...unified,
  }), { toggleLog: true }).then(() => syncX(["loss", "accuracy", "throughput", "lr", "system"]));
  drawSystem(S, xt);
}

// The System panel: the trainer's system/ readings (engine/system.py), shares on the left,
// memory sizes on the right; GPU lines only when the run trained on a CUDA device.
const SYSTEM_SHARES = [
  ["system/cpu_percent", "process CPU (% of a core)", "#1f77b4"],
  ["system/cpu_machine_percent", "machine CPU", "#aec7e8"],
  ["system/memory_machine_percent", "machine memory", "#ff9896"],
  ["system/gpu_percent", "GPU utilisation", "#2ca02c"],
  ["system/gpu_memory_percent", "GPU memory", "#98df8a"],
];
const SYSTEM_SIZES = [
  ["system/memory_mb", "process memory (MiB)", "#d62728"],
  ["system/gpu_memory_mb", "GPU memory allocated (MiB)", "#17becf"],
];

function drawSystem(S, xt) {
  const shares = SYSTEM_SHARES.map(([key, name, color]) => line(S, key, name, color));
  const sizes = SYSTEM_SIZES.map(([key, name, color]) => line(S, key, name, color, { yaxis: "y2", line: { color, width: 1.6, dash: "dot" } }));
  const traces = [...shares, ...sizes].filter(Boolean);
  const el = document.getElementById("system");
  const extra = traces.length ? {} : { annotations: [waiting(S.run?.status === "running" ? "waiting for the first reading…" : "this run reported no system metrics (system_interval 0)")] };
  draw("system", traces, layout("System", xt, "% (CPU: of one core)", {
    yaxis: { rangemode: "tozero", nticks: 6 },
    yaxis2: { title: { text: "MiB" }, overlaying: "y", side: "right", rangemode: "tozero", showgrid: false, nticks: 5, tickformat: ".3~s", automargin: true },
    margin: { l: 64, r: 56, t: 36, b: 48 }, hovermode: "x unified", ...extra,
  })).then(() => { el.dataset.traces = String(traces.length); });
}
