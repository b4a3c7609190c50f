// compare.js — several runs side by side (/compare?runs=1,2&baseline=1&x=step&key=val/accuracy&target=).
//
// Every choice lives in the query string (history.replaceState), so the address is a shareable
// link to this exact view (compare-state.js). Everything drawn comes from one GET /api/compare (server-downsampled):
// the chosen metric, the loss and the median MMS (`mms/<population>/p50`) of every run, and their
// histograms.
// While any run is still active the page refreshes its data every few seconds. This file loads
// and wires the page; compare-plots.js and compare-tables.js draw it.

import { api, ApiError, vocabulary, errorText, isActive, query } from "./api.js";
import { h, $, toast, fillSelect } from "./ui.js";
import { runColor, runLabel, AXIS_NAMES, syncX } from "./plots.js";
import { configDiff, unlikeFields } from "./groups.js";
import { state, data, saveUrl, runsById, accuracyKey } from "./compare-state.js";
import { drawCurves, drawDistributions, drawMedians, sliderPositions } from "./compare-plots.js";
import { drawTable, drawConfig, exportTable, exportSeries } from "./compare-tables.js";

const MAX_POINTS = 1500; // per curve of the accuracy, loss and median plots
const HIST_ROWS = 150; // positions of the distribution slider
let refreshTimer = null;

// ---------------------------------------------------------------- loading

/** The loss shown under the chosen metric: the training loss for training metrics. */
const lossKey = () => (state.key.startsWith("train/") ? "train/loss" : "val/loss");
const medianKey = () => `mms/${state.pop}/p50`;

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

/** Everything the page draws, in one request: curves, loss, median MMS and histograms of every run. */
async function loadData() {
  const cmp = await api.get("/api/compare", {
    runs: state.runs.join(","), x: state.x, baseline: state.baseline, max_points: MAX_POINTS,
    key: state.key, target: state.target, also: [lossKey(), medianKey()].join(","),
    histograms: state.pop, hist_rows: HIST_ROWS,
  });
  const seriesOf = (key) => (key === cmp.key ? cmp.series : cmp.also[key] || {});
  data.cmp = cmp;
  data.loss = { key: lossKey(), series: seriesOf(lossKey()) };
  data.median = Object.fromEntries(state.runs.map((id) => [id, seriesOf(medianKey())[String(id)] || null]));
  data.hist = Object.fromEntries(state.runs.map((id) => [id, cmp.histograms[String(id)] || null]));
}

async function loadAll() {
  if (!state.runs.length) { showEmpty(true); return; }
  showEmpty(false);
  $("#compare-status").textContent = "loading…";
  try {
    await loadData();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404 && await dropMissingRuns()) { loadAll(); return; }
    $("#compare-status").textContent = "";
    toast(`Could not load the comparison: ${errorText(err)}`, "error");
    return;
  }
  data.config = Object.fromEntries(data.cmp.runs.map((r) => [r.id, r]));
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

async function drawAll() {
  drawGroupNotice();
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

/**
 * Say when the runs differ in dataset or model while grouped: split into separate groups (the
 * default), or pooled because the user asked, which mixes unlike curves.
 */
function drawGroupNotice() {
  const notice = $("#group-notice");
  const runs = state.runs.map((id) => data.config?.[id]).filter(Boolean);
  const unlike = state.group ? unlikeFields(runs).filter((f) => f !== state.group) : [];
  notice.classList.toggle("hidden", !unlike.length);
  notice.dataset.pooled = String(state.pool);
  if (!unlike.length) return;
  const differ = unlike.map((f) => `${f} (${[...new Set(runs.map((r) => r[f] ?? r.config?.[f]))].join(", ")})`).join(" and ");
  const what = unlike.join(" and ");
  notice.textContent = state.pool
    ? `These groups pool runs of different ${differ}: each mean mixes unlike curves. Ratios still pair each run only with a baseline run of its own ${what}.`
    : `The runs differ in ${differ}, so each group holds one ${what} only, and ratios pair like with like. Tick “pool datasets & models” to mix them.`;
}

// ---------------------------------------------------------------- the run picker

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

// ---------------------------------------------------------------- target, groups

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

  $("#x-axis").addEventListener("change", (ev) => { state.x = ev.target.value; saveUrl(); loadAll(); });
  $("#key").addEventListener("change", (ev) => { state.key = ev.target.value; state.target = ""; showTarget(); saveUrl(); loadAll(); });
  $("#baseline").addEventListener("change", (ev) => { state.baseline = Number(ev.target.value); saveUrl(); loadAll(); });
  $("#target").addEventListener("change", (ev) => {
    const target = parseTarget(ev.target.value);
    if (target === null) return;
    state.target = target;
    saveUrl();
    loadAll();
  });
  $("#group-by").value = state.group;
  $("#band").value = state.band;
  $("#pool").checked = state.pool;
  $("#pool").addEventListener("change", (ev) => { state.pool = ev.target.checked; saveUrl(); drawAll(); });
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
  $("#dist-pop").addEventListener("change", (ev) => { state.pop = ev.target.value; saveUrl(); loadAll(); });
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
