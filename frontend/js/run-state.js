// run-state.js — what the run page knows of one run, and how live messages change it.
//
// WS /ws/runs/{id} sends a snapshot, then numbered deltas (docs/api.md). Everything lands here:
// append-only, deduplicated by step (scalars, histograms, selection) or seq (logs), so a reconnect
// with ?since= can never double a point. Scalars arrive in one shape in both messages, columns per
// key ({step: [], epoch: [], ..., value: []}), and are kept in that shape. The column names,
// populations and quantile keys come from the server's vocabulary (GET /api/options).

import { binCentres } from "./plots.js";

// Page-side timing, read by the browser tests: when each candidates-histogram step arrived and
// when the heatmap that shows it finished drawing (epoch milliseconds, same clock as the server).
export const timing = { received: {}, drawn: {} };
export const nowMs = () => performance.timeOrigin + performance.now();

/** A fresh state for `vocabulary` ({counters, x_axes, populations, quantiles}). */
export function createRunState(vocabulary) {
  const S = {
    vocabulary,
    run: null,
    seq: null,
    edges: [],
    centres: [],
    hist: {},
    scalars: {}, // key -> {<counter>: [], ..., value: []}
    selection: emptySelection(),
    logs: [],
    lastLogSeq: -1,
    follow: true,
    histIndex: 0,
    xAxis: "step",
    sinceSent: [], // the ?since= of every (re)connection, for the tests
    disconnects: 0,
  };
  resetHistograms(S);
  return S;
}

function emptySelection() {
  return { steps: [], candidate_counts: [], selected_counts: [], misclassified_share: [], class_names: [] };
}

function resetHistograms(S) {
  const quantiles = () => Object.fromEntries(S.vocabulary.quantiles.map((k) => [k, []]));
  S.hist = Object.fromEntries(S.vocabulary.populations.map((pop) => [pop, {
    steps: [], epochs: [], wall_time: [], counts: [], thresholds: [], quantiles: quantiles(),
  }]));
}

/**
 * Apply one websocket message; returns the parts of the page it changed ({head, heat, hist,
 * quant, sel, scalars, log}: true where a redraw is due).
 */
export function applyMessage(S, msg) {
  S.seq = msg.seq;
  const changed = {};
  if (msg.type === "snapshot") {
    // A snapshot replaces everything (it can come again mid-stream after a resume truncated the
    // crashed attempt's tail).
    S.scalars = {};
    resetHistograms(S);
    S.selection = emptySelection();
    S.logs = [];
    S.lastLogSeq = -1;
    setRun(S, msg.run);
    appendScalars(S, msg.scalars);
    const edges = msg.edges[S.vocabulary.populations[0]] ?? Object.values(msg.edges)[0];
    if (edges) setEdges(S, edges);
    for (const [pop, series] of Object.entries(msg.histograms)) setHistograms(S, pop, series);
    setSelection(S, msg.selection);
    appendLogs(S, msg.logs);
    for (const H of Object.values(S.hist)) for (const st of H.steps) timing.received[st] ??= null;
    return { head: true, heat: true, hist: true, quant: true, sel: true, scalars: true, log: true };
  }
  // a delta
  if (msg.run) changed.head = setRun(S, msg.run);
  if (Object.keys(msg.scalars).length) {
    appendScalars(S, msg.scalars);
    changed.scalars = changed.quant = changed.head = true;
  }
  if (msg.histograms.length) {
    for (const row of msg.histograms) appendHistogramRow(S, row);
    changed.heat = changed.hist = changed.quant = true;
  }
  if (msg.selection.length) {
    for (const row of msg.selection) appendSelectionRow(S.selection, row);
    changed.sel = true;
  }
  if (msg.logs.length) changed.log = appendLogs(S, msg.logs);
  return changed;
}

function setRun(S, run) {
  S.run = run;
  return true;
}

/** Append scalar columns ({key: {<counter>: [], value: []}}), skipping steps already held. */
function appendScalars(S, columns) {
  const names = [...S.vocabulary.counters, "value"];
  for (const [key, incoming] of Object.entries(columns)) {
    const s = (S.scalars[key] ||= Object.fromEntries(names.map((c) => [c, []])));
    incoming.step.forEach((step, j) => {
      const n = s.step.length;
      if (n && step < s.step[n - 1]) return; // older than what we have: already seen
      const i = n && step === s.step[n - 1] ? n - 1 : n; // a repeated step replaces
      for (const c of names) s[c][i] = incoming[c][j];
    });
  }
}

/** The run's fixed histogram bin edges (the delta never carries them: see run.js ensureEdges). */
export function setEdges(S, edges) {
  if (!Array.isArray(edges) || edges.length < 2) return false;
  S.edges = edges;
  S.centres = binCentres(edges);
  return true;
}

function setHistograms(S, pop, h) {
  S.hist[pop] = {
    steps: h.steps.slice(),
    epochs: h.epochs.slice(),
    wall_time: h.wall_time.slice(),
    counts: h.counts.map((c) => c.slice()),
    thresholds: h.thresholds.slice(),
    quantiles: Object.fromEntries(S.vocabulary.quantiles.map((k) => [k, (h.quantiles[k] || []).slice()])),
  };
}

function appendHistogramRow(S, row) {
  const H = S.hist[row.population];
  if (!H) return;
  const n = H.steps.length;
  const put = (i) => {
    H.steps[i] = row.step; H.epochs[i] = row.epoch; H.wall_time[i] = row.wall_time;
    H.counts[i] = row.counts; H.thresholds[i] = row.threshold;
    for (const k of Object.keys(H.quantiles)) H.quantiles[k][i] = row.quantiles[k] ?? null;
  };
  if (n && row.step === H.steps[n - 1]) put(n - 1); // a repeated row replaces
  else if (!n || row.step > H.steps[n - 1]) put(n);
  else return; // older than what we have: already seen (reconnect overlap)
  if (row.population === S.vocabulary.populations[0] && timing.received[row.step] === undefined) timing.received[row.step] = nowMs();
}

function setSelection(S, sel) {
  S.selection = {
    steps: sel.steps.slice(),
    candidate_counts: sel.candidate_counts.map((c) => c.slice()),
    selected_counts: sel.selected_counts.map((c) => c.slice()),
    misclassified_share: sel.misclassified_share.slice(),
    class_names: sel.class_names,
  };
}

function appendSelectionRow(sel, row) {
  const n = sel.steps.length;
  if (n && row.step <= sel.steps[n - 1]) return;
  sel.steps.push(row.step);
  sel.candidate_counts.push(row.candidate_counts);
  sel.selected_counts.push(row.selected_counts);
  sel.misclassified_share.push(row.misclassified_share);
}

function appendLogs(S, rows) {
  let added = false;
  for (const r of rows) {
    if (r.seq <= S.lastLogSeq) continue;
    S.logs.push(r);
    S.lastLogSeq = r.seq;
    added = true;
  }
  return added;
}

/** The newest value of `key` (live series first, then the run's `latest`). */
export function latest(S, key) {
  const s = S.scalars[key];
  if (s && s.value.length) return s.value[s.value.length - 1];
  return S.run?.latest?.[key] ?? null;
}
