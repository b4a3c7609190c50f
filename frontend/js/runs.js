// runs.js — the runs list (/): every run with live status from WS /ws/runs, client-side filter
// and sort (kept in the URL), ticks to compare, cancel/delete with confirmation, tags and notes.

import { api, liveSocket, vocabulary, pooledSelectors, errorText, fmtPct, fmtDuration, fmtDate, runDuration, isActive, parseTime } from "./api.js";
import { h, $, $$, confirmDialog, toast, connectionBanner, statusBadge, fillSelect } from "./ui.js";
import { runColor } from "./plots.js";

const runs = new Map(); // id -> RunPublic
const ticked = new Set();
const url = new URL(location.href);
const state = {
  text: url.searchParams.get("q") || "",
  status: url.searchParams.get("status") || "",
  selector: url.searchParams.get("selector") || "",
  dataset: url.searchParams.get("dataset") || "",
  sort: url.searchParams.get("sort") || "-created_at",
};
let loaded = false;

// ---------------------------------------------------------------- derived values

const bestAcc = (r) => r.latest?.["val/best_accuracy"] ?? r.latest?.["val/accuracy"] ?? null;
const stepOf = (r) => r.progress?.step ?? 0;
let pooled = null; // names of the selectors that draw a candidate pool, once the server said
const usesPool = (r) => !pooled || pooled.has(r.selector);
const poolOf = (r) => (usesPool(r) ? r.candidates : r.batch_size);

const SORT_KEYS = {
  id: (r) => r.id,
  name: (r) => (r.name || "").toLowerCase(),
  status: (r) => r.status,
  dataset: (r) => r.dataset || "",
  model: (r) => r.model || "",
  selector: (r) => r.selector || "",
  best: (r) => bestAcc(r) ?? -1,
  step: stepOf,
  duration: (r) => runDuration(r) ?? -1,
  created_at: (r) => parseTime(r.created_at) ?? 0,
};

function matches(r) {
  if (state.status && r.status !== state.status) return false;
  if (state.selector && r.selector !== state.selector) return false;
  if (state.dataset && r.dataset !== state.dataset) return false;
  if (state.text) {
    const hay = [r.id, r.name, r.dataset, r.model, r.selector, r.status, r.notes, ...(r.tags || [])]
      .join(" ").toLowerCase();
    return state.text.toLowerCase().split(/\s+/).filter(Boolean).every((w) => hay.includes(w));
  }
  return true;
}

function visibleRuns() {
  const desc = state.sort.startsWith("-");
  const key = SORT_KEYS[state.sort.replace(/^-/, "")] || SORT_KEYS.created_at;
  const list = [...runs.values()].filter(matches);
  list.sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    const c = ka < kb ? -1 : ka > kb ? 1 : a.id - b.id;
    return desc ? -c : c;
  });
  return list;
}

// ---------------------------------------------------------------- rendering

function actionsCell(r) {
  const cancel = h("button", {
    type: "button", class: "small secondary", title: "Stop this run (a checkpoint is kept)",
    "data-action": "cancel", disabled: !isActive(r.status),
    onclick: () => cancelRun(r.id),
  }, "Cancel");
  const edit = h("button", { type: "button", class: "small secondary", "data-action": "edit", onclick: () => editRun(r.id) }, "Edit");
  const del = h("button", {
    type: "button", class: "small danger", "data-action": "delete", disabled: r.status === "running",
    title: r.status === "running" ? "Cancel the run before deleting it" : "Delete this run and its data",
    onclick: () => deleteRun(r.id),
  }, "Delete");
  return h("td", {}, h("div", { class: "row-actions" }, cancel, edit, del));
}

function rowFor(r) {
  const total = r.progress?.total_steps;
  const best = bestAcc(r);
  return h("tr", { "data-run-id": r.id, "data-status": r.status },
    h("td", {}, h("input", {
      type: "checkbox", class: "tick", "aria-label": `Tick run ${r.id}`, checked: ticked.has(r.id),
      onchange: (ev) => { if (ev.target.checked) ticked.add(r.id); else ticked.delete(r.id); updateCompareButton(); },
    })),
    h("td", { class: "num" }, h("span", { class: "swatch", style: `background:${runColor(r.id)}` }), r.id),
    h("td", {}, h("a", { href: `/runs/${r.id}` }, r.name || `run ${r.id}`),
      ...(r.tags || []).map((t) => h("span", { class: "tag" }, t))),
    h("td", { class: "status-cell" }, statusBadge(r.status),
      r.executor === "remote" && h("span", { class: "tag host", title: `trains on ${r.host} (pid ${r.pid}), reporting over HTTP` }, r.host)),
    h("td", {}, r.dataset || "–"),
    h("td", {}, r.model || "–"),
    h("td", {}, r.selector || "–"),
    h("td", { class: "num" }, usesPool(r) ? `${r.candidates} / ${r.batch_size}` : `– / ${r.batch_size}`),
    h("td", { class: "num best" }, best === null ? "–" : fmtPct(best)),
    h("td", { class: "num steps" }, total ? `${stepOf(r).toLocaleString("en-US")} / ${total.toLocaleString("en-US")}` : String(stepOf(r))),
    h("td", { class: "num duration" }, fmtDuration(runDuration(r))),
    h("td", {}, fmtDate(r.created_at)),
    h("td", { class: "notes", title: r.notes || "" }, (r.notes || "").slice(0, 80)),
    actionsCell(r));
}

let pending = false;
function render() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    const list = visibleRuns();
    $("#runs-table tbody").replaceChildren(...list.map(rowFor));
    const empty = loaded && runs.size === 0;
    $("#runs-empty").classList.toggle("hidden", !empty);
    $("#runs-card").classList.toggle("hidden", empty);
    $("#runs-none-match").classList.toggle("hidden", empty || list.length > 0 || !loaded);
    $("#run-count").textContent = loaded ? `${list.length} of ${runs.size}` : "loading…";
    for (const th of $$("th[data-sort]")) {
      const k = th.dataset.sort;
      th.classList.toggle("sorted-asc", state.sort === k);
      th.classList.toggle("sorted-desc", state.sort === `-${k}`);
    }
    refreshFilterOptions();
    updateCompareButton();
    document.body.dataset.ready = "1";
  });
}

function refreshFilterOptions() {
  for (const [id, field] of [["#filter-selector", "selector"], ["#filter-dataset", "dataset"]]) {
    const sel = $(id);
    const have = new Set($$("option", sel).map((o) => o.value));
    for (const v of new Set([...runs.values()].map((r) => r[field]).filter(Boolean))) {
      if (!have.has(v)) sel.append(h("option", { value: v }, v));
    }
    sel.value = state[field];
  }
}

function updateCompareButton() {
  for (const id of [...ticked]) if (!runs.has(id)) ticked.delete(id);
  const btn = $("#compare-btn");
  btn.disabled = ticked.size < 1;
  btn.textContent = ticked.size ? `Compare selected (${ticked.size})` : "Compare selected";
}

function saveStateToUrl() {
  const u = new URL(location.href);
  for (const [k, v] of [["q", state.text], ["status", state.status], ["selector", state.selector],
    ["dataset", state.dataset], ["sort", state.sort === "-created_at" ? "" : state.sort]]) {
    if (v) u.searchParams.set(k, v); else u.searchParams.delete(k);
  }
  history.replaceState(null, "", u);
}

// ---------------------------------------------------------------- actions

async function cancelRun(id) {
  const r = runs.get(id);
  if (!(await confirmDialog(`Cancel run ${id} “${r?.name || ""}”? It stops after the current step and keeps a checkpoint.`, { confirmText: "Cancel run" }))) return;
  try {
    upsert(await api.post(`/api/runs/${id}/cancel`));
    toast(`Run ${id} is being cancelled`);
  } catch (err) { toast(`Could not cancel run ${id}: ${errorText(err)}`, "error"); }
}

async function deleteRun(id) {
  const r = runs.get(id);
  if (!(await confirmDialog(`Delete run ${id} “${r?.name || ""}” and all its metrics? This cannot be undone.`, { confirmText: "Delete" }))) return;
  try {
    await api.del(`/api/runs/${id}`);
    runs.delete(id);
    ticked.delete(id);
    render();
    toast(`Run ${id} deleted`);
  } catch (err) { toast(`Could not delete run ${id}: ${errorText(err)}`, "error"); }
}

let editing = null;
function editRun(id) {
  const r = runs.get(id);
  if (!r) return;
  editing = id;
  $("#edit-id").textContent = `#${id}`;
  $("#edit-name").value = r.name || "";
  $("#edit-tags").value = (r.tags || []).join(", ");
  $("#edit-notes").value = r.notes || "";
  $("#edit-dialog").showModal();
}

async function saveEdit(ev) {
  ev.preventDefault();
  const id = editing;
  const body = {
    name: $("#edit-name").value.trim() || null,
    tags: $("#edit-tags").value.split(",").map((t) => t.trim()).filter(Boolean),
    notes: $("#edit-notes").value,
  };
  try {
    upsert(await api.patch(`/api/runs/${id}`, body));
    $("#edit-dialog").close();
    toast(`Run ${id} saved`);
  } catch (err) { toast(`Could not save run ${id}: ${errorText(err)}`, "error"); }
}

function upsert(run) {
  if (!run || run.id === undefined) return;
  runs.set(run.id, run);
  render();
}

// ---------------------------------------------------------------- wiring

async function loadAll() {
  const all = [];
  for (let offset = 0; ; offset += 200) {
    const page = await api.get("/api/runs", { limit: 200, offset, sort: "-created_at" });
    all.push(...page.data);
    if (page.data.length < 200 || all.length >= page.count) break;
  }
  runs.clear();
  for (const r of all) runs.set(r.id, r);
  loaded = true;
  render();
}

function init() {
  $("#filter-text").value = state.text;
  vocabulary().then((v) => fillSelect($("#filter-status"), v.statuses, { current: state.status }))
    .catch((err) => toast(`Could not load the statuses: ${errorText(err)}`, "error"));
  pooledSelectors().then((names) => { pooled = names; render(); })
    .catch((err) => toast(`Could not load the selectors: ${errorText(err)}`, "error"));
  $("#filter-text").addEventListener("input", (ev) => { state.text = ev.target.value; saveStateToUrl(); render(); });
  for (const f of ["status", "selector", "dataset"]) {
    $(`#filter-${f}`).addEventListener("change", (ev) => { state[f] = ev.target.value; saveStateToUrl(); render(); });
  }
  for (const th of $$("th[data-sort]")) {
    th.addEventListener("click", () => {
      const k = th.dataset.sort;
      state.sort = state.sort === `-${k}` ? k : `-${k}`;
      saveStateToUrl();
      render();
    });
  }
  $("#tick-all").addEventListener("change", (ev) => {
    for (const r of visibleRuns()) { if (ev.target.checked) ticked.add(r.id); else ticked.delete(r.id); }
    render();
  });
  $("#compare-btn").addEventListener("click", () => {
    const ids = [...ticked].sort((a, b) => a - b);
    location.href = `/compare?runs=${ids.join(",")}&baseline=${ids[0]}`;
  });
  $("#edit-form").addEventListener("submit", saveEdit);
  $("#edit-cancel").addEventListener("click", () => $("#edit-dialog").close());

  loadAll().catch((err) => toast(`Could not load runs: ${errorText(err)}`, "error"));
  liveSocket("/ws/runs", {
    onStatus: (ok) => {
      connectionBanner(ok);
      if (ok && loaded) loadAll().catch(() => {}); // catch up on deletions made while away
    },
    onMessage: (msg) => {
      if (msg.type === "snapshot") { for (const r of msg.runs) runs.set(r.id, r); loaded = true; render(); }
      else upsert(msg.run); // {"type": "run"}: a status or progress change
    },
  });
  // Durations of running runs tick every second without a full re-render.
  setInterval(() => {
    for (const tr of $$("#runs-table tbody tr")) {
      const r = runs.get(Number(tr.dataset.runId));
      if (r && isActive(r.status)) tr.querySelector(".duration").textContent = fmtDuration(runDuration(r));
    }
  }, 1000);
}

init();
