// compare.js — several runs side by side (/compare?runs=1,2&baseline=1&x=step&key=val/accuracy&target=).
//
// Every choice lives in the query string (history.replaceState), so the address is a shareable
// link to this exact view. Curves come from GET /api/compare (server-downsampled), the
// distributions from each run's histograms, the median MMS from its `mms/<population>/p50` series.
// While any run is still active the page refreshes its data every few seconds.

import { api, vocabulary, errorText, fmtNum, fmtPct, fmtDuration, isActive, query } from "./api.js";
import { h, $, toast, statusBadge, fillSelect } from "./ui.js";
import { runColor, runLabel, AXIS_NAMES, X_AXES, layout, draw, binCentres, logFriendly, shares, nearestIndex, sideLegend } from "./plots.js";

const MAX_POINTS = 1500;
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
};
state.runs = [...new Set(state.runs)];
if (!state.runs.includes(state.baseline)) state.baseline = state.runs[0] ?? null;

const data = { cmp: null, loss: null, hist: {}, median: {}, allRuns: [] };
let refreshTimer = null;

// ---------------------------------------------------------------- URL state

function saveUrl() {
  const q = {
    runs: state.runs.join(","), baseline: state.baseline, x: state.x, key: state.key, target: state.target,
    pop: state.pop === "candidates" ? "" : state.pop, mode: state.mode === "overlay" ? "" : state.mode,
    align: state.align === "step" ? "" : state.align, at: state.at ?? "",
  };
  history.replaceState(null, "", `/compare${query(q)}`);
}

// ---------------------------------------------------------------- loading

async function loadHistograms() {
  const out = {};
  await Promise.all(state.runs.map(async (id) => {
    try { out[id] = await api.get(`/api/runs/${id}/histograms`, { population: state.pop, max_rows: 300 }); } catch (_) { out[id] = null; }
  }));
  data.hist = out;
}

async function loadMedians() {
  const key = `mms/${state.pop}/p50`;
  const out = {};
  await Promise.all(state.runs.map(async (id) => {
    try {
      const r = await api.get(`/api/runs/${id}/metrics`, { keys: key, x: state.x, max_points: MAX_POINTS });
      out[id] = r.series?.[key] || null;
    } catch (_) { out[id] = null; }
  }));
  data.median = out;
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
    $("#compare-status").textContent = "";
    toast(`Could not load the comparison: ${errorText(err)}`, "error");
    return;
  }
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

function curveTraces(cmp) {
  if (!cmp) return [];
  const byId = runsById();
  return state.runs.filter((id) => cmp.series[String(id)]).map((id) => {
    const s = cmp.series[String(id)];
    const run = byId.get(id) || { id };
    return {
      type: "scatter", mode: s.x.length < 60 ? "lines+markers" : "lines", x: s.x, y: s.y,
      name: runLabel(run) + (id === state.baseline ? " — baseline" : ""),
      line: { color: runColor(id), width: id === state.baseline ? 2.5 : 1.8 }, marker: { size: 4 },
      hovertemplate: `${runLabel(run).replace(/[<>]/g, "")}<br>%{x}: %{y:.4g}<extra></extra>`,
    };
  });
}

async function drawCurves() {
  const xt = X_AXES[state.x];
  const cmp = data.cmp;
  const accTitle = state.key === "val/accuracy" ? "Validation accuracy" : state.key;
  const targetLine = cmp && cmp.target !== null ? [{ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: cmp.target, y1: cmp.target, line: { color: "#555", dash: "dot", width: 1 } }] : [];
  const targetNote = cmp && cmp.target !== null ? [{ xref: "paper", x: 0, y: cmp.target, yref: "y", text: `target ${fmtPct(cmp.target)}`, showarrow: false, xanchor: "left", yanchor: "bottom", font: { size: 10, color: "#555" } }] : [];
  await Promise.all([
    draw("acc-plot", curveTraces(cmp), layout(accTitle, xt, state.key.includes("accuracy") ? "accuracy" : state.key, {
      yaxis: state.key.includes("accuracy") ? { tickformat: ".1%" } : {}, shapes: targetLine, annotations: targetNote,
      ...sideLegend(state.runs.length),
    })),
    draw("loss-plot", curveTraces(data.loss), layout(data.loss?.key === "train/loss" ? "Training-batch loss" : "Validation loss", xt, "cross-entropy (nats)", {
      yaxis: { type: "log", exponentformat: "power" }, ...sideLegend(state.runs.length),
    })),
  ]);
}

function ratioCell(v) {
  if (v === null || v === undefined) return h("td", { class: "num muted" }, "–");
  const faster = v < 1;
  return h("td", { class: "num", title: faster ? `${(1 / v).toFixed(2)}× faster than the baseline` : `${v.toFixed(2)}× the baseline` },
    `${v.toFixed(2)}×`, h("span", { class: "muted small" }, v > 0 && Math.abs(v - 1) > 0.005 ? ` ${faster ? `${(1 / v).toFixed(1)}× faster` : `${v.toFixed(1)}× slower`}` : ""));
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
      ratioCell(r?.step), ratioCell(r?.samples_forwarded), ratioCell(r?.wall_time));
  }));
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
    lay.grid = { rows: 1, columns: runsWith.length, pattern: "independent" };
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
    yaxis: { type: "log", exponentformat: "power" }, ...sideLegend(traces.length),
  }));
}

async function drawAll() {
  drawTable();
  drawPicker();
  await Promise.all([drawCurves(), drawDistributions(), drawMedians()]);
  // navigation start → every plot drawn (read by the browser tests)
  if (!window.__compareLoadMs) window.__compareLoadMs = performance.now();
  document.body.dataset.ready = "1";
}

// ---------------------------------------------------------------- picker and exports

function drawPicker() {
  const byId = runsById();
  $("#run-chips").replaceChildren(...state.runs.map((id) => {
    const run = byId.get(id) || data.allRuns.find((r) => r.id === id) || { id };
    return h("span", { class: "tag", style: `background:${runColor(id)}22; color:#111; padding:2px 6px; font-size:12px` },
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

function exportTable() {
  const cmp = data.cmp;
  if (!cmp) return;
  const head = ["run_id", "name", "selector", "baseline", "target", "reached", "step", "samples_backpropagated", "samples_forwarded", "wall_time", "best", "final_test", "ratio_step", "ratio_samples_backpropagated", "ratio_samples_forwarded", "ratio_wall_time"];
  const rows = cmp.table.map((r) => [r.run_id, r.name, r.selector, cmp.baseline, cmp.target, r.reached, r.step, r.samples_backpropagated, r.samples_forwarded, r.wall_time, r.best, r.final_test, r.ratios?.step, r.ratios?.samples_backpropagated, r.ratios?.samples_forwarded, r.ratios?.wall_time]);
  download(`time-to-target-${state.runs.join("-")}.csv`, [head, ...rows].map((r) => r.map(csvCell).join(",")).join("\n"));
}

function exportSeries() {
  const cmp = data.cmp;
  if (!cmp) return;
  const rows = [["run_id", "name", "selector", state.x, "step", state.key]];
  const byId = runsById();
  for (const [id, s] of Object.entries(cmp.series)) {
    const run = byId.get(Number(id)) || {};
    s.x.forEach((x, i) => rows.push([id, run.name, run.selector, x, s.step[i], s.y[i]]));
  }
  download(`curves-${state.key.replace("/", "_")}-${state.x}.csv`, rows.map((r) => r.map(csvCell).join(",")).join("\n"));
}

// ---------------------------------------------------------------- wiring

function init() {
  vocabulary().then((v) => {
    fillSelect($("#x-axis"), v.x_axes, { names: AXIS_NAMES, current: state.x });
    fillSelect($("#dist-pop"), v.populations, { current: state.pop });
  }).catch((err) => toast(`Could not load the axes: ${errorText(err)}`, "error"));
  if (![...$("#key").options].some((o) => o.value === state.key)) $("#key").append(h("option", { value: state.key }, state.key));
  $("#key").value = state.key;
  $("#target").value = state.target;
  $("#dist-mode").value = state.mode;
  $("#dist-align").value = state.align;

  $("#x-axis").addEventListener("change", (ev) => { state.x = ev.target.value; saveUrl(); loadAll({ hist: false }); });
  $("#key").addEventListener("change", (ev) => { state.key = ev.target.value; saveUrl(); loadAll({ hist: false, median: false }); });
  $("#baseline").addEventListener("change", (ev) => { state.baseline = Number(ev.target.value); saveUrl(); loadAll({ hist: false, median: false }); });
  $("#target").addEventListener("change", (ev) => { state.target = ev.target.value.trim(); saveUrl(); loadAll({ hist: false, median: false }); });
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
