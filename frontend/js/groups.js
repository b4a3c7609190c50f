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

/** What a run learns and with what: runs unlike in these are never pooled or paired unless asked. */
export const LIKE_FIELDS = ["dataset", "model"];
const likeValue = (run, f) => String(run[f] ?? run.config?.[f] ?? "?");
/** The run's dataset and model as one key: two runs are alike when their keys are equal. */
export const likeKey = (run) => LIKE_FIELDS.map((f) => likeValue(run, f)).join("\u0000");

/** The like-fields (dataset, model) whose value is not the same in all `runs`. */
export function unlikeFields(runs) {
  return LIKE_FIELDS.filter((f) => new Set(runs.map((r) => likeValue(r, f))).size > 1);
}

/**
 * Runs grouped by `by`, in the order their first run appears; the group holding `baselineId` is
 * the baseline group. Runs of different datasets or models are different groups ("mms · dataset
 * mnist"), unless `pool` asks to mix them. Each group keeps `byKey`, its key without them.
 */
export function groupRuns(runs, by, baselineId, { pool = false } = {}) {
  const split = pool ? [] : unlikeFields(runs).filter((f) => f !== by);
  const groups = new Map();
  for (const run of runs) {
    const byKey = groupKey(run, by);
    const key = [byKey, ...split.map((f) => likeValue(run, f))].join("\u0000");
    if (!groups.has(key)) {
      const label = [by === "selector" || by === "tag" ? byKey : `${by} = ${byKey}`, ...split.map((f) => `${f} ${likeValue(run, f)}`)].join(" · ");
      groups.set(key, { key, byKey, label, runs: [], baseline: false });
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
 * A group's band and mean line: each run's series (smoothed first, if asked) interpolated onto the
 * union of their x values; at each x the mean, and the band, are over the runs that have a point
 * there (inside their own x range), so a run that stopped early or started late never cuts the
 * others' curve short. `n` per point says over how many (shown on hover).
 * `band`: "sd" (mean ± sd) or "minmax".
 */
export function bandTraces(group, series, { band = "sd", smooth = 0 } = {}) {
  const lines = group.runs.map((r) => series[String(r.id)]).filter((s) => s && s.x.length)
    .map((s) => ({ x: s.x, y: ema(s.y, smooth) }));
  if (!lines.length) return [];
  let grid = [...new Set(lines.flatMap((l) => l.x))].sort((a, b) => a - b);
  if (grid.length > MAX_GRID) {
    const stride = (grid.length - 1) / (MAX_GRID - 1);
    grid = Array.from({ length: MAX_GRID }, (_, i) => grid[Math.round(i * stride)]);
  }
  const mean = [];
  const lower = [];
  const upper = [];
  const counts = [];
  for (const x of grid) {
    const vals = lines.map((l) => interpolate(l.x, l.y, x)).filter((v) => v !== null && Number.isFinite(v));
    const m = meanSd(vals);
    counts.push(m.n);
    mean.push(m.mean);
    lower.push(!m.n ? null : band === "minmax" ? Math.min(...vals) : m.mean - m.sd);
    upper.push(!m.n ? null : band === "minmax" ? Math.max(...vals) : m.mean + m.sd);
  }
  const runs = group.runs.length;
  const name = `${group.label} (${runs} run${runs === 1 ? "" : "s"})${group.baseline ? " — baseline" : ""}`;
  const safe = name.replace(/[<>]/g, "");
  return [{
    type: "scatter", mode: "lines", x: [...grid, ...grid.slice().reverse()], y: [...upper, ...lower.slice().reverse()],
    fill: "toself", fillcolor: `${group.color}33`, line: { width: 0, color: group.color }, hoverinfo: "skip",
    showlegend: false, legendgroup: group.key, name: `${name} band`, meta: "band",
  }, {
    type: "scatter", mode: "lines", x: grid, y: mean, name, legendgroup: group.key, meta: "mean",
    customdata: counts, line: { color: group.color, width: group.baseline ? 2.5 : 2 },
    hovertemplate: `%{y:.4g} (mean of %{customdata} of ${runs})<extra>${safe}</extra>`,
  }];
}

const RATIO_AXES = ["step", "samples_forwarded", "wall_time"];

/**
 * The grouped time-to-target table: for each group, how many runs reached the target, and per
 * axis the mean ± sd over its runs of run / (the reference run with the same seed, dataset and
 * model; else the mean of the reference runs with the same dataset and model). The reference runs
 * are those grouped like the baseline (the same `byKey`). A run with no like reference gets no
 * ratio: `unpaired` counts them, so a digits run is never measured against an MNIST one.
 */
export function groupTable(groups, table) {
  const rowOf = new Map(table.map((r) => [r.run_id, r]));
  const base = groups.find((g) => g.baseline) || groups[0];
  const reached = (run) => rowOf.get(run.id)?.reached;
  const reference = groups.filter((g) => g.byKey === base.byKey).flatMap((g) => g.runs).filter(reached);
  const pairKey = (run) => `${run.config?.seed}\u0000${likeKey(run)}`;
  const bySeed = new Map(reference.map((r) => [pairKey(r), rowOf.get(r.id)]));
  const likeMean = (run, axis) => meanSd(reference.filter((r) => likeKey(r) === likeKey(run)).map((r) => rowOf.get(r.id)[axis])).mean;
  return groups.map((g) => {
    const rows = g.runs.map((r) => ({ run: r, row: rowOf.get(r.id) })).filter((x) => x.row);
    const hit = rows.filter((x) => x.row.reached);
    const unpaired = hit.filter(({ run }) => !reference.some((r) => likeKey(r) === likeKey(run))).length;
    const ratios = Object.fromEntries(RATIO_AXES.map((a) => [a, meanSd(hit.map(({ run, row }) => {
      const ref = bySeed.get(pairKey(run))?.[a] ?? likeMean(run, a);
      return ref ? row[a] / ref : null;
    }))]));
    return { label: g.label, color: g.color, baseline: g.baseline, runs: g.runs.length, reached: hit.length, unpaired, ratios, best: meanSd(rows.map((x) => x.row.best)) };
  });
}

/** Every config field of the runs, and those whose value is not the same in all of them. */
export function configDiff(configs) {
  const fields = [...new Set(configs.flatMap((c) => Object.keys(c)))].sort();
  const differing = new Set(fields.filter((f) => new Set(configs.map((c) => JSON.stringify(c[f]))).size > 1));
  return { fields, differing };
}
