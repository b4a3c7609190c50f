// compare-state.js — what the compare page shows, read from (and written back to) its address,
// and the data it draws: shared by the page's loading, plots and tables.

import { query } from "./api.js";
import { groupRuns } from "./groups.js";

const params = new URLSearchParams(location.search);
export const state = {
  runs: (params.get("runs") || "").split(",").map((s) => Number(s.trim())).filter((n) => Number.isInteger(n) && n > 0),
  baseline: params.get("baseline") ? Number(params.get("baseline")) : null,
  x: params.get("x") || "step",
  key: params.get("key") || "val/accuracy",
  target: params.get("target") || "",
  pop: params.get("pop") || "candidates",
  mode: params.get("mode") || "overlay",
  align: params.get("align") || "step",
  at: params.get("at") !== null ? Number(params.get("at")) : null, // chosen step/epoch, null = latest
  group: params.get("group") || "", // "", "selector", "tag" or a config field: runs drawn as bands
  band: params.get("band") || "sd", // "sd" (mean ± sd) or "minmax"
  smooth: Math.min(0.99, Math.max(0, Number(params.get("smooth")) || 0)),
  pool: params.get("pool") === "1", // groups may mix datasets and models (never by default)
};
state.runs = [...new Set(state.runs)];
if (!state.runs.includes(state.baseline)) state.baseline = state.runs[0] ?? null;

export const data = { cmp: null, loss: null, hist: {}, median: {}, allRuns: [], config: null };

/** Write the state back into the address (a shareable link to this exact view). */
export function saveUrl() {
  const q = {
    runs: state.runs.join(","), baseline: state.baseline, x: state.x, key: state.key, target: state.target,
    pop: state.pop === "candidates" ? "" : state.pop, mode: state.mode === "overlay" ? "" : state.mode,
    align: state.align === "step" ? "" : state.align, at: state.at ?? "",
    group: state.group, band: state.band === "sd" ? "" : state.band, smooth: state.smooth || "",
    pool: state.pool ? "1" : "",
  };
  history.replaceState(null, "", `/compare${query(q)}`);
}

export const runsById = () => new Map((data.cmp?.runs || []).map((r) => [r.id, r]));

/** The groups of the runs on the page (runs in state.runs order), or null without grouping. */
export function currentGroups() {
  if (!state.group) return null;
  const runs = state.runs.map((id) => data.config?.[id]).filter(Boolean);
  return groupRuns(runs, state.group, state.baseline, { pool: state.pool });
}

export const accuracyKey = () => state.key.includes("accuracy");
