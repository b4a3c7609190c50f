// samples.js — the run page's "Hardest samples" section (/runs/{id}, section#samples): a gallery of
// the samples behind the margins, one sample's story, and the suspect labels.
//
// Three views of GET /api/runs/{id}/samples: the lowest-margin candidates of a logged snapshot
// (the step slider picks which; "follow live" keeps the newest), the most often selected samples
// so far, and the selected samples that were misclassified when last scored; each can be narrowed
// to one class. New snapshots arrive on the run's websocket as {"type": "samples", ...}: run.js
// hands them over as a `marginscope:samples` event on the document, and this module either draws
// the message itself (the lowest view, following) or asks the API again.

import { api, errorText, isActive } from "./api.js";
import { h, $ } from "./ui.js";
import { samplesUrl, sampleTile, className } from "./samples-tiles.js";
import { openStory } from "./samples-story.js";
import { loadSuspects, wireExports } from "./samples-suspects.js";

const RUN_ID = Number(location.pathname.split("/").filter(Boolean).pop());
const LIMIT = 100; // samples asked for per view
const FIRST_SHOWN = 32; // tiles drawn before "Show all"
const SAFETY_POLL_MS = 10_000; // asks again while the run trains but no live message came (a missed one)
const SUSPECTS_EVERY_MS = 5_000; // the suspect list follows a training run at most this often

const VIEW_TEXT = {
  lowest: "lowest-margin candidates",
  selected: "most often selected samples so far",
  misclassified: "selected samples misclassified when last scored",
};

const st = {
  view: "lowest",
  cls: "", // "" = every class
  steps: [], // logged steps that have a snapshot
  at: null, // the step the slider shows; null = follow the newest
  step: null, // the step of the items shown
  scored: null, // "candidates", or "batch" for a selector that scores only what it trains on
  items: [],
  names: [], // the run's class names
  shown: FIRST_SHOWN,
  run: null, // GET /api/runs/{id}, for samples_every and the status
  error: null,
  loaded: false,
  live: 0, // live messages received (read by the browser tests)
  lastLive: 0,
};

let request = 0; // numbers each GET so a late answer never overwrites a newer one

// ---------------------------------------------------------------- loading

async function load() {
  const mine = ++request;
  const params = { view: st.view, limit: LIMIT, cls: st.cls === "" ? null : st.cls };
  if (st.view === "lowest" && st.at !== null) params.step = st.at;
  let res;
  try {
    res = await api.get(samplesUrl(RUN_ID), params);
  } catch (err) {
    if (mine !== request) return;
    st.error = errorText(err);
    st.loaded = true;
    render();
    return;
  }
  if (mine !== request) return;
  st.error = null;
  st.loaded = true;
  setSteps(res.steps);
  st.items = res.items || [];
  st.step = res.step ?? null;
  st.scored = res.scored ?? st.scored;
  learnNames(st.items);
  render();
}

async function loadRun() {
  try { st.run = await api.get(`/api/runs/${RUN_ID}`); } catch (_) { /* run.js reports an unknown run */ }
}

async function loadNames() {
  try {
    const sel = await api.get(`/api/runs/${RUN_ID}/selection`, { max_points: 1 });
    if (sel.class_names?.length) { st.names = sel.class_names; fillClasses(); }
  } catch (_) { /* the items' class_name fills in */ }
}

/** Class names carried by the items, for a run whose list is not known yet. */
function learnNames(items) {
  let added = false;
  for (const it of items) {
    if (it.class_name !== undefined && it.class_name !== null && st.names[it.label] === undefined) {
      st.names[it.label] = String(it.class_name);
      added = true;
    }
  }
  if (added) fillClasses();
}

function setSteps(steps) {
  if (Array.isArray(steps)) st.steps = steps.slice().sort((a, b) => a - b);
}

let suspectsAt = 0;
let suspectsTimer = null;
function refreshSuspects(force = false) {
  const wait = force ? 0 : Math.max(0, suspectsAt + SUSPECTS_EVERY_MS - Date.now());
  if (suspectsTimer !== null) return;
  suspectsTimer = setTimeout(async () => {
    suspectsTimer = null;
    suspectsAt = Date.now();
    await loadSuspects(RUN_ID, st.names, (item, from) => openStory(RUN_ID, st.names, item, from));
  }, wait);
}

let reloadTimer = null;
/** Ask the API again soon (coalesces bursts: slider drags, several live messages). */
function reloadSoon(ms = 150) {
  if (reloadTimer !== null) clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => { reloadTimer = null; load(); }, ms);
}

// ---------------------------------------------------------------- the live channel

function onLive(ev) {
  const msg = ev.detail || {};
  st.live += 1;
  st.lastLive = Date.now();
  if (Array.isArray(msg.steps)) setSteps(msg.steps);
  else if (Number.isInteger(msg.step) && !st.steps.includes(msg.step)) setSteps([...st.steps, msg.step]);
  refreshSuspects();
  if (st.at !== null) { render(); return; } // the user looks at an older step: only the slider grows
  if (st.view === "lowest" && Array.isArray(msg.items)) {
    learnNames(msg.items);
    st.items = st.cls === "" ? msg.items : msg.items.filter((it) => String(it.label) === st.cls);
    st.step = msg.step ?? st.steps[st.steps.length - 1] ?? null;
    st.scored = msg.scored ?? st.scored;
    st.loaded = true;
    st.error = null;
    render();
  } else {
    reloadSoon(300);
  }
}

/** A run that trains but whose live messages stopped (a reconnect drops none of the rows, but a
 * samples message sent meanwhile is not repeated): ask the API now and then. */
async function safetyPoll() {
  if (document.hidden || Date.now() - st.lastLive < SAFETY_POLL_MS) return;
  await loadRun();
  if (st.run && !isActive(st.run.status)) { clearInterval(pollTimer); pollTimer = null; } // a last look, then stop
  load();
  refreshSuspects();
}
let pollTimer = null;

// ---------------------------------------------------------------- drawing

function fillClasses() {
  const sel = $("#samples-class");
  const current = sel.value;
  sel.replaceChildren(h("option", { value: "" }, "all classes"),
    ...st.names.map((name, k) => (name === undefined ? null : h("option", { value: String(k) }, `${k}: ${name}`))));
  sel.value = current;
}

/** What to say when there is nothing to show. */
function emptyText() {
  const every = st.run?.config?.samples_every;
  if (st.error) return ["Could not load the samples", st.error];
  if (every === 0) return ["Samples tracking is off for this run", "Launch a run with samples_every above 0 to see the samples behind its margins."];
  if (!st.steps.length) {
    if (st.run && !isActive(st.run.status)) return ["No samples were logged", "This run ended before its first samples snapshot."];
    return ["Waiting for the first snapshot…", every ? `The engine logs the hardest samples every ${every} steps.` : "The hardest samples appear once the run has logged a snapshot."];
  }
  const cls = st.cls === "" ? "" : ` of class ${className(st.names, Number(st.cls))}`;
  return [`No ${VIEW_TEXT[st.view]}${cls}`, st.view === "misclassified" ? "Every selected sample was classified correctly when last scored." : "Try another class or step."];
}

function render() {
  const section = $("#samples");
  const n = st.steps.length;
  const slider = $("#samples-step");
  const follow = st.at === null;
  const idx = follow ? n - 1 : Math.max(0, st.steps.indexOf(st.at));
  slider.max = String(Math.max(0, n - 1));
  slider.value = String(Math.max(0, idx));
  slider.disabled = n < 2 || st.view !== "lowest";
  slider.setAttribute("aria-valuetext", n ? `step ${st.steps[idx]}` : "no snapshot yet");
  $("#samples-follow").checked = follow;
  $("#samples-step-label").textContent = st.view !== "lowest" ? "so far" : n ? `step ${st.steps[idx]}${follow ? " (latest)" : ""} · ${idx + 1}/${n}` : "–";

  const items = st.items;
  const empty = st.loaded && !items.length;
  const off = st.run?.config?.samples_every === 0 && !n;
  section.dataset.state = !st.loaded ? "loading" : st.error ? "error" : off ? "off" : empty ? (n ? "none" : "waiting") : "ready";
  section.dataset.step = st.step ?? "";
  section.dataset.count = String(items.length);
  section.dataset.live = String(st.live);
  const box = $("#samples-empty");
  box.classList.toggle("hidden", !empty);
  if (empty) {
    const [title, text] = emptyText();
    box.replaceChildren(h("h3", {}, title), h("p", {}, text));
  }
  const where = st.view === "lowest" && st.step !== null ? ` at step ${st.step}` : "";
  const cls = st.cls === "" ? "" : ` · class ${className(st.names, Number(st.cls))}`;
  const batch = st.view === "lowest" && st.scored === "batch" ? " (this selector scores only the batch it trains on)" : "";
  $("#samples-caption").textContent = st.loaded && items.length ? `${items.length} ${VIEW_TEXT[st.view]}${where}${cls}${batch}` : "";

  const grid = $("#samples-grid");
  const focused = document.activeElement?.closest?.(".sample-tile")?.dataset.index;
  grid.replaceChildren(...items.slice(0, st.shown).map((it) => h("li", {}, sampleTile(RUN_ID, st.names, it, openOne))));
  if (focused !== undefined) grid.querySelector(`.sample-tile[data-index="${focused}"]`)?.focus();
  const more = $("#samples-more");
  more.classList.toggle("hidden", items.length <= st.shown);
  more.textContent = `Show all ${items.length}`;
}

function openOne(item, tile) {
  openStory(RUN_ID, st.names, item, tile);
}

// ---------------------------------------------------------------- wiring

function wire() {
  for (const b of document.querySelectorAll("#samples-views button")) {
    b.addEventListener("click", () => {
      st.view = b.dataset.view;
      st.shown = FIRST_SHOWN;
      for (const o of document.querySelectorAll("#samples-views button")) o.setAttribute("aria-pressed", String(o === b));
      render();
      load();
    });
  }
  $("#samples-class").addEventListener("change", (ev) => { st.cls = ev.target.value; st.shown = FIRST_SHOWN; load(); });
  const slider = $("#samples-step");
  slider.addEventListener("input", () => {
    const i = Number(slider.value);
    st.at = i >= st.steps.length - 1 ? null : st.steps[i];
    render();
    reloadSoon();
  });
  $("#samples-follow").addEventListener("change", (ev) => {
    if (ev.target.checked) { st.at = null; load(); } else if (st.steps.length) { st.at = st.step ?? st.steps[st.steps.length - 1]; render(); }
  });
  $("#samples-more").addEventListener("click", () => { st.shown = Infinity; render(); });
  document.addEventListener("marginscope:samples", onLive);
  wireExports(RUN_ID);
}

async function init() {
  if (!Number.isFinite(RUN_ID) || !$("#samples")) return;
  wire();
  render();
  await Promise.all([loadRun(), loadNames()]);
  await load();
  refreshSuspects(true);
  if (!st.run || isActive(st.run.status)) pollTimer = setInterval(safetyPoll, SAFETY_POLL_MS);
  window.__marginscopeSamples = st; // read by the browser tests
}

init();
