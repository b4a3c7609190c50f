// compare.js — several runs side by side (/compare?runs=1,2&baseline=1&x=step&key=val/accuracy&target=).
//
// Every choice lives in the query string (history.replaceState), so the address is a shareable
// link to this exact view. Curves come from GET /api/compare (server-downsampled), the
// distributions from each run's histograms, the median MMS from its `mms/<population>/p50` series.
// While any run is still active the page refreshes its data every few seconds.

import { api, ApiError, vocabulary, errorText, fmtNum, fmtPct, fmtDuration, isActive, query } from "./api.js";
import { h, $, toast, statusBadge, fillSelect } from "./ui.js";
import { runColor, runLabel, AXIS_NAMES, X_AXES, layout, draw, binCentres, logFriendly, shares, nearestIndex, sideLegend, logAxis, smoothed, syncX } from "./plots.js";
import { groupRuns, bandTraces, groupTable, configDiff } from "./groups.js";
import { plotTheme } from "./theme.js";

const MAX_POINTS = 1500; // per curve of the accuracy and loss plots
// The secondary plots need less: a distribution slider of 150 positions, a median curve of 500
// points (each run's histograms and median are one request each, and 10 runs make 20 of them).
const HIST_ROWS = 150;
const MEDIAN_POINTS = 500;
const params = new URLSearchParams(location.search);
const state = {
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
};
state.runs = [...new Set(state.runs)];
if (!state.runs.includes(state.baseline)) state.baseline = state.runs[0] ?? null;

const data = { cmp: null, loss: null, hist: {}, median: {}, allRuns: [], config: null };
let refreshTimer = null;

// ---------------------------------------------------------------- URL state

function saveUrl() {
  const q = {
    runs: state.runs.join(","), baseline: state.baseline, x: state.x, key: state.key, target: state.target,
    pop: state.pop === "candidates" ? "" : state.pop, mode: state.mode === "overlay" ? "" : state.mode,
    align: state.align === "step" ? "" : state.align, at: state.at ?? "",
    group: state.group, band: state.band === "sd" ? "" : state.band, smooth: state.smooth || "",
  };
  history.replaceState(null, "", `/compare${query(q)}`);
}

// ---------------------------------------------------------------- loading

async function loadHistograms() {
  const out = {};
  await Promise.all(state.runs.map(async (id) => {
    try { out[id] = await api.get(`/api/runs/${id}/histograms`, { population: state.pop, max_rows: HIST_ROWS }); } catch (_) { out[id] = null; }
  }));
  data.hist = out;
}

async function loadMedians() {
  const key = `mms/${state.pop}/p50`;
  const out = {};
  await Promise.all(state.runs.map(async (id) => {
    try {
      const r = await api.get(`/api/runs/${id}/metrics`, { keys: key, x: state.x, max_points: MEDIAN_POINTS });
      out[id] = r.series?.[key] || null;
    } catch (_) { out[id] = null; }
  }));
  data.median = out;
}

/**
 * Drop the runs of the link that do not exist (deleted since the link was made) and say so, so
 * the others still show. True when some were dropped.
 */
async function dropMissingRuns() {
  const missing = [];
  await Promise.all(state.runs.map(async (id) => {
    try { await api.get(`/api/runs/${id}`); } catch (err) { if (err instanceof ApiError && err.status === 404) missing.push(id); }
  }));
  if (!missing.length) return false;
  state.runs = state.runs.filter((id) => !missing.includes(id));
  if (!state.runs.includes(state.baseline)) state.baseline = state.runs[0] ?? null;
  const notice = $("#compare-notice");
  notice.textContent = `${missing.length === 1 ? "Run" : "Runs"} ${missing.map((id) => `#${id}`).join(", ")} of this link ${missing.length === 1 ? "does" : "do"} not exist (deleted?) and ${missing.length === 1 ? "is" : "are"} left out.`;
  notice.classList.remove("hidden");
  saveUrl();
  return true;
}

async function loadCurves() {
  const common = { runs: state.runs.join(","), x: state.x, baseline: state.baseline, max_points: MAX_POINTS };
  const [cmp, loss] = await Promise.all([
    api.get("/api/compare", { ...common, key: state.key, target: state.target }),
    api.get("/api/compare", { ...common, key: state.key.startsWith("train/") ? "train/loss" : "val/loss" }).catch(() => null),
  ]);
  data.cmp = cmp;
  data.loss = loss;
}

async function loadAll({ curves = true, hist = true, median = true } = {}) {
  if (!state.runs.length) { showEmpty(true); return; }
  showEmpty(false);
  $("#compare-status").textContent = "loading…";
  try {
    await Promise.all([curves && loadCurves(), hist && loadHistograms(), median && loadMedians()].filter(Boolean));
  } catch (err) {
    if (err instanceof ApiError && err.status === 404 && await dropMissingRuns()) { loadAll(); return; }
    $("#compare-status").textContent = "";
    toast(`Could not load the comparison: ${errorText(err)}`, "error");
    return;
  }
  if (!data.config || curves) await loadConfigs();
  await drawAll();
  const active = (data.cmp?.runs || []).filter((r) => isActive(r.status)).length;
  $("#compare-status").textContent = active ? `${active} run(s) still training — refreshing live` : "";
  scheduleRefresh(active > 0);
}

function scheduleRefresh(on) {
  if (refreshTimer) clearTimeout(refreshTimer);
  refreshTimer = on ? setTimeout(() => loadAll(), 3000) : null;
}

function showEmpty(empty) {
  $("#compare-empty").classList.toggle("hidden", !empty);
  $("#compare-body").classList.toggle("hidden", empty);
}

// ---------------------------------------------------------------- drawing

const runsById = () => new Map((data.cmp?.runs || []).map((r) => [r.id, r]));

/** Each run's config (from the compare answer's runs, else the run itself). */
async function loadConfigs() {
  const byId = runsById();
  const out = {};
  await Promise.all(state.runs.map(async (id) => {
    const run = byId.get(id) || await api.get(`/api/runs/${id}`).catch(() => null);
    if (run) out[id] = run;
  }));
  data.config = out;
}

function curveTraces(cmp) {
  if (!cmp) return [];
  const byId = runsById();
  return state.runs.filter((id) => cmp.series[String(id)]).flatMap((id) => {
    const s = cmp.series[String(id)];
    const run = byId.get(id) || { id };
    return smoothed({
      type: "scatter", mode: s.x.length < 60 ? "lines+markers" : "lines", x: s.x, y: s.y,
      name: runLabel(run) + (id === state.baseline ? " — baseline" : ""),
      line: { color: runColor(id), width: id === state.baseline ? 2.5 : 1.8 }, marker: { size: 4 },
      hovertemplate: `%{y:.4g}<extra>${runLabel(run).replace(/[<>]/g, "")}</extra>`,
    }, state.smooth);
  });
}

/** The groups of the runs on the page (runs in state.runs order), or null without grouping. */
function currentGroups() {
  if (!state.group) return null;
  const runs = state.runs.map((id) => data.config?.[id]).filter(Boolean);
  return groupRuns(runs, state.group, state.baseline);
}

/** One band and mean line per group, when grouping is on; else one line per run. */
function seriesTraces(cmp) {
  const groups = currentGroups();
  if (!groups || !cmp) return curveTraces(cmp);
  return groups.flatMap((g) => bandTraces(g, cmp.series, { band: state.band, smooth: state.smooth, baseline: g.baseline }));
}

async function drawCurves() {
  const xt = X_AXES[state.x];
  const cmp = data.cmp;
  const accLike = state.key.includes("accuracy");
  const accTitle = state.key === "val/accuracy" ? "Validation accuracy" : state.key;
  const muted = plotTheme().muted;
  const targetLine = cmp && cmp.target !== null ? [{ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: cmp.target, y1: cmp.target, line: { color: muted, dash: "dot", width: 1 } }] : [];
  const targetNote = cmp && cmp.target !== null ? [{ xref: "paper", x: 0, y: cmp.target, yref: "y", text: `target ${accLike ? fmtPct(cmp.target) : fmtNum(cmp.target)}`, showarrow: false, xanchor: "left", yanchor: "bottom", font: { size: 10, color: muted } }] : [];
  // before the first evaluation: say so, on a sensible empty range (not −100% … 400%)
  const empty = (c) => !c || !Object.values(c.series).some((s) => s.x.length);
  const waiting = (c) => (empty(c) ? [{ text: "waiting for the runs' first values…", xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false, font: { color: muted, size: 13 } }] : []);
  const accEmpty = empty(cmp);
  const accTraces = seriesTraces(cmp);
  const lossTraces = seriesTraces(data.loss);
  const legend = sideLegend(Math.max(state.runs.length, currentGroups()?.length || 0));
  await Promise.all([
    draw("acc-plot", accTraces, layout(accTitle, xt, accLike ? "accuracy" : state.key, {
      yaxis: accLike ? { tickformat: ".1%", ...(accEmpty ? { range: [0, 1] } : {}) } : {},
      xaxis: accEmpty ? { range: [0, 1] } : {},
      shapes: targetLine, annotations: [...targetNote, ...waiting(cmp)], hovermode: "x unified", ...legend,
    }), { toggleLog: true }),
    draw("loss-plot", lossTraces, layout(data.loss?.key === "train/loss" ? "Training-batch loss" : "Validation loss", xt, "cross-entropy (nats)", {
      yaxis: empty(data.loss) ? { range: [0, 1] } : logAxis(lossTraces.flatMap((t) => t.y || [])),
      xaxis: empty(data.loss) ? { range: [0, 1] } : {},
      annotations: waiting(data.loss), hovermode: "x unified", ...legend,
    }), { toggleLog: true }),
  ]);
  document.getElementById("acc-plot").dataset.bands = String(accTraces.filter((t) => t.meta === "band").length);
}

/** run / baseline, with one word saying which way: "0.40× faster", "2.10× more". */
function ratioCell(v, [less, more] = ["faster", "slower"]) {
  if (v === null || v === undefined) return h("td", { class: "num muted" }, "–");
  const word = Math.abs(v - 1) <= 0.005 ? "" : v < 1 ? less : more;
  return h("td", { class: "num", title: `run / baseline = ${v.toFixed(3)}` },
    `${v.toFixed(2)}×`, word ? h("span", { class: "muted small" }, ` ${word}`) : null);
}

function drawTable() {
  const cmp = data.cmp;
  if (!cmp) return;
  const byId = runsById();
  const accLike = state.key.includes("accuracy");
  $("#target-text").textContent = cmp.target === null
    ? "no target: the baseline has no value yet"
    : `first point where ${state.key} ≥ ${accLike ? fmtPct(cmp.target) : fmtNum(cmp.target)}${state.target === "" ? " (the baseline's best)" : ""}; ratios = run / baseline (lower is faster)`;
  $("#ttt-table tbody").replaceChildren(...cmp.table.map((row) => {
    const run = byId.get(row.run_id) || { id: row.run_id, name: row.name, selector: row.selector };
    const r = row.ratios;
    return h("tr", { "data-run-id": row.run_id, "data-reached": row.reached, class: row.run_id === state.baseline ? "baseline" : "" },
      h("td", {}, h("span", { class: "swatch", style: `background:${runColor(row.run_id)}` }),
        h("a", { href: `/runs/${row.run_id}` }, runLabel(run)), row.run_id === state.baseline ? h("span", { class: "tag" }, "baseline") : null),
      h("td", {}, run.status ? statusBadge(run.status) : "–"),
      h("td", { class: "reached" }, row.reached ? "yes" : "no"),
      h("td", { class: "num steps" }, row.reached ? fmtNum(row.step) : "–"),
      h("td", { class: "num" }, row.reached ? fmtNum(row.samples_backpropagated) : "–"),
      h("td", { class: "num" }, row.reached ? fmtNum(row.samples_forwarded) : "–"),
      h("td", { class: "num" }, row.reached ? fmtDuration(row.wall_time) : "–"),
      h("td", { class: "num" }, accLike ? fmtPct(row.best) : fmtNum(row.best)),
      h("td", { class: "num" }, fmtPct(row.final_test)),
      ratioCell(r?.step), ratioCell(r?.samples_forwarded, ["fewer", "more"]), ratioCell(r?.wall_time));
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
  const accLike = state.key.includes("accuracy");
  $("#group-ttt-text").textContent = "ratios: mean ± sd over seeds of run / baseline-group run with the same seed";
  $("#group-table tbody").replaceChildren(...rows.map((g) => h("tr", { "data-group": g.label, class: g.baseline ? "baseline" : "" },
    h("td", {}, h("span", { class: "swatch", style: `background:${g.color}` }), g.label, g.baseline ? h("span", { class: "tag" }, "baseline") : null),
    h("td", { class: "num" }, String(g.runs)),
    h("td", { class: "num" }, `${g.reached} / ${g.runs}`),
    h("td", { class: "num ratio-step" }, pm(g.ratios.step)),
    h("td", { class: "num" }, pm(g.ratios.samples_forwarded)),
    h("td", { class: "num" }, pm(g.ratios.wall_time)),
    h("td", { class: "num" }, g.best.n ? `${accLike ? fmtPct(g.best.mean) : fmtNum(g.best.mean)} ± ${accLike ? fmtPct(g.best.sd) : fmtNum(g.best.sd)}` : "–"))));
}

/** The runs' configs side by side: by default only the fields that differ (highlighted). */
function drawConfig() {
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

/** The slider's positions: the union of the runs' logged steps (or epochs). */
function sliderPositions() {
  const key = state.align === "epoch" ? "epochs" : "steps";
  const all = new Set();
  for (const id of state.runs) for (const v of data.hist[id]?.[key] || []) all.add(v);
  return [...all].sort((a, b) => a - b);
}

function drawDistributions() {
  const pos = sliderPositions();
  const slider = $("#dist-slider");
  slider.max = String(Math.max(0, pos.length - 1));
  slider.disabled = pos.length < 2;
  if (!pos.length) {
    $("#dist-label").textContent = "no histograms yet";
    return draw("dist-plot", [], layout("MMS distributions", "minimal margin score", "share", {}));
  }
  const idx = state.at === null ? pos.length - 1 : nearestIndex(pos, state.at);
  slider.value = String(idx);
  const at = pos[idx];
  $("#dist-label").textContent = state.align === "epoch" ? `epoch ${fmtNum(at, 2)}` : `step ${at}`;
  const byId = runsById();
  const runsWith = state.runs.filter((id) => data.hist[id]?.steps?.length);
  const traces = [];
  const side = state.mode === "side" && runsWith.length > 1;
  let centres = [];
  runsWith.forEach((id, k) => {
    const H = data.hist[id];
    centres = binCentres(H.edges);
    const arr = state.align === "epoch" ? H.epochs : H.steps;
    const i = nearestIndex(arr, at);
    const run = byId.get(id) || { id };
    const axis = side ? (k === 0 ? "" : String(k + 1)) : "";
    traces.push({
      type: "scatter", mode: "lines", x: centres, y: shares(H.counts[i]),
      line: { shape: "hvh", color: runColor(id), width: 1.6 }, fill: "tozeroy",
      fillcolor: `${runColor(id)}33`,
      name: `${runLabel(run)} @ step ${H.steps[i]}`,
      xaxis: `x${axis}`, yaxis: `y${axis}`,
      hovertemplate: `MMS ≈ %{x:.3g}: %{y:.2%}<extra>${runLabel(run).replace(/[<>]/g, "")}</extra>`,
    });
  });
  const xType = logFriendly(centres) ? "log" : "linear";
  const title = `MMS distribution of ${state.pop} at ${state.align} ${state.align === "epoch" ? fmtNum(at, 2) : at}`;
  const lay = layout(title, "minimal margin score", "share of population", {
    xaxis: { type: xType, exponentformat: "power", dtick: xType === "log" ? 1 : undefined }, yaxis: { tickformat: ".0%", rangemode: "tozero" },
    ...sideLegend(traces.length),
  });
  if (side) {
    // a phone stacks the panels (side by side their tick labels would overlap)
    const stacked = window.innerWidth < 640;
    lay.grid = stacked ? { rows: runsWith.length, columns: 1, pattern: "independent" } : { rows: 1, columns: runsWith.length, pattern: "independent" };
    if (stacked) document.getElementById("dist-plot").style.height = `${Math.max(300, 220 * runsWith.length)}px`;
    runsWith.forEach((id, k) => {
      if (k === 0) return;
      lay[`xaxis${k + 1}`] = { type: xType, exponentformat: "power", dtick: xType === "log" ? 1 : undefined, title: { text: "minimal margin score" }, matches: "x" };
      lay[`yaxis${k + 1}`] = { tickformat: ".0%", matches: "y" };
    });
  }
  return draw("dist-plot", traces, lay);
}

function drawMedians() {
  const byId = runsById();
  const traces = [];
  for (const id of state.runs) {
    let s = data.median[id];
    if (!s || !s.x?.length) {
      // Fallback: the histogram quantiles (available on step / epoch / wall-clock axes).
      const H = data.hist[id];
      const xs = H && { step: H.steps, epoch: H.epochs, wall_time: H.wall_time }[state.x];
      if (!H || !xs || !H.quantiles?.p50) continue;
      s = { x: xs, y: H.quantiles.p50 };
    }
    const run = byId.get(id) || { id };
    traces.push({
      type: "scatter", mode: "lines", x: s.x, y: s.y.map((v) => (v > 0 ? v : null)), name: runLabel(run),
      line: { color: runColor(id), width: 1.8 },
    });
  }
  return draw("median-plot", traces, layout(`Median MMS of ${state.pop} over time`, X_AXES[state.x], "median minimal margin score", {
    yaxis: logAxis(traces.flatMap((t) => t.y)), hovermode: "x unified", ...sideLegend(traces.length),
  }), { toggleLog: true });
}

async function drawAll() {
  drawTable();
  drawPicker();
  drawConfig();
  fillGroupOptions();
  await Promise.all([drawCurves(), drawDistributions(), drawMedians()]);
  syncX(["acc-plot", "loss-plot", "median-plot"]);
  // navigation start → every plot drawn (read by the browser tests)
  if (!window.__compareLoadMs) window.__compareLoadMs = performance.now();
  document.body.dataset.ready = "1";
}

// ---------------------------------------------------------------- picker and exports

function drawPicker() {
  const byId = runsById();
  $("#run-chips").replaceChildren(...state.runs.map((id) => {
    const run = byId.get(id) || data.allRuns.find((r) => r.id === id) || { id };
    return h("span", { class: "tag", style: `background:${runColor(id)}22; padding:2px 6px; font-size:12px` },
      h("span", { class: "swatch", style: `background:${runColor(id)}` }), `#${id} ${runLabel(run)} `,
      h("button", { type: "button", class: "small secondary", "aria-label": `Remove run ${id}`, onclick: () => removeRun(id) }, "×"));
  }));
  const add = $("#add-run");
  add.replaceChildren(h("option", { value: "" }, "+ add run…"),
    ...data.allRuns.filter((r) => !state.runs.includes(r.id)).map((r) => h("option", { value: r.id }, `#${r.id} ${runLabel(r)} · ${r.status}`)));
  const base = $("#baseline");
  base.replaceChildren(...state.runs.map((id) => h("option", { value: id }, `#${id} ${runLabel(byId.get(id) || { id })}`)));
  base.value = String(state.baseline ?? "");
  $("#export-runs").replaceChildren(...state.runs.map((id) => h("a", {
    class: "button secondary small", style: "font-size:12px; padding:2px 8px", download: "",
    href: `/api/runs/${id}/export${query({ format: "csv" })}`, title: `All data of run ${id} as CSV`,
  }, `#${id} CSV`)));
}

function removeRun(id) {
  state.runs = state.runs.filter((r) => r !== id);
  if (state.baseline === id) state.baseline = state.runs[0] ?? null;
  saveUrl();
  loadAll();
}

function download(name, text, type = "text/csv") {
  const a = h("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

const csvCell = (v) => (v === null || v === undefined ? "" : /[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));

/** Rows as CSV text, each line ended by a newline (the last one too). */
const csvText = (rows) => rows.map((r) => `${r.map(csvCell).join(",")}\n`).join("");

function exportTable() {
  const cmp = data.cmp;
  if (!cmp) return;
  const head = ["run_id", "name", "selector", "baseline", "target", "reached", "step", "samples_backpropagated", "samples_forwarded", "wall_time", "best", "final_test", "ratio_step", "ratio_samples_backpropagated", "ratio_samples_forwarded", "ratio_wall_time"];
  const rows = cmp.table.map((r) => [r.run_id, r.name, r.selector, cmp.baseline, cmp.target, r.reached, r.step, r.samples_backpropagated, r.samples_forwarded, r.wall_time, r.best, r.final_test, r.ratios?.step, r.ratios?.samples_backpropagated, r.ratios?.samples_forwarded, r.ratios?.wall_time]);
  download(`time-to-target-${state.runs.join("-")}.csv`, csvText([head, ...rows]));
}

function exportSeries() {
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

// ---------------------------------------------------------------- target, groups

const accuracyKey = () => state.key.includes("accuracy");

/** The target box shows percent for accuracies (the URL keeps the fraction the API takes). */
function showTarget() {
  const pct = accuracyKey();
  $("#target-label").textContent = pct ? "target (%)" : "target";
  $("#target").max = pct ? "100" : "";
  $("#target").value = state.target === "" ? "" : pct ? String(+(Number(state.target) * 100).toFixed(6)) : state.target;
  $("#target-error").textContent = "";
  $("#target").classList.remove("invalid");
}

/** The typed target as the API's value ("" = the baseline's best), or null after showing why not. */
function parseTarget(text) {
  const raw = text.trim();
  const fail = (msg) => { $("#target-error").textContent = msg; $("#target").classList.add("invalid"); return null; };
  $("#target-error").textContent = "";
  $("#target").classList.remove("invalid");
  if (raw === "") return "";
  const v = Number(raw);
  if (!Number.isFinite(v)) return fail("enter a number");
  if (!accuracyKey()) return String(v);
  if (v <= 0 || v > 100) return fail("enter a percentage between 0 and 100, e.g. 97.5");
  return String(v / 100);
}

/** "group by" offers selector, tag and every config field that differs between the runs (not the seed). */
function fillGroupOptions() {
  const runs = state.runs.map((id) => data.config?.[id]).filter(Boolean);
  const { differing } = configDiff(runs.map((r) => r.config || {}));
  const fields = [...differing].filter((f) => f !== "seed" && f !== "selector").sort();
  const sel = $("#group-by");
  sel.querySelectorAll("option[data-field]").forEach((o) => o.remove());
  const have = new Set([...sel.options].map((o) => o.value));
  for (const f of [...fields, ...(state.group && !have.has(state.group) && !fields.includes(state.group) ? [state.group] : [])]) {
    sel.append(h("option", { value: f, "data-field": true }, `config: ${f}`));
  }
  sel.value = state.group;
}

// ---------------------------------------------------------------- wiring

function init() {
  vocabulary().then((v) => {
    fillSelect($("#x-axis"), v.x_axes, { names: AXIS_NAMES, current: state.x });
    fillSelect($("#dist-pop"), v.populations, { current: state.pop });
  }).catch((err) => toast(`Could not load the axes: ${errorText(err)}`, "error"));
  if (![...$("#key").options].some((o) => o.value === state.key)) $("#key").append(h("option", { value: state.key }, state.key));
  $("#key").value = state.key;
  showTarget();
  $("#dist-mode").value = state.mode;
  $("#dist-align").value = state.align;

  $("#x-axis").addEventListener("change", (ev) => { state.x = ev.target.value; saveUrl(); loadAll({ hist: false }); });
  $("#key").addEventListener("change", (ev) => { state.key = ev.target.value; state.target = ""; showTarget(); saveUrl(); loadAll({ hist: false, median: false }); });
  $("#baseline").addEventListener("change", (ev) => { state.baseline = Number(ev.target.value); saveUrl(); loadAll({ hist: false, median: false }); });
  $("#target").addEventListener("change", (ev) => {
    const target = parseTarget(ev.target.value);
    if (target === null) return;
    state.target = target;
    saveUrl();
    loadAll({ hist: false, median: false });
  });
  $("#group-by").value = state.group;
  $("#band").value = state.band;
  $("#smoothing").value = String(state.smooth);
  $("#smoothing-value").textContent = state.smooth.toFixed(2);
  $("#group-by").addEventListener("change", (ev) => { state.group = ev.target.value; saveUrl(); drawAll(); });
  $("#band").addEventListener("change", (ev) => { state.band = ev.target.value; saveUrl(); drawCurves(); });
  $("#smoothing").addEventListener("input", (ev) => {
    state.smooth = Number(ev.target.value);
    $("#smoothing-value").textContent = state.smooth.toFixed(2);
    saveUrl();
    drawCurves();
  });
  $("#config-all").addEventListener("change", drawConfig);
  window.addEventListener("themechange", () => { if (data.cmp) drawAll(); });
  // arrows move the distribution slider (unless a field has the keyboard)
  document.addEventListener("keydown", (ev) => {
    if (!["ArrowLeft", "ArrowRight"].includes(ev.key) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.target.closest("input, textarea, select, [contenteditable]")) return;
    const slider = $("#dist-slider");
    if (slider.disabled) return;
    ev.preventDefault();
    slider.value = String(Math.max(0, Math.min(Number(slider.max), Number(slider.value) + (ev.key === "ArrowLeft" ? -1 : 1))));
    slider.dispatchEvent(new Event("input"));
  });
  $("#dist-pop").addEventListener("change", (ev) => { state.pop = ev.target.value; saveUrl(); loadAll({ curves: false }); });
  $("#dist-mode").addEventListener("change", (ev) => { state.mode = ev.target.value; saveUrl(); drawDistributions(); });
  $("#dist-align").addEventListener("change", (ev) => { state.align = ev.target.value; state.at = null; saveUrl(); drawDistributions(); });
  $("#dist-slider").addEventListener("input", (ev) => {
    const pos = sliderPositions();
    const i = Number(ev.target.value);
    state.at = i >= pos.length - 1 ? null : pos[i];
    saveUrl();
    drawDistributions();
  });
  $("#add-run").addEventListener("change", (ev) => {
    const id = Number(ev.target.value);
    if (!id) return;
    state.runs.push(id);
    if (state.baseline === null) state.baseline = id;
    saveUrl();
    loadAll();
  });
  $("#copy-link").addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(location.href); toast("Link copied"); } catch (_) { toast(location.href); }
  });
  $("#export-table").addEventListener("click", exportTable);
  $("#export-series").addEventListener("click", exportSeries);

  saveUrl();
  api.get("/api/runs", { limit: 200, sort: "-created_at" }).then((r) => { data.allRuns = r.data; drawPicker(); }).catch(() => {});
  loadAll();
}

init();
