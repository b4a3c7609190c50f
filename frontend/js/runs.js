// runs.js — the runs list (/): a table like MLflow's and W&B's (metric and config columns, all
// sortable), filtered by MLflow's search syntax or by plain words, live through WS /ws/runs.
//
// The server filters and sorts (GET /api/runs?filter=...&order_by=...): the page draws the runs in
// the order it is given and asks again when a status changes. Plain words ("mnist baseline",
// "lr:0.1") are matched here against what a row shows and its config. The view — filter, sort,
// columns, status/selector/dataset — lives in the address, so a link is a saved view.

import { api, liveSocket, vocabulary, pooledSelectors, errorText, isActive, ApiError, fmtDuration } from "./api.js";
import { h, $, $$, confirmDialog, toast, connectionBanner, statusBadge, fillSelect } from "./ui.js";
import { runColor } from "./plots.js";
import { DEFAULT_COLUMNS, column, columnId, heads, offered, sortColumnId, tagFilter } from "./runs-columns.js";
import { eta } from "./timing.js";

const runs = new Map(); // id -> RunPublic
let order = []; // run ids in the server's order
let queue = null; // GET /api/runs `queue`: {running, limit}
const ticked = new Set();
const url = new URL(location.href);
const state = {
  text: url.searchParams.get("q") || "",
  status: url.searchParams.get("status") || "",
  selector: url.searchParams.get("selector") || "",
  dataset: url.searchParams.get("dataset") || "",
  sort: sortColumnId((url.searchParams.get("sort") || "-created_at").replace(/^-/, "")),
  desc: (url.searchParams.get("sort") || "-created_at").startsWith("-"),
  columns: url.searchParams.has("cols")
    ? url.searchParams.get("cols").split(",").filter(Boolean).map(columnId) : [...DEFAULT_COLUMNS],
};
let loaded = false;
let pooled = null; // names of the selectors that draw a candidate pool, once the server said
const ctx = { usesPool: (r) => !pooled || pooled.has(r.selector) };
const FIXED_ORDER = { id: "attributes.id", name: "attributes.name", status: "attributes.status" };

// ---------------------------------------------------------------- filter

/** Whether the text is a query in MLflow's syntax (sent to the server) rather than plain words. */
function isQuery(text) {
  return /[=<>!]|\b(metrics?|config|params?|tags?|attributes?|attr|run)\.|\b(like|ilike|in)\b|^\s*tags\b/i.test(text);
}

/** Plain words: each must appear in the row's text or its config (`key:value` names one field). */
function matchesWords(r) {
  const words = state.text.toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length || isQuery(state.text)) return true;
  const config = Object.entries(r.config || {});
  const hay = [r.id, r.name, r.dataset, r.model, r.selector, r.status, r.notes, ...(r.tags || []),
    ...config.map(([k, v]) => `${k} ${JSON.stringify(v)}`)].join(" ").toLowerCase();
  return words.every((w) => {
    const pair = w.match(/^([^:]+):(.*)$/);
    if (pair) return config.some(([k, v]) => k.toLowerCase() === pair[1] && String(v).toLowerCase() === pair[2]);
    return hay.includes(w);
  });
}

function orderBy() {
  const col = FIXED_ORDER[state.sort] || column(state.sort)?.order || "attributes.created_at";
  return `${col} ${state.desc ? "DESC" : "ASC"}`;
}

// ---------------------------------------------------------------- rendering

/** 1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st. */
function ordinal(n) {
  const teen = n % 100 >= 11 && n % 100 <= 13;
  return `${n}${teen ? "th" : ({ 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th")}`;
}

/** "2nd in queue: 1 run running, limit 1" — the run's place (from the store) and the launcher's state. */
function queueText(r) {
  if (r.status !== "queued" || !r.queue_position) return "";
  const place = `${ordinal(r.queue_position)} in queue`;
  if (!queue) return place;
  if (queue.limit === null) return `${place}: the cluster starts it`;
  return `${place}: ${queue.running} run${queue.running === 1 ? "" : "s"} running, limit ${queue.limit}`;
}

function actionsCell(r) {
  const cancel = h("button", {
    type: "button", class: "small secondary", title: "Stop this run (a checkpoint is kept)",
    "data-action": "cancel", disabled: !isActive(r.status),
    onclick: () => cancelRun(r.id),
  }, "Cancel");
  const edit = h("button", { type: "button", class: "small secondary", "data-action": "edit", onclick: () => editRun(r.id) }, "Edit");
  const again = h("a", { class: "button small secondary", href: `/launch?from=${r.id}`, "data-action": "again", title: "Run again: the launch form with every setting of this run" }, "Again");
  const del = h("button", {
    type: "button", class: "small danger", "data-action": "delete", disabled: r.status === "running",
    title: r.status === "running" ? "Cancel the run before deleting it" : "Delete this run and its data",
    onclick: () => deleteRun(r.id),
  }, "Delete");
  return h("td", { class: "actions" }, h("div", { class: "row-actions" }, cancel, edit, again, del));
}

function tagLink(t) {
  const q = tagFilter(t);
  return h("a", {
    class: "tag", href: `?q=${encodeURIComponent(q)}`, title: `Show the runs tagged ${t}`,
    onclick: (ev) => { ev.preventDefault(); setText(q); },
  }, t);
}

function rowFor(r, columns) {
  const reason = queueText(r);
  return h("tr", { "data-run-id": r.id, "data-status": r.status },
    h("td", {}, h("input", {
      type: "checkbox", class: "tick", "aria-label": `Tick run ${r.id}`, checked: ticked.has(r.id),
      onchange: (ev) => { if (ev.target.checked) ticked.add(r.id); else ticked.delete(r.id); updateCompareButton(); },
    })),
    h("td", { class: "num" }, h("span", { class: "swatch", style: `background:${runColor(r.id)}` }), r.id),
    h("td", { class: "name" }, h("a", { href: `/runs/${r.id}` }, r.name || `run ${r.id}`),
      (r.tags || []).length ? h("div", { class: "tags" }, ...r.tags.map(tagLink)) : null),
    h("td", { class: "status-cell" }, statusBadge(r.status),
      r.executor === "remote" && h("span", { class: "tag host", title: `trains on ${r.host} (pid ${r.pid}), reporting over HTTP` }, r.host),
      reason && h("div", { class: "queue-note", "data-testid": "queue-reason" }, reason)),
    ...columns.map((c) => h("td", { class: [c.num ? "num" : "", c.cls].join(" ").trim(), "data-col": c.id }, c.cell(r, ctx))),
    actionsCell(r));
}

function drawHead(columns) {
  const th = (id, text, { num = false, title = "", sortable = true, cls = "" } = {}) => h("th", {
    class: [sortable ? "sortable" : "", num ? "num" : "", cls, state.sort === id ? (state.desc ? "sorted-desc" : "sorted-asc") : ""].join(" ").trim(),
    "data-sort": sortable ? id : null, "data-col": id, title: title || null,
  }, text);
  const names = heads(columns);
  $("#runs-table thead").replaceChildren(h("tr", {},
    h("th", {}, h("input", { type: "checkbox", id: "tick-all", "aria-label": "Tick all shown runs",
      onchange: (ev) => {
        for (const r of visibleRuns()) { if (ev.target.checked) ticked.add(r.id); else ticked.delete(r.id); }
        render();
      } })),
    th("id", "#", { num: true }), th("name", "name"), th("status", "status"),
    ...columns.map((c, i) => th(c.id, names[i], { num: c.num, title: c.title, sortable: Boolean(c.order), cls: c.cls })),
    h("th", { class: "actions-head" })));
}

function visibleRuns() {
  return order.map((id) => runs.get(id)).filter((r) => r && matchesWords(r));
}

let pending = false;
function render() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    const columns = state.columns.map(column).filter(Boolean);
    const list = visibleRuns();
    drawHead(columns);
    $("#runs-table tbody").replaceChildren(...list.map((r) => rowFor(r, columns)));
    const empty = loaded && runs.size === 0 && !state.text && !state.status && !state.selector && !state.dataset;
    $("#runs-empty").classList.toggle("hidden", !empty);
    $("#runs-card").classList.toggle("hidden", empty);
    $("#runs-none-match").classList.toggle("hidden", empty || list.length > 0 || !loaded);
    $("#run-count").textContent = loaded ? `${list.length} run${list.length === 1 ? "" : "s"}` : "loading…";
    refreshFilterOptions();
    updateCompareButton();
    if (loaded) document.body.dataset.ready = "1"; // drawn from the server's answer
  });
}

function refreshFilterOptions() {
  for (const [id, field] of [["#filter-selector", "selector"], ["#filter-dataset", "dataset"]]) {
    const sel = $(id);
    const have = new Set($$("option", sel).map((o) => o.value));
    for (const v of new Set([...runs.values()].map((r) => r[field]).concat(state[field]).filter(Boolean))) {
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
  const cols = state.columns.join(",") === DEFAULT_COLUMNS.join(",") ? "" : state.columns.join(",");
  const sort = `${state.desc ? "-" : ""}${state.sort}`;
  for (const [k, v] of [["q", state.text], ["status", state.status], ["selector", state.selector],
    ["dataset", state.dataset], ["sort", sort === "-created_at" ? "" : sort], ["cols", cols]]) {
    if (v) u.searchParams.set(k, v); else u.searchParams.delete(k);
  }
  if (!state.columns.length) u.searchParams.set("cols", "");
  history.replaceState(null, "", u);
}

// ---------------------------------------------------------------- the columns menu

function drawColumnMenu() {
  const { run, metrics, config } = offered(runs.values());
  const box = (id) => {
    const c = column(id);
    return h("label", { title: c.title || null },
      h("input", { type: "checkbox", value: id, checked: state.columns.includes(id), onchange: (ev) => toggleColumn(id, ev.target.checked) }),
      ` ${c.cls === "config" ? id.slice(7) : c.head}`);
  };
  $("#columns-menu").replaceChildren(
    h("div", { class: "menu-group" }, h("b", {}, "Run"), ...run.map(box)),
    h("div", { class: "menu-group" }, h("b", {}, "Metrics (latest value)"), ...metrics.map(box)),
    h("div", { class: "menu-group" }, h("b", {}, "Config"), ...config.map(box)));
}

function toggleColumn(id, on) {
  state.columns = on ? [...state.columns.filter((c) => c !== id), id] : state.columns.filter((c) => c !== id);
  saveStateToUrl();
  render();
  // a column just added is brought into view (on a narrow screen the table scrolls sideways)
  if (on) requestAnimationFrame(() => $(`#runs-table th[data-col="${CSS.escape(id)}"]`)?.scrollIntoView({ block: "nearest", inline: "nearest" }));
}

// ---------------------------------------------------------------- loading

let loadSeq = 0;
let loadedFilter = null; // the query the shown runs were asked with
const statusSeen = new Map(); // run id -> the last status heard of, for runs shown or not
/** Every run the filter selects, in the server's order (a newer request wins over an older one). */
async function load() {
  const mine = ++loadSeq;
  const filter = isQuery(state.text) ? state.text : null;
  const params = {
    filter, order_by: orderBy(),
    status: state.status, selector: state.selector, dataset: state.dataset,
  };
  const all = [];
  let page;
  try {
    for (let offset = 0; ; offset += 500) {
      page = await api.get("/api/runs", { ...params, limit: 500, offset });
      all.push(...page.data);
      if (page.data.length < 500 || all.length >= page.count) break;
    }
  } catch (err) {
    if (mine !== loadSeq) return;
    if (err instanceof ApiError && err.status === 422) { showFilterError(errorText(err), err.detail); return; }
    throw err;
  }
  if (mine !== loadSeq) return;
  showFilterError("");
  loadedFilter = filter;
  runs.clear();
  for (const r of all) { runs.set(r.id, r); statusSeen.set(r.id, r.status); }
  order = all.map((r) => r.id);
  queue = page.queue;
  loaded = true;
  render();
}

function showFilterError(text, detail) {
  const box = $("#filter-error");
  box.textContent = text && Array.isArray(detail) ? detail.map((e) => e.msg).join("; ") : text;
  box.classList.toggle("hidden", !text);
  $("#filter-text").classList.toggle("invalid", Boolean(text));
}

let reloadTimer = null;
function reloadSoon(ms = 300) {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => load().catch((err) => toast(`Could not load runs: ${errorText(err)}`, "error")), ms);
}

function setText(text) {
  state.text = text;
  $("#filter-text").value = text;
  saveStateToUrl();
  reloadSoon(0);
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
    order = order.filter((x) => x !== id);
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

/** A run the server sent: drawn in place when shown; a new run or a new status asks the server
 * again (whether it matches, the order and the queue's places may have changed). Progress of a
 * run the filter leaves out asks nothing: it is heard of again at its next status. */
function upsert(run) {
  if (!run || run.id === undefined) return;
  if (runs.has(run.id)) {
    runs.set(run.id, run);
    render();
  }
  if (statusSeen.get(run.id) !== run.status) {
    statusSeen.set(run.id, run.status);
    reloadSoon();
  }
}

// ---------------------------------------------------------------- wiring

function init() {
  $("#filter-text").value = state.text;
  vocabulary().then((v) => fillSelect($("#filter-status"), v.statuses, { current: state.status }))
    .catch((err) => toast(`Could not load the statuses: ${errorText(err)}`, "error"));
  pooledSelectors().then((names) => { pooled = names; render(); })
    .catch((err) => toast(`Could not load the selectors: ${errorText(err)}`, "error"));
  $("#filter-text").addEventListener("input", (ev) => {
    state.text = ev.target.value;
    saveStateToUrl();
    // plain words filter what the page holds; a query (or leaving one) asks the server
    if ((isQuery(state.text) ? state.text : null) !== loadedFilter) reloadSoon();
    else render();
  });
  for (const f of ["status", "selector", "dataset"]) {
    $(`#filter-${f}`).addEventListener("change", (ev) => { state[f] = ev.target.value; saveStateToUrl(); reloadSoon(0); });
  }
  $("#runs-table thead").addEventListener("click", (ev) => {
    const th = ev.target.closest("th[data-sort]");
    if (!th) return;
    const k = th.dataset.sort;
    state.desc = state.sort === k ? !state.desc : true; // first click: highest first
    state.sort = k;
    saveStateToUrl();
    reloadSoon(0);
  });
  $("#compare-btn").addEventListener("click", () => {
    const ids = [...ticked].sort((a, b) => a - b);
    location.href = `/compare?runs=${ids.join(",")}&baseline=${ids[0]}`;
  });
  $("#columns-btn").addEventListener("click", () => {
    const menu = $("#columns-menu");
    drawColumnMenu();
    menu.classList.toggle("hidden");
    $("#columns-btn").setAttribute("aria-expanded", String(!menu.classList.contains("hidden")));
  });
  document.addEventListener("click", (ev) => {
    if (!ev.target.closest(".col-picker")) $("#columns-menu").classList.add("hidden");
  });
  // "/" focuses the filter, as in most dashboards (not while typing in a field)
  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "/" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.target.closest("input, textarea, select, [contenteditable]")) return;
    ev.preventDefault();
    $("#filter-text").focus();
  });
  $("#edit-form").addEventListener("submit", saveEdit);
  $("#edit-cancel").addEventListener("click", () => $("#edit-dialog").close());

  load().catch((err) => toast(`Could not load runs: ${errorText(err)}`, "error"));
  liveSocket("/ws/runs", {
    onStatus: (ok) => {
      connectionBanner(ok);
      if (ok && loaded) reloadSoon(0); // catch up on what changed while away
    },
    onMessage: (msg) => {
      if (msg.type === "snapshot") reloadSoon(0);
      else upsert(msg.run); // {"type": "run"}: a status or progress change
    },
  });
  // the ETA of a running run counts down between reports
  setInterval(() => {
    for (const span of $$("#runs-table tbody .eta")) {
      const r = runs.get(Number(span.closest("tr").dataset.runId));
      const left = r && eta(r);
      if (left) { span.textContent = `ETA ${fmtDuration(left.seconds)}`; span.dataset.seconds = String(Math.round(left.seconds)); }
    }
  }, 1000);
}

init();
