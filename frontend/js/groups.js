// groups.js — runs seen as groups (the compare page's "group by"): the only honest way to compare
// selectors over several seeds is each group's mean with its spread. Pure functions of the runs
// and their series, so the page and the browser tests read the same numbers.

import { ema } from "./plots.js";

const GROUP_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const MAX_GRID = 1500; // points of a band at most

/** What a run is grouped by: its selector, its tags, or one config field. */
export function groupKey(run, by) {
  if (by === "selector") return run.selector ?? run.config?.selector ?? "?";
  if (by === "tag") return (run.tags || []).slice().sort().join(", ") || "(no tag)";
  const v = run.config?.[by];
  return v === undefined ? "–" : typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
}

/**
 * Runs grouped by `by`, in the order their first run appears; the group holding `baselineId` is
 * the baseline group.
 */
export function groupRuns(runs, by, baselineId) {
  const groups = new Map();
  for (const run of runs) {
    const key = groupKey(run, by);
    if (!groups.has(key)) {
      groups.set(key, { key, label: by === "selector" || by === "tag" ? key : `${by} = ${key}`, runs: [], baseline: false });
    }
    groups.get(key).runs.push(run);
  }
  return [...groups.values()].map((g, i) => ({
    ...g, color: GROUP_COLORS[i % GROUP_COLORS.length], baseline: g.runs.some((r) => r.id === baselineId),
  }));
}

/** Linear interpolation of sorted (xs, ys) at x; null outside their range. */
function interpolate(xs, ys, x) {
  if (!xs.length || x < xs[0] || x > xs[xs.length - 1]) return null;
  let lo = 0;
  let hi = xs.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] <= x) lo = mid; else hi = mid;
  }
  if (xs[hi] === xs[lo]) return ys[lo];
  const t = (x - xs[lo]) / (xs[hi] - xs[lo]);
  return ys[lo] === null || ys[hi] === null ? null : ys[lo] + t * (ys[hi] - ys[lo]);
}

/** Mean and sample standard deviation (0 for one value). */
export function meanSd(values) {
  const v = values.filter((x) => x !== null && x !== undefined && Number.isFinite(x));
  const n = v.length;
  if (!n) return { n: 0, mean: null, sd: null };
  const mean = v.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { n, mean, sd };
}

/**
 * A group's band and mean line over the x range every one of its runs covers: each run's
 * series (smoothed first, if asked) interpolated onto the union of their x values.
 * `band`: "sd" (mean ± sd) or "minmax".
 */
export function bandTraces(group, series, { band = "sd", smooth = 0 } = {}) {
  const lines = group.runs.map((r) => series[String(r.id)]).filter((s) => s && s.x.length)
    .map((s) => ({ x: s.x, y: ema(s.y, smooth) }));
  if (!lines.length) return [];
  const from = Math.max(...lines.map((l) => l.x[0]));
  const to = Math.min(...lines.map((l) => l.x[l.x.length - 1]));
  let grid = [...new Set(lines.flatMap((l) => l.x))].filter((x) => x >= from && x <= to).sort((a, b) => a - b);
  if (grid.length > MAX_GRID) {
    const stride = (grid.length - 1) / (MAX_GRID - 1);
    grid = Array.from({ length: MAX_GRID }, (_, i) => grid[Math.round(i * stride)]);
  }
  const mean = [];
  const lower = [];
  const upper = [];
  for (const x of grid) {
    const vals = lines.map((l) => interpolate(l.x, l.y, x)).filter((v) => v !== null);
    const m = meanSd(vals);
    mean.push(m.mean);
    lower.push(band === "minmax" ? Math.min(...vals) : m.mean - m.sd);
    upper.push(band === "minmax" ? Math.max(...vals) : m.mean + m.sd);
  }
  const name = `${group.label} (${lines.length} run${lines.length === 1 ? "" : "s"})${group.baseline ? " — baseline" : ""}`;
  return [{
    type: "scatter", mode: "lines", x: [...grid, ...grid.slice().reverse()], y: [...upper, ...lower.slice().reverse()],
    fill: "toself", fillcolor: `${group.color}33`, line: { width: 0, color: group.color }, hoverinfo: "skip",
    showlegend: false, legendgroup: group.key, name: `${name} band`, meta: "band",
  }, {
    type: "scatter", mode: "lines", x: grid, y: mean, name, legendgroup: group.key, meta: "mean",
    line: { color: group.color, width: group.baseline ? 2.5 : 2 },
    hovertemplate: `%{y:.4g}<extra>${name.replace(/[<>]/g, "")} mean</extra>`,
  }];
}

const RATIO_AXES = ["step", "samples_forwarded", "wall_time"];

/**
 * The grouped time-to-target table: for each group, how many runs reached the target, and per
 * axis the mean ± sd over its runs of run / (the baseline group's run with the same seed; the
 * baseline group's mean where no seed matches).
 */
export function groupTable(groups, table) {
  const rowOf = new Map(table.map((r) => [r.run_id, r]));
  const base = groups.find((g) => g.baseline) || groups[0];
  const seed = (run) => run.config?.seed;
  const baseBySeed = new Map(base.runs.filter((r) => rowOf.get(r.id)?.reached).map((r) => [seed(r), rowOf.get(r.id)]));
  const baseMean = Object.fromEntries(RATIO_AXES.map((a) => [a, meanSd(base.runs.map((r) => rowOf.get(r.id)).filter((r) => r?.reached).map((r) => r[a])).mean]));
  return groups.map((g) => {
    const rows = g.runs.map((r) => ({ run: r, row: rowOf.get(r.id) })).filter((x) => x.row);
    const reached = rows.filter((x) => x.row.reached);
    const ratios = Object.fromEntries(RATIO_AXES.map((a) => [a, meanSd(reached.map(({ run, row }) => {
      const ref = baseBySeed.get(seed(run))?.[a] ?? baseMean[a];
      return ref ? row[a] / ref : null;
    }))]));
    return { label: g.label, color: g.color, baseline: g.baseline, runs: g.runs.length, reached: reached.length, ratios, best: meanSd(rows.map((x) => x.row.best)) };
  });
}

/** Every config field of the runs, and those whose value is not the same in all of them. */
export function configDiff(configs) {
  const fields = [...new Set(configs.flatMap((c) => Object.keys(c)))].sort();
  const differing = new Set(fields.filter((f) => new Set(configs.map((c) => JSON.stringify(c[f]))).size > 1));
  return { fields, differing };
}
