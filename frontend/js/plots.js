// plots.js — shared Plotly helpers: stable run colours, axis names with units, layouts that keep
// the user's zoom across live redraws (uirevision), and the MMS-histogram maths (bin centres,
// shares, log colour scale) used by the run and compare pages.

/* global Plotly */

import { plotTheme } from "./theme.js";

// Tableau-10-like palette, picked by run id so a run keeps its colour on every page.
const PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
];
export const runColor = (id) => PALETTE[((Number(id) % PALETTE.length) + PALETTE.length) % PALETTE.length];
export const classColor = (k) => PALETTE[k % PALETTE.length];

/** Legend name for a run: "name (selector)". */
export function runLabel(run) {
  const name = run.name || `run ${run.id}`;
  const sel = run.selector || (run.config && run.config.selector) || "?";
  return `${name} (${sel})`;
}

/** Short names of the x axes (the server's vocabulary lists which exist), for pickers. */
export const AXIS_NAMES = {
  step: "step",
  epoch: "epoch",
  samples_forwarded: "samples forwarded",
  samples_backpropagated: "samples back-propagated",
  wall_time: "wall-clock",
};

/** Axis titles that carry units, by x axis. */
export const X_AXES = {
  step: "step (optimizer steps)",
  samples_backpropagated: "samples back-propagated",
  samples_forwarded: "samples forwarded",
  wall_time: "wall-clock (s of training)",
  epoch: "epoch",
};

export const KEY_TITLES = {
  "val/accuracy": "validation accuracy (fraction)",
  "val/loss": "validation loss (cross-entropy, nats)",
  "train/accuracy": "training-batch accuracy (fraction)",
  "train/loss": "training-batch loss (cross-entropy, nats)",
  "test/accuracy": "test accuracy (fraction)",
  "samples_per_s": "throughput (samples back-propagated / s)",
  "lr": "learning rate",
  "mms/candidates/p50": "median MMS of candidates",
};

export const PLOT_CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

const FONT = { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12 };

/** Narrow screens get a smaller plot margin and legends below the plot. */
const narrow = () => window.innerWidth < 640;
const PHONE_PLOT_HEIGHT = 280; // .plot's height on a phone (css/style.css)

/**
 * A compact layout in the page's theme (js/theme.js). `uirevision` is constant per plot, so
 * Plotly.react keeps the user's zoom/pan and legend toggles while live data flows in.
 */
export function layout(title, xTitle, yTitle, extra = {}) {
  const { xaxis = {}, yaxis = {}, ...rest } = extra;
  const t = plotTheme();
  const axis = { automargin: true, zeroline: false, gridcolor: t.grid, linecolor: t.grid };
  const text = narrow() ? wrapTitle(title, 44) : title;
  return {
    title: { text, font: { size: narrow() ? 12 : 14 }, x: 0.01, xanchor: "left", ...(narrow() ? { yref: "container", y: 1, yanchor: "top", pad: { t: 8 } } : { y: 0.98, yanchor: "top" }) },
    font: { ...FONT, color: t.fg },
    // a wrapped title gets 16 px more top margin per line, however many lines it wraps to
    margin: narrow() ? { l: 48, r: 8, t: 28 + 16 * text.split("<br>").length, b: 40 } : { l: 64, r: 16, t: 44, b: 48 },
    xaxis: { title: { text: xTitle }, ...axis, ...xaxis },
    yaxis: { title: { text: yTitle }, ...axis, ...yaxis },
    legend: { orientation: "h", x: 1, xanchor: "right", y: 1.0, yanchor: "bottom", font: { size: 11 }, bgcolor: "rgba(0,0,0,0)" },
    hovermode: "closest",
    hoverlabel: { bgcolor: t.paper_bgcolor, bordercolor: t.grid, font: { color: t.fg } },
    uirevision: "keep",
    paper_bgcolor: t.paper_bgcolor,
    plot_bgcolor: t.plot_bgcolor,
    ...rest,
  };
}

/** A long title broken into lines of at most `width` characters (Plotly clips, never wraps). */
function wrapTitle(title, width) {
  const lines = [];
  let line = "";
  for (const word of String(title).split(" ")) {
    if (line && line.length + word.length + 1 > width) { lines.push(line); line = word; } else line = line ? `${line} ${word}` : word;
  }
  lines.push(line);
  return lines.join("<br>");
}

/**
 * A log y axis whose labels never overlap: one label per decade when the values span one or
 * more decades (Plotly would also label 2 and 5 between them), Plotly's own ticks otherwise.
 */
export function logAxis(values, extra = {}) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) if (v > 0) { if (v < lo) lo = v; if (v > hi) hi = v; }
  const decades = hi > lo ? Math.log10(hi / lo) : 0;
  return { type: "log", exponentformat: "power", ...(decades >= 1 ? { dtick: 1 } : { nticks: 4 }), ...extra };
}

// Per-plot choices the user made with the mode bar (log/linear y), kept across redraws.
const yScale = new Map(); // element id -> "log" | "linear"

const LOG_ICON = { width: 1000, height: 1000, path: "M100 900V100h80v720h720v80zM260 700l180-300 160 160 240-420 70 40-290 510-160-160-130 220z" };

let revision = 0;

/**
 * Plotly.react with a fresh `datarevision`: the live pages append to their arrays in place, and
 * Plotly.react only notices in-place changes when the revision moves. A plot with `toggleLog`
 * gets a mode-bar button switching its y axis between log and linear (remembered per plot).
 */
export function draw(el, data, lay, { toggleLog = false } = {}) {
  if (typeof el === "string") el = document.getElementById(el);
  if (!el) return Promise.resolve();
  if (lay.height) el.style.height = `${lay.height}px`; // a layout that needs more room than the CSS gives
  revision += 1;
  let shown = lay;
  const chosen = yScale.get(el.id);
  if (chosen) {
    const { dtick, nticks, ...yaxis } = lay.yaxis || {};
    shown = { ...lay, yaxis: chosen === "log" ? { ...yaxis, ...(lay.yaxis?.type === "log" ? { dtick, nticks } : {}), type: "log", exponentformat: "power" } : { ...yaxis, type: "linear" } };
  }
  el.dataset.yScale = shown.yaxis?.type === "log" ? "log" : "linear";
  const config = toggleLog ? {
    ...PLOT_CONFIG,
    modeBarButtonsToAdd: [{
      name: "log / linear y axis", icon: LOG_ICON,
      click: () => {
        yScale.set(el.id, el.dataset.yScale === "log" ? "linear" : "log");
        draw(el, el.data, el.lastLayout, { toggleLog });
      },
    }],
  } : PLOT_CONFIG;
  el.lastLayout = lay;
  return Plotly.react(el, data, { ...shown, datarevision: revision }, config);
}

/** Switch a plot's y axis between log and linear (what its mode-bar button does). */
export function toggleYScale(id) {
  const el = document.getElementById(id);
  yScale.set(id, el.dataset.yScale === "log" ? "linear" : "log");
  return draw(el, el.data, el.lastLayout, { toggleLog: true });
}

/**
 * TensorBoard's smoothing: an exponential moving average, debiased at the start, that skips
 * missing values. `weight` 0 returns the values as they are.
 */
export function ema(values, weight) {
  if (!weight) return values;
  const out = new Array(values.length);
  let acc = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined || !Number.isFinite(v)) { out[i] = v; continue; }
    acc = acc * weight + (1 - weight) * v;
    n += 1;
    out[i] = acc / (1 - weight ** n);
  }
  return out;
}

/**
 * A line trace smoothed by `weight`, with its raw values kept faint behind it (one legend entry
 * for both). Unsmoothed (weight 0) it is the trace itself.
 */
export function smoothed(trace, weight) {
  if (!weight || !trace.y || trace.y.length < 3) return [trace];
  const group = trace.legendgroup || trace.name;
  const raw = {
    ...trace, legendgroup: group, showlegend: false, hoverinfo: "skip", hovertemplate: undefined,
    mode: "lines", opacity: 0.25, name: `${trace.name} (raw)`, meta: "raw",
  };
  return [raw, { ...trace, legendgroup: group, y: ema(trace.y, weight), mode: "lines" }];
}

/**
 * Zoom the x axes of several plots together: a zoom, pan or reset on one is applied to the
 * others (Plotly's own `matches` works only inside one figure).
 */
export function syncX(ids) {
  // The range last applied to the group: the relayouts made here fire their own events, later,
  // and those must not bounce back and forth between the plots.
  const group = ids.join(",");
  for (const id of ids) {
    const el = document.getElementById(id);
    if (!el || !el.on || el.dataset.synced === group) continue;
    el.dataset.synced = group;
    el.on("plotly_relayout", (ev) => {
      let update = null;
      if (ev["xaxis.autorange"]) update = { "xaxis.autorange": true };
      else if (ev["xaxis.range[0]"] !== undefined) update = { "xaxis.range": [ev["xaxis.range[0]"], ev["xaxis.range[1]"]] };
      else if (Array.isArray(ev["xaxis.range"])) update = { "xaxis.range": ev["xaxis.range"] };
      if (!update) return;
      const key = JSON.stringify(update);
      if (syncedRange.get(group) === key) return;
      syncedRange.set(group, key);
      for (const o of ids) {
        const other = document.getElementById(o);
        if (o !== id && other && other.data) Plotly.relayout(other, update);
      }
    });
  }
}

const syncedRange = new Map(); // group -> the x range last applied to all its plots

/** A vertical legend on the right, for plots with many traces (compare page with many runs). */
export function sideLegend(n) {
  if (narrow()) {
    // a phone: the legend goes below the x axis's title, one entry per line at the bottom of a plot
    // grown by as many lines, so neither the plot nor the title is squeezed or covered
    const rows = 18 * n;
    return {
      showlegend: true, height: PHONE_PLOT_HEIGHT + rows,
      legend: { orientation: "h", x: 0, xanchor: "left", yref: "container", y: 0, yanchor: "bottom", font: { size: 10 } },
      margin: { l: 48, r: 8, t: 44, b: 56 + rows },
    };
  }
  return n > 4 ? { showlegend: true, legend: { orientation: "v", x: 1.02, xanchor: "left", y: 1, yanchor: "top", font: { size: 11 } }, margin: { l: 64, r: 8, t: 44, b: 48 } } : {};
}

// ---------------------------------------------------------------- histogram maths

/**
 * Centres of the run's fixed bins. The edges are roughly logarithmic, so the centre of a bin with
 * positive edges is their geometric mean; a bin starting at 0 uses the arithmetic mean.
 */
export function binCentres(edges) {
  const c = [];
  for (let i = 0; i + 1 < edges.length; i++) {
    const a = edges[i];
    const b = edges[i + 1];
    c.push(a > 0 && b > 0 ? Math.sqrt(a * b) : (a + b) / 2);
  }
  return c;
}

/** Whether a log axis suits these bin centres (all positive and spanning > 1 decade). */
export function logFriendly(centres) {
  if (!centres.length || centres[0] <= 0) return false;
  return centres[centres.length - 1] / centres[0] > 10;
}

/** Counts → shares of the row total (0..1); an empty row gives zeros. */
export function shares(counts) {
  let total = 0;
  for (const c of counts) total += c;
  return counts.map((c) => (total > 0 ? c / total : 0));
}

/**
 * Heatmap z (bins × steps) of log10(share); empty cells are null (drawn transparent) so the
 * log colour scale is not swamped by zeros.
 */
export function logShareMatrix(rows, nBins) {
  const z = Array.from({ length: nBins }, () => new Array(rows.length).fill(null));
  rows.forEach((counts, j) => {
    const s = shares(counts);
    for (let i = 0; i < nBins; i++) if (s[i] > 0) z[i][j] = Math.log10(s[i]);
  });
  return z;
}

/** Ticks for a log10(share) colorbar: 1, 10%, 1%, ... down to `min`. */
export function shareColorbar(title) {
  const tickvals = [0, -1, -2, -3, -4, -5];
  return {
    title: { text: title, side: "right" },
    tickvals,
    ticktext: ["100%", "10%", "1%", "0.1%", "0.01%", "0.001%"],
    thickness: 12,
    len: 0.9,
  };
}

/** Steps where the LR series decreases (the schedule's drops). */
export function lrDrops(steps, values) {
  const drops = [];
  for (let i = 1; i < values.length; i++) {
    if (values[i] < values[i - 1] * (1 - 1e-9)) drops.push(steps[i]);
  }
  return drops;
}

/** Vertical dashed line shapes at the given x positions (LR drops, thresholds). */
export function vlines(xs, color = "#888", dash = "dash") {
  return xs.map((x) => ({
    type: "line", xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1,
    line: { color, width: 1, dash },
  }));
}

/** Index of the element of sorted `arr` closest to `v`. */
export function nearestIndex(arr, v) {
  if (!arr.length) return -1;
  let lo = 0;
  let hi = arr.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (arr[mid] < v) lo = mid + 1; else hi = mid;
  }
  if (lo > 0 && Math.abs(arr[lo - 1] - v) <= Math.abs(arr[lo] - v)) return lo - 1;
  return lo;
}

/** Keep at most `max` points of parallel arrays by striding (first and last kept). */
export function thin(n, max) {
  if (n <= max) return null;
  const idx = [];
  const stride = (n - 1) / (max - 1);
  for (let i = 0; i < max; i++) idx.push(Math.round(i * stride));
  return idx;
}
