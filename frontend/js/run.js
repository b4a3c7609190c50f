// run.js — one run, live (/runs/{id}).
//
// Data flow: WS /ws/runs/{id} sends a snapshot, then numbered deltas. Everything lands in the
// local `S` store below (append-only, deduplicated by step/seq so a reconnect with ?since= can
// never double a point), marks the affected plots dirty, and one requestAnimationFrame redraws
// just those with Plotly.react. Layouts carry a constant `uirevision`, so zoom, pan and legend
// toggles survive every redraw; the histogram slider follows the newest step only while
// "follow live" is ticked.

import { api, liveSocket, errorText, fmtNum, fmtPct, fmtDuration, fmtDate, runDuration, isActive, escapeHtml, tokenQuery } from "./api.js";
import { h, $, confirmDialog, toast, connectionBanner, statusBadge, markNav } from "./ui.js";
import {
  runColor, classColor, runLabel, X_AXES, layout, draw, binCentres, logFriendly, shares,
  logShareMatrix, shareColorbar, lrDrops, vlines, thin,
} from "./plots.js";

const RUN_ID = Number(location.pathname.split("/").filter(Boolean).pop());
const COUNTERS = ["step", "epoch", "samples_forwarded", "samples_backpropagated", "wall_time"];
const TERMINAL = new Set(["finished", "failed", "cancelled", "crashed"]);
const MAX_COLUMNS = 800; // heatmap columns drawn at most

const S = {
  run: null,
  seq: null,
  edges: [],
  centres: [],
  hist: { candidates: emptyHist(), selected: emptyHist() },
  scalars: {}, // key -> {step:[], epoch:[], samples_forwarded:[], samples_backpropagated:[], wall_time:[], value:[]}
  selection: { steps: [], candidate_counts: [], selected_counts: [], misclassified_share: [], class_names: [] },
  logs: [],
  lastLogSeq: -1,
  follow: true,
  histIndex: 0,
  xAxis: "step",
  sinceSent: [], // the ?since= of every (re)connection, for the tests
  disconnects: 0,
};

// Page-side timing, read by the browser tests: when each candidates-histogram step arrived and
// when the heatmap that shows it finished drawing (epoch milliseconds, same clock as the server).
const timing = { received: {}, drawn: {} };
window.__marginscope = { S, timing };
const nowMs = () => performance.timeOrigin + performance.now();

function emptyHist() {
  return { steps: [], epochs: [], wall_time: [], counts: [], thresholds: [], quantiles: { p5: [], p25: [], p50: [], p75: [], p95: [] } };
}
function emptySeries() {
  return Object.fromEntries([...COUNTERS, "value"].map((k) => [k, []]));
}

// ---------------------------------------------------------------- ingesting data

/** Normalise a snapshot/REST series ({value|y, counters...}) into our column layout. */
function seriesFrom(raw, xName) {
  const s = emptySeries();
  const values = raw.value ?? raw.y ?? [];
  const n = values.length;
  s.value = values.slice();
  for (const c of COUNTERS) {
    if (Array.isArray(raw[c]) && raw[c].length === n) s[c] = raw[c].slice();
    else if (c === xName && Array.isArray(raw.x) && raw.x.length === n) s[c] = raw.x.slice();
    else s[c] = new Array(n).fill(null);
  }
  return s;
}

function setEdges(edges) {
  // The snapshot gives {population: edges}; the histogram endpoint a plain list.
  if (edges && !Array.isArray(edges)) edges = edges.candidates ?? Object.values(edges)[0];
  if (!Array.isArray(edges) || edges.length < 2) return;
  S.edges = edges;
  S.centres = binCentres(edges);
  dirty.heat = dirty.hist = true;
}

function setHist(pop, h) {
  if (!h || !Array.isArray(h.steps)) return;
  const q = h.quantiles || {};
  S.hist[pop] = {
    steps: h.steps.slice(),
    epochs: (h.epochs || []).slice(),
    wall_time: (h.wall_time || []).slice(),
    counts: h.counts.map((c) => c.slice()),
    thresholds: (h.thresholds || new Array(h.steps.length).fill(null)).slice(),
    quantiles: Object.fromEntries(["p5", "p25", "p50", "p75", "p95"].map((k) => [k, (q[k] || []).slice()])),
  };
  if (h.edges) setEdges(h.edges);
}

function appendHistRow(row) {
  const H = S.hist[row.population];
  if (!H) return;
  const n = H.steps.length;
  const q = row.quantiles || {};
  const put = (i) => {
    H.steps[i] = row.step; H.epochs[i] = row.epoch; H.wall_time[i] = row.wall_time;
    H.counts[i] = row.counts; H.thresholds[i] = row.threshold ?? null;
    for (const k of Object.keys(H.quantiles)) H.quantiles[k][i] = q[k] ?? null;
  };
  if (n && row.step === H.steps[n - 1]) put(n - 1); // a repeated row replaces
  else if (!n || row.step > H.steps[n - 1]) put(n);
  else return; // older than what we have: already seen (reconnect overlap)
  if (row.population === "candidates" && timing.received[row.step] === undefined) timing.received[row.step] = nowMs();
}

function appendScalar(row) {
  const s = (S.scalars[row.key] ||= emptySeries());
  const n = s.step.length;
  if (n && row.step < s.step[n - 1]) return;
  const i = n && row.step === s.step[n - 1] ? n - 1 : n;
  for (const c of COUNTERS) s[c][i] = row[c] ?? null;
  s.value[i] = row.value;
}

function setSelection(sel) {
  if (!sel || !Array.isArray(sel.steps)) return;
  S.selection = {
    steps: sel.steps.slice(),
    candidate_counts: sel.candidate_counts.map((c) => c.slice()),
    selected_counts: sel.selected_counts.map((c) => c.slice()),
    misclassified_share: sel.misclassified_share.slice(),
    class_names: sel.class_names || S.selection.class_names || [],
  };
}

function appendSelectionRow(row) {
  const sel = S.selection;
  const n = sel.steps.length;
  if (n && row.step <= sel.steps[n - 1]) return;
  sel.steps.push(row.step);
  sel.candidate_counts.push(row.candidate_counts);
  sel.selected_counts.push(row.selected_counts);
  sel.misclassified_share.push(row.misclassified_share ?? row.selected_misclassified ?? null);
}

function appendLogs(rows) {
  let added = false;
  for (const r of rows || []) {
    if (r.seq !== undefined && r.seq <= S.lastLogSeq) continue;
    S.logs.push(r);
    if (r.seq !== undefined) S.lastLogSeq = r.seq;
    added = true;
  }
  if (added) dirty.log = true;
}

function setRun(run) {
  if (!run) return;
  const before = S.run?.status;
  S.run = run;
  dirty.head = true;
  if (before && before !== run.status && TERMINAL.has(run.status)) loadLogs(); // final log lines
}

let edgesRequested = false;
async function ensureEdges() {
  if (S.edges.length || edgesRequested) return;
  edgesRequested = true;
  try {
    const r = await api.get(`/api/runs/${RUN_ID}/histograms`, { population: "candidates", max_rows: 1 });
    setEdges(r.edges);
    schedule();
  } catch (_) { edgesRequested = false; }
}

function onMessage(msg) {
  if (msg.seq !== undefined && msg.seq !== null) S.seq = msg.seq;
  if (msg.type === "snapshot") {
    // A snapshot replaces everything (it can come again mid-stream after a resume truncated the
    // crashed attempt's tail).
    setRun(msg.run);
    S.scalars = {};
    S.hist = { candidates: emptyHist(), selected: emptyHist() };
    if (msg.logs) { S.logs = []; S.lastLogSeq = -1; dirty.log = true; }
    for (const [k, raw] of Object.entries(msg.series || {})) S.scalars[k] = seriesFrom(raw, msg.x || "step");
    setEdges(msg.edges);
    const hs = msg.histograms || {};
    for (const pop of ["candidates", "selected"]) if (hs[pop]) setHist(pop, hs[pop]);
    if (msg.selection) setSelection(msg.selection);
    if (msg.logs) appendLogs(msg.logs);
    for (const pop of ["candidates", "selected"]) for (const st of S.hist[pop].steps) timing.received[st] ??= null;
    Object.assign(dirty, { heat: true, hist: true, quant: true, sel: true, scalars: true, head: true });
  } else if (msg.type === "delta") {
    if (msg.run) setRun(msg.run);
    if (msg.scalars?.length) { for (const r of msg.scalars) appendScalar(r); dirty.scalars = dirty.quant = dirty.head = true; }
    if (msg.histograms?.length) {
      for (const r of msg.histograms) appendHistRow(r);
      dirty.heat = dirty.hist = dirty.quant = true;
      if (!S.edges.length) ensureEdges();
    }
    if (msg.selection?.length) { for (const r of msg.selection) appendSelectionRow(r); dirty.sel = true; }
    if (msg.logs?.length) appendLogs(msg.logs);
  } else if (msg.type === "run" && msg.run) {
    setRun(msg.run);
  } else if (msg.type === "error") {
    toast(msg.detail || "server error on the live connection", "error");
  }
  schedule();
}

// ---------------------------------------------------------------- drawing

const dirty = { head: true, heat: true, hist: true, quant: true, sel: true, scalars: true, log: true };
let frame = null;
function schedule() {
  if (frame === null) frame = requestAnimationFrame(() => { frame = null; redraw(); });
}

// The margin plots redraw on every frame with news; the secondary plots (selection statistics,
// loss/accuracy, throughput, LR) at most every SECONDARY_MS, so a busy stream keeps the page light.
const SECONDARY = ["quant", "sel", "scalars"];
const SECONDARY_MS = 400;
let lastSecondary = 0;
let secondaryTimer = null;

function redraw() {
  const now = performance.now();
  const secondaryDue = now - lastSecondary >= SECONDARY_MS;
  const d = { ...dirty };
  for (const k of Object.keys(dirty)) if (secondaryDue || !SECONDARY.includes(k)) dirty[k] = false;
  if (d.head) drawHead();
  if (d.heat) drawHeatmaps();
  if (d.hist) drawCurrentHist();
  if (secondaryDue) {
    if (d.quant || d.sel || d.scalars) lastSecondary = now;
    if (d.quant || d.scalars) drawQuantiles();
    if (d.sel) drawSelection();
    if (d.scalars) drawScalars();
  } else if (SECONDARY.some((k) => dirty[k]) && secondaryTimer === null) {
    secondaryTimer = setTimeout(() => { secondaryTimer = null; schedule(); }, SECONDARY_MS - (now - lastSecondary));
  }
  if (d.log) drawLog();
  document.body.dataset.ready = "1";
}

function kpi(label, value, testid) {
  return h("div", { "data-testid": testid }, label, h("b", {}, value));
}

function latest(key) {
  const s = S.scalars[key];
  if (s && s.value.length) return s.value[s.value.length - 1];
  return S.run?.latest?.[key] ?? null;
}

function drawHead() {
  const r = S.run;
  if (!r) return;
  document.title = `${r.name || `run ${r.id}`} · MarginScope`;
  $("#run-title").textContent = `#${r.id} ${r.name || ""}`;
  $("#run-swatch").style.background = runColor(r.id);
  $("#run-status").replaceChildren(statusBadge(r.status));
  const pool = r.selector === "uniform" ? r.batch_size : r.candidates;
  $("#run-meta").textContent = [
    `dataset ${r.dataset}`, `model ${r.model}`, `selector ${r.selector}`, `B/b ${pool}/${r.batch_size}`,
    `seed ${r.config?.seed ?? "–"}`, `created ${fmtDate(r.created_at)}`,
    r.tags?.length ? `tags: ${r.tags.join(", ")}` : "",
  ].filter(Boolean).join(" · ");
  $("#cancel-btn").disabled = !isActive(r.status);
  $("#resume-btn").disabled = !(r.status === "cancelled" || r.status === "crashed");

  const step = r.progress?.step ?? 0;
  const total = r.progress?.total_steps ?? null;
  const frac = total ? Math.min(1, step / total) : 0;
  $("#progress > div").style.width = `${(100 * frac).toFixed(1)}%`;
  $("#progress").setAttribute("aria-valuenow", (100 * frac).toFixed(0));
  $("#progress-text").textContent = total ? `step ${step.toLocaleString("en-US")} / ${total.toLocaleString("en-US")} (${(100 * frac).toFixed(0)}%)` : `step ${step}`;
  let eta = "–";
  if (r.status === "running" && total && step > 0) {
    const stepTime = latest("step_time");
    const elapsed = runDuration(r);
    const perStep = elapsed && step ? elapsed / step : stepTime;
    if (perStep) eta = fmtDuration((total - step) * perStep);
  } else if (TERMINAL.has(r.status)) eta = `ran ${fmtDuration(runDuration(r))}`;
  $("#eta").textContent = r.status === "running" ? `ETA ${eta}` : eta;

  const best = latest("val/best_accuracy");
  $("#kpis").replaceChildren(
    kpi("val accuracy", fmtPct(latest("val/accuracy")), "kpi-val"),
    kpi("best val accuracy", fmtPct(best), "kpi-best"),
    kpi("train-batch loss", fmtNum(latest("train/loss")), "kpi-loss"),
    kpi("test accuracy", fmtPct(latest("test/accuracy")), "kpi-test"),
    kpi("samples / s", fmtNum(latest("samples_per_s"), 0), "kpi-sps"),
    kpi("samples back-propagated", fmtNum(latest("samples_backpropagated") ?? lastCounter("samples_backpropagated")), "kpi-sbp"),
    kpi("epoch", fmtNum(r.progress?.epoch ?? null, 2), "kpi-epoch"),
  );
  const err = $("#run-error");
  err.classList.toggle("hidden", !r.error);
  if (r.error) err.textContent = r.traceback ? `${r.error}\n\n${r.traceback}` : r.error;
  $("#config").textContent = JSON.stringify(r.config, null, 2);
}

function lastCounter(c) {
  const s = S.scalars["train/loss"];
  return s && s[c].length ? s[c][s[c].length - 1] : null;
}

function mmsAxis(extra = {}) {
  return { title: { text: "minimal margin score" }, type: logFriendly(S.centres) ? "log" : "linear", exponentformat: "power", dtick: logFriendly(S.centres) ? 1 : undefined, ...extra };
}

function drawHeatmaps() {
  for (const pop of ["candidates", "selected"]) {
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
      yaxis: mmsAxis(), showlegend: false,
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

function drawCurrentHist() {
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
    xaxis: mmsAxis(), yaxis: { tickformat: ".0%", rangemode: "tozero" }, shapes, annotations,
  }));
}

function lrDropSteps() {
  const lr = S.scalars.lr;
  return lr ? lrDrops(lr.step, lr.value) : [];
}

function drawQuantiles() {
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
  const drops = lrDropSteps();
  const annotations = drops.map((x) => ({ x, xref: "x", y: 0, yref: "paper", text: "LR drop", showarrow: false, font: { size: 10, color: "#666" }, yanchor: "bottom", xanchor: "left" }));
  draw("quantiles", traces, layout("Candidate MMS quantiles (dashed lines: LR drops)", "step", "", {
    yaxis: { title: { text: "minimal margin score" }, type: "log", exponentformat: "power" },
    shapes: vlines(drops), annotations,
  }));
}

function drawSelection() {
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

function xy(key) {
  const s = S.scalars[key];
  if (!s) return null;
  return { x: s[S.xAxis], y: s.value };
}

function line(key, name, color, extra = {}) {
  const d = xy(key);
  if (!d) return null;
  return { type: "scatter", mode: "lines", x: d.x, y: d.y, name, line: { color, width: 1.6 }, ...extra };
}

function dropShapes() {
  const lr = S.scalars.lr;
  if (!lr) return [];
  const xs = [];
  for (let i = 1; i < lr.value.length; i++) if (lr.value[i] < lr.value[i - 1] * (1 - 1e-9)) xs.push(lr[S.xAxis][i]);
  return vlines(xs.filter((x) => x !== null && x !== undefined));
}

function drawScalars() {
  const xt = X_AXES[S.xAxis];
  const marker = { mode: "lines+markers", marker: { size: 5 } };
  const lossTraces = [line("train/loss", "training batch (selected)", "#1f77b4"), line("val/loss", "validation", "#ff7f0e", marker), line("test/loss", "test (final)", "#2ca02c", { mode: "markers", marker: { size: 9, symbol: "star" } })].filter(Boolean);
  draw("loss", lossTraces, layout("Loss", xt, "cross-entropy (nats)", { shapes: dropShapes(), yaxis: { type: "log", exponentformat: "power" } }));
  const accTraces = [line("train/accuracy", "training batch (selected)", "#1f77b4"), line("val/accuracy", "validation", "#ff7f0e", marker), line("test/accuracy", "test (final)", "#2ca02c", { mode: "markers", marker: { size: 9, symbol: "star" } })].filter(Boolean);
  draw("accuracy", accTraces, layout("Accuracy", xt, "accuracy", { shapes: dropShapes(), yaxis: { tickformat: ".0%" } }));

  const sps = line("samples_per_s", "samples back-propagated / s", "#9467bd");
  const st = S.scalars.step_time;
  const sc = S.scalars.score_time;
  const tt = [sps].filter(Boolean);
  if (st) tt.push({ type: "scatter", mode: "lines", x: st[S.xAxis], y: st.value.map((v) => v * 1000), name: "step time (ms)", yaxis: "y2", line: { color: "#8c564b", width: 1, dash: "dot" } });
  if (sc) tt.push({ type: "scatter", mode: "lines", x: sc[S.xAxis], y: sc.value.map((v) => v * 1000), name: "scoring time (ms)", yaxis: "y2", line: { color: "#e377c2", width: 1, dash: "dot" } });
  draw("throughput", tt, layout("Throughput", xt, "samples back-propagated / s", {
    yaxis2: { title: { text: "ms per step" }, overlaying: "y", side: "right", rangemode: "tozero", showgrid: false },
    yaxis: { rangemode: "tozero" }, margin: { l: 64, r: 56, t: 36, b: 48 },
  }));
  const lr = line("lr", "learning rate", "#2ca02c", { line: { shape: "hv", color: "#2ca02c" } });
  draw("lr", lr ? [lr] : [], layout("Learning rate", xt, "learning rate", { yaxis: { type: "log", exponentformat: "power" }, showlegend: false }));
}

function drawLog() {
  const pre = $("#log");
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.replaceChildren(...S.logs.slice(-1000).map((l) => h("span", { class: l.level || "info" },
    `${fmtDate(l.time)} ${String(l.level || "info").padEnd(7)} ${l.message}\n`)));
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

// ---------------------------------------------------------------- REST loads and actions

async function loadLogs() {
  try {
    const r = await api.get(`/api/runs/${RUN_ID}/logs`, { after: S.lastLogSeq + 1 > 0 ? S.lastLogSeq : 0, limit: 500 });
    appendLogs(r.data);
    schedule();
  } catch (_) { /* the websocket will carry new lines anyway */ }
}

async function loadSelection() {
  try {
    const r = await api.get(`/api/runs/${RUN_ID}/selection`, { max_points: 500 });
    // Rows the websocket already delivered are newer than the REST answer's tail: keep them.
    const live = S.selection;
    setSelection(r);
    for (let i = 0; i < live.steps.length; i++) {
      appendSelectionRow({ step: live.steps[i], candidate_counts: live.candidate_counts[i], selected_counts: live.selected_counts[i], misclassified_share: live.misclassified_share[i] });
    }
    dirty.sel = true;
    schedule();
  } catch (_) { /* no selection statistics (hist_every = 0) */ }
}

/** Fill in a counter the snapshot did not carry (e.g. wall_time) from the metrics endpoint. */
async function ensureAxis(axis) {
  const missing = Object.entries(S.scalars).filter(([, s]) => s[axis].some((v) => v === null)).map(([k]) => k);
  if (!missing.length) return;
  try {
    const r = await api.get(`/api/runs/${RUN_ID}/metrics`, { keys: missing.join(","), x: axis, max_points: 2000 });
    for (const [k, raw] of Object.entries(r.series || {})) {
      const fresh = seriesFrom(raw, r.x || axis);
      const old = S.scalars[k];
      // keep live rows newer than the REST answer
      const lastStep = fresh.step.length ? fresh.step[fresh.step.length - 1] : -1;
      if (old) for (let i = 0; i < old.step.length; i++) if (old.step[i] > lastStep) for (const c of [...COUNTERS, "value"]) fresh[c].push(old[c][i]);
      S.scalars[k] = fresh;
    }
    dirty.scalars = true;
    schedule();
  } catch (err) { toast(`Could not load the ${axis} axis: ${errorText(err)}`, "error"); }
}

async function cancelRun() {
  if (!(await confirmDialog(`Cancel run ${RUN_ID}? It stops after the current step and keeps a checkpoint, so it can be resumed.`, { confirmText: "Cancel run" }))) return;
  try { setRun(await api.post(`/api/runs/${RUN_ID}/cancel`)); schedule(); toast("Cancelling…"); } catch (err) { toast(`Could not cancel: ${errorText(err)}`, "error"); }
}

async function resumeRun() {
  try { setRun(await api.post(`/api/runs/${RUN_ID}/resume`)); schedule(); toast("Resuming from the last checkpoint"); } catch (err) { toast(`Could not resume: ${errorText(err)}`, "error"); }
}

function init() {
  markNav("run");
  if (!Number.isFinite(RUN_ID)) { $("#run-meta").textContent = "No run id in the address."; return; }
  $("#export-csv").href = `/api/runs/${RUN_ID}/export${tokenQuery({ format: "csv" })}`;
  $("#export-json").href = `/api/runs/${RUN_ID}/export${tokenQuery({ format: "json" })}`;
  $("#compare-link").href = `/compare?runs=${RUN_ID}&baseline=${RUN_ID}`;
  $("#cancel-btn").addEventListener("click", cancelRun);
  $("#resume-btn").addEventListener("click", resumeRun);
  const slider = $("#hist-slider");
  slider.addEventListener("input", () => {
    S.histIndex = Number(slider.value);
    S.follow = S.histIndex >= S.hist.candidates.steps.length - 1;
    $("#hist-follow").checked = S.follow;
    dirty.hist = true;
    schedule();
  });
  $("#hist-follow").addEventListener("change", (ev) => { S.follow = ev.target.checked; dirty.hist = true; schedule(); });
  $("#x-axis").addEventListener("change", (ev) => { S.xAxis = ev.target.value; dirty.scalars = true; schedule(); ensureAxis(S.xAxis); });

  // REST first for the run header (fast), then the live socket delivers everything else.
  api.get(`/api/runs/${RUN_ID}`).then((r) => { if (!S.run) { setRun(r); schedule(); } })
    .catch((err) => { $("#run-meta").textContent = err.status === 404 ? `Run ${RUN_ID} does not exist.` : errorText(err); });
  loadSelection();
  window.__marginscope.socket = liveSocket(`/ws/runs/${RUN_ID}`, {
    since: () => { S.sinceSent.push(S.seq); return S.seq; },
    onStatus: (ok) => { connectionBanner(ok); if (!ok) S.disconnects += 1; },
    onMessage,
  });
  setInterval(() => { if (S.run && S.run.status === "running") { dirty.head = true; schedule(); } }, 1000);
}

init();
