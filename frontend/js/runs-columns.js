// runs-columns.js — the runs table's columns, as MLflow's and W&B's run tables have them: the run's
// own fields, metric columns (the run's latest value of a key) and config columns. Each column
// says how GET /api/runs sorts by it (`order`, MLflow's order_by syntax), so every sort is the
// server's; the page keeps no second copy of what "sorted by test accuracy" means.

import { fmtDate, fmtDuration, fmtNum, fmtPct } from "./api.js";
import { durationSeconds, eta } from "./timing.js";

/** `key` in MLflow's syntax: backquoted unless it is a plain word. */
export function quoteKey(key) {
  return /^[A-Za-z_][\w]*$/.test(key) ? key : `\`${key}\``;
}

/** The filter that asks for runs carrying tag `t` (what clicking a tag types). */
export function tagFilter(t) {
  return t.includes("`") ? `tags = '${t.replaceAll("'", "''")}'` : `tags.${quoteKey(t)}`;
}

// names the table gives the metric keys people look for first
const METRIC_HEADS = {
  "test/accuracy": "test acc", "val/best_accuracy": "best val acc", "val/accuracy": "val acc",
  "train/loss": "loss", "time/elapsed": "duration", wall_time: "trained", samples_backpropagated: "samples back-prop.",
};
// the run fields a user may add or remove (name, status and the ticks are always shown)
const RUN_FIELDS = {
  dataset: { head: "dataset", order: "attributes.dataset", cell: (r) => r.dataset || "–" },
  model: { head: "model", order: "attributes.model", cell: (r) => r.model || "–" },
  selector: { head: "selector", order: "attributes.selector", cell: (r) => r.selector || "–" },
  pool: { head: "B / b", title: "candidates B / training batch b", order: "attributes.candidates", num: true,
    cell: (r, ctx) => (ctx.usesPool(r) ? `${r.candidates} / ${r.batch_size}` : `– / ${r.batch_size}`) },
  progress: { head: "progress", title: "optimizer steps taken / planned", order: "attributes.step", num: true,
    cell: (r) => {
      const step = r.progress?.step ?? 0;
      const total = r.progress?.total_steps;
      return total ? `${step.toLocaleString("en-US")} / ${total.toLocaleString("en-US")}` : String(step);
    } },
  created_at: { head: "created", order: "attributes.created_at", cell: (r) => fmtDate(r.created_at) },
  notes: { head: "notes", cls: "notes", cell: (r) => {
    const div = document.createElement("div");
    div.textContent = r.notes || "";
    div.title = r.notes || "";
    return div;
  } },
};
export const DEFAULT_COLUMNS = ["dataset", "selector", "metrics.test/accuracy", "metrics.val/best_accuracy",
  "metrics.train/loss", "metrics.time/elapsed", "metrics.samples_backpropagated", "progress", "created_at", "notes"];
// config fields the run fields already show
const CONFIG_SHOWN = new Set(["dataset", "model", "selector", "candidates", "batch_size"]);
// addresses written before metric columns: sort keys and bare config names
const LEGACY_SORT = { best: "metrics.val/best_accuracy", step: "progress", duration: "metrics.time/elapsed" };

/** A column id from an address: legacy names are read as what they meant. */
export function columnId(id) {
  if (LEGACY_SORT[id]) return LEGACY_SORT[id];
  return id in RUN_FIELDS || id.startsWith("metrics.") || id.startsWith("config.") ? id : `config.${id}`;
}

export const sortColumnId = (id) => LEGACY_SORT[id] || id;

/** A metric's value as its cell shows it. */
function metricText(key, v) {
  if (v === undefined || v === null) return "–";
  if (/accuracy/.test(key)) return fmtPct(v);
  if (key === "wall_time" || key.startsWith("time/") || /(^|\/)(time|seconds)$|_time$/.test(key)) return fmtDuration(v);
  return fmtNum(v);
}

/** A config value as a short cell text. */
function configText(v) {
  if (v === undefined) return "–";
  return typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
}

/**
 * The column `id` ("dataset", "metrics.<key>", "config.<key>"): head, title, `order` (for
 * GET /api/runs?order_by=; null: not sortable), `num`, `cls` and `cell(run, ctx)` (text or nodes).
 */
export function column(id) {
  if (id.startsWith("metrics.")) {
    const key = id.slice("metrics.".length);
    return {
      id, head: METRIC_HEADS[key] || key, title: `metrics.${key}: the run's latest value`, num: true,
      order: `metrics.${quoteKey(key)}`, cls: "metric",
      cell: key === "time/elapsed" ? durationCell : (r) => metricText(key, r.latest?.[key]),
    };
  }
  if (id.startsWith("config.")) {
    const key = id.slice("config.".length);
    return { id, head: key.replaceAll("_", " "), title: `config.${key}`, order: `config.${quoteKey(key)}`,
      cls: "config", cell: (r) => configText(r.config?.[key]) };
  }
  const f = RUN_FIELDS[id];
  return f ? { id, title: f.title || "", num: false, cls: "", ...f } : null;
}

/** The run's duration (timing.js), and for a running run the time it still needs. */
function durationCell(r) {
  const text = fmtDuration(durationSeconds(r));
  const left = eta(r);
  if (!left) return text;
  const span = document.createElement("span");
  span.className = "eta muted";
  span.dataset.seconds = String(Math.round(left.seconds));
  span.title = `estimated from the run's own pace, ${left.basis}`;
  span.textContent = `ETA ${fmtDuration(left.seconds)}`;
  return [text, document.createElement("br"), span];
}

/** Heads unique on screen: a config column named like another column says "config." first. */
export function heads(columns) {
  const seen = new Set(["#", "name", "status"]);
  return columns.map((c) => {
    const head = seen.has(c.head) && c.cls === "config" ? c.title : c.head;
    seen.add(head);
    return head;
  });
}

/** What "Columns…" offers: the run fields, every metric key and every config key the runs have. */
export function offered(runs) {
  const metrics = new Set(DEFAULT_COLUMNS.filter((c) => c.startsWith("metrics.")).map((c) => c.slice(8)));
  const config = new Set();
  for (const r of runs) {
    for (const k of Object.keys(r.latest || {})) metrics.add(k);
    for (const k of Object.keys(r.config || {})) if (!CONFIG_SHOWN.has(k)) config.add(k);
  }
  return {
    run: Object.keys(RUN_FIELDS),
    metrics: [...metrics].sort().map((k) => `metrics.${k}`),
    config: [...config].sort().map((k) => `config.${k}`),
  };
}
