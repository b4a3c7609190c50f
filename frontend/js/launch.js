// launch.js — the launch page (/launch): the form (launch-form.js), its presets, its sweep
// (launch-sweep.js), and launching. /launch?from=<id> ("Run again") fills it with run <id>'s stored
// settings.
//
// A 422 from the server is shown beside the field its `loc` names (launch-errors.js).

import { api, errorText } from "./api.js";
import { h, $, toast, confirmDialog } from "./ui.js";
import { HIDDEN, specs, buildForm, collectConfig, fillConfig, setField } from "./launch-form.js";
import { clearErrors, showFieldError, showServerErrors } from "./launch-errors.js";
import { launchSweep, sweeping, wireSweep } from "./launch-sweep.js";

// The built-in comparison preset, offered beside the server's.
// Always offered: it uses this form's settings, so any dataset/length can be compared quickly.
const MMS_VS_UNIFORM = {
  name: "This form: MMS and uniform side by side",
  help: "Two runs with this form's settings and seed, one selecting by MMS, one uniform; opens their comparison.",
  fromForm: true,
  runs: [{ name: "mms", config: { selector: "mms" } }, { name: "uniform", config: { selector: "uniform" } }],
};

let OPTIONS = null;

// ---------------------------------------------------------------- presets

function buildPresets() {
  const box = $("#presets");
  const presets = [MMS_VS_UNIFORM, ...(OPTIONS.presets || [])];
  for (const p of presets) {
    const multi = p.runs.length > 1;
    box.append(
      h("button", { type: "button", class: multi ? "primary" : "secondary", "data-preset": p.name, onclick: () => (multi ? launchPreset(p) : fillPreset(p)) },
        multi ? `▶ ${p.name} (launches ${p.runs.length})` : p.name),
      h("div", { class: "help" }, p.help || ""));
  }
}

function fillPreset(p) {
  fillConfig({}); // every box at its default
  const run = p.runs[0];
  for (const [k, v] of Object.entries(run.config || {})) setField(k, v);
  if (run.name && !$("#f-name").value) $("#f-name").value = run.name;
  toast(`Preset “${p.name}” filled in — adjust and launch`);
}

// ---------------------------------------------------------------- submitting

function baseBody() {
  return {
    name: $("#f-name").value.trim() || null,
    tags: $("#f-tags").value.split(",").map((t) => t.trim()).filter(Boolean),
    notes: $("#f-notes").value,
  };
}

function readOrShow() {
  clearErrors();
  try { return collectConfig(); } catch (e) {
    if (e.field) showFieldError(e.field, e.message); else $("#form-error").textContent = e.message;
    return null;
  }
}

let busy = false;
async function submit(ev) {
  ev.preventDefault();
  if (busy) return;
  if (sweeping()) {
    busy = true;
    $("#submit-btn").disabled = true;
    try {
      if (!(await launchSweep())) $("#submit-btn").disabled = false;
    } finally { busy = false; }
    return;
  }
  const config = readOrShow();
  if (!config) return;
  busy = true;
  $("#submit-btn").disabled = true;
  try {
    const run = await api.post("/api/runs", { ...baseBody(), config });
    location.href = `/runs/${run.id}`;
  } catch (err) {
    showServerErrors(err, specs);
    $("#submit-btn").disabled = false;
  } finally { busy = false; }
}

async function launchPreset(p) {
  if (busy) return;
  const config = readOrShow();
  if (!config) return;
  const what = p.runs.map((r) => r.name).join(", ");
  if (!(await confirmDialog(`Launch ${p.runs.length} runs (${what}) and open their comparison?`, { confirmText: `Launch ${p.runs.length} runs`, danger: false }))) return;
  busy = true;
  // A server preset runs exactly as defined, with the form's seed (one seed for all its runs);
  // the built-in one takes everything from the form and changes only the selector.
  const seed = config.seed ?? specs.get("seed")?.default ?? 0;
  $("#submit-btn").disabled = true;
  const base = baseBody();
  const ids = [];
  try {
    for (const r of p.runs) {
      const cfg = p.fromForm ? { ...config, ...r.config, seed } : { ...r.config, seed };
      if (p.fromForm && r.config.selector !== config.selector) delete cfg.selector_options;
      const name = base.name ? `${base.name}-${r.name}` : r.name;
      const run = await api.post("/api/runs", { ...base, name, config: cfg, tags: [...base.tags, p.name] });
      ids.push(run.id);
    }
  } catch (err) {
    showServerErrors(err, specs, `${p.name}: `);
    if (ids.length) toast(`Launched ${ids.join(", ")} before the error`, "error");
    $("#submit-btn").disabled = false;
    busy = false;
    return;
  }
  const uniform = ids[p.runs.findIndex((r) => (r.config || {}).selector === "uniform")] ?? ids[0];
  location.href = `/compare?runs=${ids.join(",")}&baseline=${uniform}&x=step&key=val/accuracy`;
}

/** "Run again": every setting of run `id` in the form, its name and tags (not its sweep's). */
async function copyRun(id) {
  let run;
  try {
    run = await api.get(`/api/runs/${encodeURIComponent(id)}`);
  } catch (err) {
    $("#launch-status").textContent = `Could not copy run ${id}: ${errorText(err)}`;
    return;
  }
  fillConfig(run.config);
  $("#f-name").value = run.name || "";
  $("#f-tags").value = (run.tags || []).filter((t) => !t.startsWith("sweep:")).join(", ");
  const note = $("#copied-from");
  note.replaceChildren("Every setting of ", h("a", { href: `/runs/${run.id}` }, `run #${run.id} ${run.name || ""}`.trim()),
    " is filled in: change what this run should do differently, then launch.");
  note.classList.remove("hidden");
}

async function init() {
  try {
    OPTIONS = await api.get("/api/options");
  } catch (err) {
    $("#launch-status").textContent = `Could not load the options: ${errorText(err)}`;
    return;
  }
  buildForm(OPTIONS);
  buildPresets();
  // Pre-fill from the query string, e.g. /launch?dataset=digits&steps=200 (used by "run again").
  for (const [k, v] of new URLSearchParams(location.search)) {
    if (!specs.has(k) || HIDDEN.has(k)) continue;
    const spec = specs.get(k);
    let val = v;
    if (spec.type === "boolean") val = v === "true" || v === "1";
    else if (spec.type === "object" || spec.type === "array") { try { val = JSON.parse(v); } catch (_) { continue; } }
    setField(k, val);
  }
  const from = new URLSearchParams(location.search).get("from");
  if (from) await copyRun(from);
  wireSweep(() => { const config = readOrShow(); return config && { ...baseBody(), config }; });
  $("#launch-form").addEventListener("submit", submit);
  $("#submit-btn").disabled = false;
  $("#launch-status").textContent = "";
  document.body.dataset.ready = "1";
}

init();
