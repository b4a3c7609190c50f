// run.js — one run, live (/runs/{id}): page wiring, the header and log, actions.
//
// The run arrives once, in the websocket's snapshot; deltas follow (run-state.js applies both).
// Each message marks the parts of the page it changed dirty, and one requestAnimationFrame
// redraws just those (run-plots.js draws the plots). The histogram slider follows the newest
// step only while "follow live" is ticked.

import { api, ApiError, liveSocket, vocabulary, pooledSelectors, errorText, fmtNum, fmtPct, fmtDuration, fmtDate, isActive, query } from "./api.js";
import { h, $, confirmDialog, toast, connectionBanner, statusBadge, fillSelect } from "./ui.js";
import { runColor, AXIS_NAMES } from "./plots.js";
import { createRunState, applyMessage, setEdges, latest, timing } from "./run-state.js";
import { durationSeconds, eta } from "./timing.js";
import { drawHeatmaps, drawCurrentHist, drawQuantiles, drawSelection, drawScalars } from "./run-plots.js";
import { wireNotes } from "./run-notes.js";

const RUN_ID = Number(location.pathname.split("/").filter(Boolean).pop());
const TERMINAL = new Set(["finished", "failed", "cancelled", "crashed"]);

let S = null; // the run's state, once the vocabulary is known
let pooled = null; // names of the selectors that draw a candidate pool (from the server)
let drawNotes = () => {}; // the tags and notes card (run-notes.js), once wired

// ---------------------------------------------------------------- drawing

const dirty = { head: true, heat: true, hist: true, quant: true, sel: true, scalars: true, log: true };
let frame = null;
function schedule() {
  if (frame === null) frame = requestAnimationFrame(() => { frame = null; redraw(); });
}

// The margin plots redraw on every frame with news; the secondary plots (selection statistics,
// loss/accuracy, throughput, LR) at most every SECONDARY_MS, so a busy stream keeps the page light.
const SECONDARY = ["quant", "sel", "scalars"];
const SECONDARY_MS = 400;
let lastSecondary = 0;
let secondaryTimer = null;

function redraw() {
  const now = performance.now();
  const secondaryDue = now - lastSecondary >= SECONDARY_MS;
  const d = { ...dirty };
  for (const k of Object.keys(dirty)) if (secondaryDue || !SECONDARY.includes(k)) dirty[k] = false;
  if (d.head) drawHead();
  if (d.heat) drawHeatmaps(S);
  if (d.hist) drawCurrentHist(S);
  if (secondaryDue) {
    if (d.quant || d.sel || d.scalars) lastSecondary = now;
    if (d.quant || d.scalars) drawQuantiles(S);
    if (d.sel) drawSelection(S);
    if (d.scalars) drawScalars(S);
  } else if (SECONDARY.some((k) => dirty[k]) && secondaryTimer === null) {
    secondaryTimer = setTimeout(() => { secondaryTimer = null; schedule(); }, SECONDARY_MS - (now - lastSecondary));
  }
  if (d.log) drawLog();
  document.body.dataset.ready = "1";
}

function kpi(label, value, testid) {
  return h("div", { "data-testid": testid }, label, h("b", {}, value));
}

function drawHead() {
  const r = S.run;
  if (!r) return;
  document.title = `${r.name || `run ${r.id}`} · MarginScope`;
  $("#run-title").textContent = `#${r.id} ${r.name || ""}`;
  $("#run-swatch").style.background = runColor(r.id);
  $("#run-status").replaceChildren(statusBadge(r.status));
  const pool = pooled.has(r.selector) ? r.candidates : r.batch_size;
  $("#run-meta").textContent = [
    `dataset ${r.dataset}`, `model ${r.model}`, `selector ${r.selector}`, `B/b ${pool}/${r.batch_size}`,
    `seed ${r.config?.seed ?? "–"}`, `created ${fmtDate(r.created_at)}`,
  ].join(" · ");
  $("#cancel-btn").disabled = !isActive(r.status);
  followResume(r.status);
  followCheckpoint(r);
  drawNotes();

  const step = r.progress?.step ?? 0;
  const total = r.progress?.total_steps ?? null;
  const frac = total ? Math.min(1, step / total) : 0;
  $("#progress > div").style.width = `${(100 * frac).toFixed(1)}%`;
  $("#progress").setAttribute("aria-valuenow", (100 * frac).toFixed(0));
  $("#progress-text").textContent = total ? `step ${step.toLocaleString("en-US")} / ${total.toLocaleString("en-US")} (${(100 * frac).toFixed(0)}%)` : `step ${step}`;
  drawTiming();

  $("#kpis").replaceChildren(
    kpi("val accuracy", fmtPct(latest(S, "val/accuracy")), "kpi-val"),
    kpi("best val accuracy", fmtPct(latest(S, "val/best_accuracy")), "kpi-best"),
    kpi("train-batch loss", fmtNum(latest(S, "train/loss")), "kpi-loss"),
    kpi("test accuracy", fmtPct(latest(S, "test/accuracy")), "kpi-test"),
    kpi("samples / s", fmtNum(latest(S, "samples_per_s"), 0), "kpi-sps"),
    kpi("samples back-propagated", fmtNum(latest(S, "samples_backpropagated") ?? lastCounter("samples_backpropagated")), "kpi-sbp"),
    kpi("epoch", fmtNum(r.progress?.epoch ?? null, 2), "kpi-epoch"),
  );
  const err = $("#run-error");
  err.classList.toggle("hidden", !r.error);
  if (r.error) err.textContent = r.traceback ? `${r.error}\n\n${r.traceback}` : r.error;
  $("#config").textContent = JSON.stringify(r.config, null, 2);
}

/** The run as timing.js reads it, with the newest values the live series hold. */
function liveRun() {
  const r = S.run;
  const newest = { wall_time: lastCounter("wall_time") };
  for (const key of ["time/elapsed", "time/remaining"]) newest[key] = latest(S, key);
  const known = Object.fromEntries(Object.entries(newest).filter(([, v]) => v !== null));
  return { ...r, latest: { ...r.latest, ...known } };
}

/** Duration and ETA, as the runs list shows them (timing.js); called every second while running. */
function drawTiming() {
  if (!S.run) return;
  const run = liveRun();
  const seconds = durationSeconds(run);
  $("#duration").textContent = seconds === null ? "" : `duration ${fmtDuration(seconds)}`;
  $("#duration").dataset.seconds = seconds === null ? "" : String(Math.round(seconds));
  const left = eta(run);
  $("#eta").textContent = left ? `ETA ${fmtDuration(left.seconds)}` : run.status === "running" ? "ETA estimating…" : "";
  $("#eta").title = left ? `estimated from the run's own pace, ${left.basis}` : "";
  $("#eta").dataset.seconds = left ? String(Math.round(left.seconds)) : "";
}

/** A counter's newest value, read off the training loss (logged every log_every steps). */
function lastCounter(c) {
  const s = S.scalars["train/loss"];
  return s && s[c].length ? s[c][s[c].length - 1] : null;
}

const CHECKPOINT = /^checkpoint saved at step /;

/** The log, with routine "checkpoint saved" lines collapsed into the newest one. */
function drawLog() {
  const pre = $("#log");
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  const lines = S.logs.slice(-1000);
  const checkpoints = lines.filter((l) => CHECKPOINT.test(l.message));
  const newest = checkpoints[checkpoints.length - 1];
  const shown = lines.filter((l) => !CHECKPOINT.test(l.message) || l === newest);
  pre.replaceChildren(...shown.map((l) => h("span", { class: l.level || "info" },
    `${fmtDate(l.time)} ${String(l.level || "info").padEnd(7)} ${l.message}`,
    l === newest && checkpoints.length > 1 ? ` (${checkpoints.length} checkpoints saved; older ones not listed)` : "", "\n")));
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

// ---------------------------------------------------------------- messages, REST and actions

function onMessage(msg) {
  if (msg.type === "samples") { document.dispatchEvent(new CustomEvent("marginscope:samples", { detail: msg })); return; } // js/samples.js
  Object.assign(dirty, applyMessage(S, msg));
  if (msg.type === "delta" && msg.histograms.length && !S.edges.length) ensureEdges();
  schedule();
}

// The snapshot carries the bin edges; a run whose first histogram comes after it gets them here.
let edgesRequested = false;
async function ensureEdges() {
  if (edgesRequested) return;
  edgesRequested = true;
  try {
    const r = await api.get(`/api/runs/${RUN_ID}/histograms`, { population: S.vocabulary.populations[0], max_rows: 1 });
    if (setEdges(S, r.edges)) { dirty.heat = dirty.hist = true; schedule(); }
  } catch (_) { edgesRequested = false; }
}

/** The socket never opened: say why when the server knows (unknown run), else keep retrying. */
async function explainRefusal(socket) {
  if (S.run) return;
  try {
    await api.get(`/api/runs/${RUN_ID}`);
  } catch (err) {
    $("#run-meta").textContent = err.status === 404 ? `Run ${RUN_ID} does not exist.` : errorText(err);
    if (err.status === 404) socket.close();
  }
}

async function cancelRun() {
  if (!(await confirmDialog(`Cancel run ${RUN_ID}? It stops after the current step and keeps a checkpoint, so it can be resumed.`, { confirmText: "Cancel run" }))) return;
  try {
    const run = await api.post(`/api/runs/${RUN_ID}/cancel`);
    // the live socket may already have brought the run's end (a run stops within a step): an
    // answer sent before it must not turn the page back to "running" at an older step
    if (!S.run || !TERMINAL.has(S.run.status)) S.run = run;
    dirty.head = true; schedule(); toast("Cancelling…");
  } catch (err) { toast(`Could not cancel: ${errorText(err)}`, "error"); }
}

// ---------------------------------------------------------------- resume, offered only when it works
//
// A cancelled or crashed run may still have a worker stopping (the run's end is written before its
// process exits), and the server refuses to resume it until that process is gone. So the button
// follows GET /api/runs/{id}/resume: enabled only when the server would accept, else disabled with
// the reason as its title and beside it, asked again every second while the reason is one that
// ends by itself. A refusal that still happens (a race with another tab) is that same message.

const RESUMABLE = new Set(["cancelled", "crashed"]);
const RESUME_POLL_MS = 1000;
let resumeChecked = null; // the status the button was last checked for
let resumeTimer = null;

function showResume(check) {
  const btn = $("#resume-btn");
  const note = $("#resume-note");
  btn.disabled = !check.can_resume;
  btn.title = check.can_resume ? "Continue from the last checkpoint" : (check.reason || "");
  btn.dataset.wait = String(Boolean(check.wait));
  note.textContent = check.can_resume || !check.reason ? "" : `Resume ${check.wait ? "waits" : "is not possible"}: ${check.reason}`;
  note.classList.toggle("hidden", !note.textContent);
}

/** Called on every status the page shows: check once per status, and poll while told to wait. */
function followResume(status) {
  if (status === resumeChecked) return;
  resumeChecked = status;
  clearTimeout(resumeTimer);
  if (!RESUMABLE.has(status)) { showResume({ can_resume: false, reason: null, wait: false }); return; }
  checkResume();
}

async function checkResume() {
  clearTimeout(resumeTimer);
  const status = resumeChecked;
  let check;
  try {
    check = await api.get(`/api/runs/${RUN_ID}/resume`);
  } catch (err) {
    check = { can_resume: false, reason: `could not ask the server (${errorText(err)})`, wait: true };
  }
  if (status !== resumeChecked) return; // the status moved on while we asked
  showResume(check);
  if (check.wait) resumeTimer = setTimeout(checkResume, RESUME_POLL_MS);
}

async function resumeRun() {
  try {
    S.run = await api.post(`/api/runs/${RUN_ID}/resume`);
    dirty.head = true; schedule(); toast("Resuming from the last checkpoint");
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 409)) { toast(`Could not resume: ${errorText(err)}`, "error"); return; }
    toast(`Not resumed yet: ${errorText(err)}`);
    checkResume(); // the button and its note say what the server says now
  }
}

// ---------------------------------------------------------------- the checkpoint download
//
// Offered only when this server holds the run's checkpoint file (HEAD .../checkpoint), asked again
// whenever the run reports a newer checkpoint; otherwise disabled, the reason beside it.

let checkpointChecked; // the checkpoint step the link was last checked for

function showCheckpoint(available, reason) {
  const link = $("#checkpoint-link");
  const note = $("#checkpoint-note");
  if (available) link.href = `/api/runs/${RUN_ID}/checkpoint`; else link.removeAttribute("href");
  link.setAttribute("aria-disabled", String(!available));
  link.title = available ? "Download the run's latest checkpoint (PyTorch's .pt)" : reason;
  note.textContent = available ? "" : `No checkpoint to download: ${reason}.`;
  note.classList.toggle("hidden", available);
}

function followCheckpoint(r) {
  if (r.checkpoint_step === checkpointChecked) return;
  checkpointChecked = r.checkpoint_step;
  if (r.checkpoint_step === null) {
    showCheckpoint(false, TERMINAL.has(r.status) ? "this run saved none" : "none yet (a run saves one at each validation)");
    return;
  }
  api.head(`/api/runs/${RUN_ID}/checkpoint`).then(() => showCheckpoint(true), (err) => {
    if (err instanceof ApiError && err.status === 404) {
      showCheckpoint(false, r.executor === "remote" ? `it stays on ${r.host || "the machine"} where the run trains` : "its file is not on this server");
    } else showCheckpoint(false, `could not ask the server (${errorText(err)})`);
  });
}

function wireControls() {
  $("#run-again").href = `/launch?from=${RUN_ID}`;
  $("#export-csv").href = `/api/runs/${RUN_ID}/export${query({ format: "csv" })}`;
  $("#export-json").href = `/api/runs/${RUN_ID}/export${query({ format: "json" })}`;
  $("#compare-link").href = `/compare?runs=${RUN_ID}&baseline=${RUN_ID}`;
  $("#cancel-btn").addEventListener("click", cancelRun);
  $("#resume-btn").addEventListener("click", resumeRun);
  const slider = $("#hist-slider");
  slider.addEventListener("input", () => {
    S.histIndex = Number(slider.value);
    S.follow = S.histIndex >= S.hist.candidates.steps.length - 1;
    $("#hist-follow").checked = S.follow;
    dirty.hist = true;
    schedule();
  });
  $("#hist-follow").addEventListener("change", (ev) => { S.follow = ev.target.checked; dirty.hist = true; schedule(); });
  const smoothing = $("#smoothing");
  const saved = Number(localStorage.getItem("marginscope.smoothing"));
  if (localStorage.getItem("marginscope.smoothing") !== null && saved >= 0 && saved < 1) smoothing.value = String(saved);
  S.smoothing = Number(smoothing.value);
  $("#smoothing-value").textContent = S.smoothing.toFixed(2);
  smoothing.addEventListener("input", () => {
    S.smoothing = Number(smoothing.value);
    $("#smoothing-value").textContent = S.smoothing.toFixed(2);
    try { localStorage.setItem("marginscope.smoothing", smoothing.value); } catch (_) { /* private mode */ }
    dirty.scalars = true;
    schedule();
  });
  // arrows move the histogram's step slider (unless a field has the keyboard)
  document.addEventListener("keydown", (ev) => {
    if (!["ArrowLeft", "ArrowRight"].includes(ev.key) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.target.closest("input, textarea, select, [contenteditable]")) return;
    const n = S.hist.candidates.steps.length;
    if (n < 2) return;
    ev.preventDefault();
    slider.value = String(Math.max(0, Math.min(n - 1, Number(slider.value) + (ev.key === "ArrowLeft" ? -1 : 1))));
    slider.dispatchEvent(new Event("input"));
  });
  window.addEventListener("themechange", () => { for (const k of Object.keys(dirty)) dirty[k] = true; lastSecondary = 0; schedule(); });
  const axis = $("#x-axis");
  fillSelect(axis, S.vocabulary.x_axes, { names: AXIS_NAMES, current: S.xAxis });
  axis.addEventListener("change", (ev) => { S.xAxis = ev.target.value; dirty.scalars = true; schedule(); });
}

async function init() {
  if (!Number.isFinite(RUN_ID)) { $("#run-meta").textContent = "No run id in the address."; return; }
  try {
    [S, pooled] = [createRunState(await vocabulary()), await pooledSelectors()];
  } catch (err) { $("#run-meta").textContent = errorText(err); return; }
  window.__marginscope = { S, timing }; // read by the browser tests
  wireControls();
  drawNotes = wireNotes(RUN_ID, { current: () => S.run, onSaved: (run) => { S.run = run; dirty.head = true; schedule(); } });
  const socket = liveSocket(`/ws/runs/${RUN_ID}`, {
    since: () => { S.sinceSent.push(S.seq); return S.seq; },
    onStatus: (ok) => { connectionBanner(ok); if (!ok) S.disconnects += 1; },
    onRefused: () => explainRefusal(socket),
    onMessage,
  });
  window.__marginscope.socket = socket;
  setInterval(() => { if (S.run && S.run.status === "running") { dirty.head = true; schedule(); } }, 1000);
}

init();
