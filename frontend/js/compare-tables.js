// compare-tables.js — the compare page's tables (time to target, per run and per group; the runs'
// configs side by side) and their CSV exports.

import { fmtNum, fmtPct, fmtDuration } from "./api.js";
import { h, $, statusBadge } from "./ui.js";
import { runColor, runLabel } from "./plots.js";
import { groupTable, configDiff } from "./groups.js";
import { state, data, runsById, currentGroups, accuracyKey } from "./compare-state.js";

/** run / baseline, with one word saying which way: "0.40× faster", "2.10× more". `why`: the
 * reason a ratio is missing, as the cell's title. */
function ratioCell(v, [less, more] = ["faster", "slower"], why = null) {
  if (v === null || v === undefined) return h("td", { class: "num muted", title: why }, "–");
  const word = Math.abs(v - 1) <= 0.005 ? "" : v < 1 ? less : more;
  return h("td", { class: "num", title: `run / baseline = ${v.toFixed(3)}` },
    `${v.toFixed(2)}×`, word ? h("span", { class: "muted small" }, ` ${word}`) : null);
}

export function drawTable() {
  const cmp = data.cmp;
  if (!cmp) return;
  const byId = runsById();
  const accLike = accuracyKey();
  $("#target-text").textContent = cmp.target === null
    ? "no target: the baseline has no value yet"
    : `first point where ${state.key} ≥ ${accLike ? fmtPct(cmp.target) : fmtNum(cmp.target)}${state.target === "" ? " (the baseline's best)" : ""}; ratios = run / baseline (lower is faster)`;
  $("#ttt-table tbody").replaceChildren(...cmp.table.map((row) => {
    const run = byId.get(row.run_id) || { id: row.run_id, name: row.name, selector: row.selector };
    const r = row.ratios;
    const unlike = row.unlike_baseline?.length ? `not comparable: its ${row.unlike_baseline.join(" and ")} differ${row.unlike_baseline.length === 1 ? "s" : ""} from the baseline's` : null;
    return h("tr", { "data-run-id": row.run_id, "data-reached": row.reached, "data-unlike": (row.unlike_baseline || []).join(","), class: row.run_id === state.baseline ? "baseline" : "" },
      h("td", {}, h("span", { class: "swatch", style: `background:${runColor(row.run_id)}` }),
        h("a", { href: `/runs/${row.run_id}` }, runLabel(run)), row.run_id === state.baseline ? h("span", { class: "tag" }, "baseline") : null,
        unlike ? h("span", { class: "tag unlike", title: unlike }, `other ${row.unlike_baseline.join(" & ")}`) : null),
      h("td", {}, run.status ? statusBadge(run.status) : "–"),
      h("td", { class: "reached" }, row.reached ? "yes" : "no"),
      h("td", { class: "num steps" }, row.reached ? fmtNum(row.step) : "–"),
      h("td", { class: "num" }, row.reached ? fmtNum(row.samples_backpropagated) : "–"),
      h("td", { class: "num" }, row.reached ? fmtNum(row.samples_forwarded) : "–"),
      h("td", { class: "num" }, row.reached ? fmtDuration(row.wall_time) : "–"),
      h("td", { class: "num" }, accLike ? fmtPct(row.best) : fmtNum(row.best)),
      h("td", { class: "num" }, fmtPct(row.final_test)),
      ratioCell(r?.step, undefined, unlike), ratioCell(r?.samples_forwarded, ["fewer", "more"], unlike), ratioCell(r?.wall_time, undefined, unlike));
  }));
  drawGroupTable();
}

/** The grouped time to target: mean ± sd over seeds of each run's ratio to the baseline group's
 * run with the same seed (its mean where no seed matches). */
function drawGroupTable() {
  const groups = currentGroups();
  $("#group-ttt").classList.toggle("hidden", !groups);
  if (!groups || !data.cmp) return;
  const rows = groupTable(groups, data.cmp.table);
  const pm = (m) => (m && m.n ? `${m.mean.toFixed(2)}× ± ${m.sd.toFixed(2)}` : "–");
  // a run with no baseline run of its own dataset and model has no ratio: say so where it is missing
  const unpairedNote = (g) => (g.unpaired ? `${g.unpaired} of ${g.reached} run(s) have no baseline run of their dataset and model: no ratio` : null);
  const accLike = accuracyKey();
  $("#group-ttt-text").textContent = "ratios: mean ± sd over seeds of run / the baseline's run with the same seed, dataset and model";
  $("#group-table tbody").replaceChildren(...rows.map((g) => h("tr", { "data-group": g.label, class: g.baseline ? "baseline" : "" },
    h("td", {}, h("span", { class: "swatch", style: `background:${g.color}` }), g.label, g.baseline ? h("span", { class: "tag" }, "baseline") : null),
    h("td", { class: "num" }, String(g.runs)),
    h("td", { class: "num" }, `${g.reached} / ${g.runs}`),
    h("td", { class: "num ratio-step", "data-unpaired": g.unpaired, title: unpairedNote(g) }, pm(g.ratios.step)),
    h("td", { class: "num" }, pm(g.ratios.samples_forwarded)),
    h("td", { class: "num" }, pm(g.ratios.wall_time)),
    h("td", { class: "num" }, g.best.n ? `${accLike ? fmtPct(g.best.mean) : fmtNum(g.best.mean)} ± ${accLike ? fmtPct(g.best.sd) : fmtNum(g.best.sd)}` : "–"))));
}

/** The runs' configs side by side: by default only the fields that differ (highlighted). */
export function drawConfig() {
  const runs = state.runs.map((id) => data.config?.[id]).filter(Boolean);
  const { fields, differing } = configDiff(runs.map((r) => r.config || {}));
  const all = $("#config-all").checked;
  const shown = all ? fields : fields.filter((f) => differing.has(f));
  $("#config-text").textContent = runs.length < 2 ? "" : differing.size
    ? `${differing.size} field${differing.size === 1 ? "" : "s"} differ${all ? " (highlighted)" : ""}`
    : "the runs' configs are identical";
  $("#config-table thead").replaceChildren(h("tr", {}, h("th", {}, "field"),
    ...runs.map((r) => h("th", {}, h("span", { class: "swatch", style: `background:${runColor(r.id)}` }), `#${r.id} ${r.name || ""}`))));
  const cell = (v) => (v === undefined ? "–" : typeof v === "object" && v !== null ? JSON.stringify(v) : String(v));
  $("#config-table tbody").replaceChildren(...shown.map((f) => h("tr", { "data-field": f },
    h("td", {}, f),
    ...runs.map((r) => h("td", { class: differing.has(f) ? "differs" : "" }, cell(r.config?.[f]))))));
}

// ---------------------------------------------------------------- exports

function download(name, text, type = "text/csv") {
  const a = h("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

const csvCell = (v) => (v === null || v === undefined ? "" : /[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));

/** Rows as CSV text, each line ended by a newline (the last one too). */
const csvText = (rows) => rows.map((r) => `${r.map(csvCell).join(",")}\n`).join("");

export function exportTable() {
  const cmp = data.cmp;
  if (!cmp) return;
  const head = ["run_id", "name", "selector", "baseline", "target", "reached", "step", "samples_backpropagated", "samples_forwarded", "wall_time", "best", "final_test", "ratio_step", "ratio_samples_backpropagated", "ratio_samples_forwarded", "ratio_wall_time"];
  const rows = cmp.table.map((r) => [r.run_id, r.name, r.selector, cmp.baseline, cmp.target, r.reached, r.step, r.samples_backpropagated, r.samples_forwarded, r.wall_time, r.best, r.final_test, r.ratios?.step, r.ratios?.samples_backpropagated, r.ratios?.samples_forwarded, r.ratios?.wall_time]);
  download(`time-to-target-${state.runs.join("-")}.csv`, csvText([head, ...rows]));
}

export function exportSeries() {
  const cmp = data.cmp;
  if (!cmp) return;
  // the x column, and the step beside it unless x is the step already
  const withStep = state.x !== "step";
  const rows = [["run_id", "name", "selector", state.x, ...(withStep ? ["step"] : []), state.key]];
  const byId = runsById();
  for (const [id, s] of Object.entries(cmp.series)) {
    const run = byId.get(Number(id)) || {};
    s.x.forEach((x, i) => rows.push([id, run.name, run.selector, x, ...(withStep ? [s.step[i]] : []), s.y[i]]));
  }
  download(`curves-${state.key.replace("/", "_")}-${state.x}.csv`, csvText(rows));
}
