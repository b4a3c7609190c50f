// plots.js — shared Plotly helpers: stable run colours, axis names with units, layouts that keep
// the user's zoom across live redraws (uirevision), and the MMS-histogram maths (bin centres,
// shares, log colour scale) used by the run and compare pages.

/* global Plotly */

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

const FONT = { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: "#222" };

/**
 * A compact layout. `uirevision` is constant per plot, so Plotly.react keeps the user's zoom/pan
 * and legend toggles while live data flows in.
 */
export function layout(title, xTitle, yTitle, extra = {}) {
  const { xaxis = {}, yaxis = {}, ...rest } = extra;
  return {
    title: { text: title, font: { size: 14 }, x: 0.01, xanchor: "left", y: 0.98, yanchor: "top" },
    font: FONT,
    margin: { l: 64, r: 16, t: 44, b: 48 },
    xaxis: { title: { text: xTitle }, automargin: true, zeroline: false, ...xaxis },
    yaxis: { title: { text: yTitle }, automargin: true, zeroline: false, ...yaxis },
    legend: { orientation: "h", x: 1, xanchor: "right", y: 1.0, yanchor: "bottom", font: { size: 11 }, bgcolor: "rgba(255,255,255,0.6)" },
    hovermode: "closest",
    uirevision: "keep",
    paper_bgcolor: "#fff",
    plot_bgcolor: "#fff",
    ...rest,
  };
}

let revision = 0;

/**
 * Plotly.react with a fresh `datarevision`: the live pages append to their arrays in place, and
 * Plotly.react only notices in-place changes when the revision moves.
 */
export function draw(el, data, lay) {
  if (typeof el === "string") el = document.getElementById(el);
  if (!el) return Promise.resolve();
  revision += 1;
  return Plotly.react(el, data, { ...lay, datarevision: revision }, PLOT_CONFIG);
}

/** A vertical legend on the right, for plots with many traces (compare page with many runs). */
export function sideLegend(n) {
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
