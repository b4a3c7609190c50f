// launch-form.js — the launch form, generated from GET /api/options `fields`, and read back.
//
// Each TrainConfig field becomes an input of its JSON type with its default, range and help text
// as a hint; dataset/model/selector/regime/enums become selects. Only fields the user changed
// (plus the few that define a run) are read back, so server-side defaults stay authoritative.

import { h, $, $$ } from "./ui.js";
import { clearError } from "./launch-errors.js";

// Fields the server manages itself (it rejects or overrides them): not offered in the form.
export const HIDDEN = new Set(["data_dir", "out_dir", "resume_from", "selector_options"]);
// Always sent, so a run's defining choices are explicit in its stored config.
const ALWAYS_SEND = new Set(["dataset", "model", "selector", "candidates", "batch_size", "seed"]);

const GROUPS = [
  { title: "Essentials", open: true, fields: ["dataset", "model", "selector", "candidates", "batch_size", "steps", "epochs", "lr", "regime", "seed"] },
  { title: "Data", fields: ["train_subset", "val_fraction", "augment", "download", "label_noise", "clean_only"] },
  { title: "Selection", fields: ["score_chunk", "bn_stats"] },
  { title: "Optimisation", fields: ["momentum", "weight_decay", "warmup_epochs"] },
  { title: "Monitoring and evaluation", fields: ["log_every", "hist_every", "hist_bins", "eval_every", "eval_samples", "checkpoint_every", "system_interval"] },
  { title: "Machine", fields: ["device", "nproc", "amp", "channels_last", "threads"] },
];

let OPTIONS = null;
export const specs = new Map(); // field name -> spec
let copied = null; // the stored config the form was filled from (fillConfig), if any

// ---------------------------------------------------------------- building the form

function rangeHint(spec) {
  const parts = [];
  if (spec.minimum !== undefined) parts.push(`≥ ${spec.minimum}`);
  if (spec.exclusiveMinimum !== undefined) parts.push(`> ${spec.exclusiveMinimum}`);
  if (spec.maximum !== undefined) parts.push(`≤ ${spec.maximum}`);
  if (spec.exclusiveMaximum !== undefined) parts.push(`< ${spec.exclusiveMaximum}`);
  return parts.join(", ");
}

function selectInput(id, choices, value) {
  const sel = h("select", { id, name: id.slice(2) });
  for (const c of choices) {
    sel.append(h("option", { value: c.value, disabled: c.disabled, title: c.help || "" }, c.label ?? c.value));
  }
  sel.value = value;
  return sel;
}

function inputFor(spec) {
  const id = `f-${spec.name}`;
  const def = spec.default;
  if (spec.name === "dataset") {
    const choices = OPTIONS.datasets.map((d) => ({ value: d.name, label: d.available ? d.name : `${d.name} (not on disk)`, disabled: !d.available, help: d.help }));
    if (!choices.some((c) => c.value === def)) choices.unshift({ value: def, label: def });
    const preferred = OPTIONS.datasets.find((d) => d.name === def && d.available) ? def : (OPTIONS.datasets.find((d) => d.available)?.name ?? def);
    return selectInput(id, choices, preferred);
  }
  if (spec.name === "model") {
    const names = OPTIONS.models.includes(def) ? OPTIONS.models : [def, ...OPTIONS.models];
    return selectInput(id, names.map((m) => ({ value: m })), def);
  }
  if (spec.name === "selector") {
    return selectInput(id, OPTIONS.selectors.map((s) => ({ value: s.name, help: s.help })), def);
  }
  if (spec.name === "regime") {
    const names = OPTIONS.regimes.includes(def) || typeof def !== "string" ? OPTIONS.regimes : [def, ...OPTIONS.regimes];
    const sel = selectInput(id, [...names.map((r) => ({ value: r })), { value: "__custom", label: "custom drops…" }], typeof def === "string" ? def : "__custom");
    return sel;
  }
  if (spec.enum) return selectInput(id, spec.enum.map((v) => ({ value: v })), def);
  if (spec.type === "boolean") return h("input", { id, name: spec.name, type: "checkbox", checked: !!def });
  if (spec.type === "integer" || spec.type === "number") {
    const min = spec.minimum ?? spec.exclusiveMinimum;
    const max = spec.maximum ?? spec.exclusiveMaximum;
    return h("input", {
      id, name: spec.name, type: "number", inputmode: spec.type === "integer" ? "numeric" : "decimal",
      step: spec.type === "integer" ? "1" : "any", min, max,
      value: def === null || def === undefined ? "" : def,
      placeholder: spec.nullable ? "default (empty)" : "",
    });
  }
  if (spec.type === "object" || spec.type === "array") {
    return h("textarea", { id, name: spec.name, rows: 2 }, def === null || def === undefined ? "" : JSON.stringify(def));
  }
  return h("input", { id, name: spec.name, type: "text", value: def ?? "", placeholder: spec.nullable ? "default (empty)" : "" });
}

function fieldBlock(spec) {
  const input = inputFor(spec);
  const hint = [spec.help, rangeHint(spec)].filter(Boolean).join(" — ");
  const block = h("div", { class: "field", "data-field": spec.name },
    h("label", { for: input.id }, spec.name.replaceAll("_", " ")),
    input,
    h("div", { class: "hint", id: `hint-${spec.name}` }, hint),
    h("div", { class: "error", id: `error-${spec.name}`, role: "alert" }));
  if (spec.type === "boolean") block.querySelector("label").append(" ", input);
  if (spec.name === "regime") {
    const custom = h("input", { id: "f-regime-custom", type: "text", class: "hidden", placeholder: "[[epoch, factor], …] e.g. [[0.5, 0.1], [0.8, 0.1]]" });
    input.after(custom);
    input.addEventListener("change", () => custom.classList.toggle("hidden", input.value !== "__custom"));
    if (typeof spec.default !== "string") custom.value = JSON.stringify(spec.default);
  }
  if (spec.name === "selector") {
    const help = block.querySelector(".hint");
    const sync = () => {
      const s = OPTIONS.selectors.find((x) => x.name === input.value);
      help.textContent = s?.help || spec.help;
      renderSelectorOptions();
    };
    input.addEventListener("change", sync);
    queueMicrotask(sync);
  }
  input.addEventListener("input", () => clearError(spec.name));
  input.addEventListener("change", () => clearError(spec.name));
  return block;
}

// Selector options the run-level fields already set: `chunk` is score_chunk (the engine passes
// it on), so the form shows one of them.
const COVERED_OPTIONS = new Set(["chunk"]);
const OPTION_LABELS = { seed: "selector seed (its own random draws)" };

/** Whether the chosen selector scores a candidate pool (B, score chunk and bn stats apply). */
function selectorUsesPool() {
  const sel = OPTIONS.selectors.find((x) => x.name === $("#f-selector")?.value);
  return sel ? sel.uses_candidates !== false : true;
}

/** Fields that mean nothing for the chosen selector (uniform scores no pool) are hidden. */
function syncPoolFields() {
  const pool = selectorUsesPool();
  for (const name of ["score_chunk", "bn_stats"]) {
    $(`.field[data-field="${name}"]`)?.classList.toggle("hidden", !pool);
  }
  const hint = $("#hint-candidates");
  if (hint) hint.dataset.pool = String(pool);
  const cand = $("#f-candidates");
  if (cand) cand.disabled = !pool;
}

/** A set `steps` overrides `epochs`: the epochs box is then disabled and not sent. */
function syncLength() {
  const steps = $("#f-steps");
  const epochs = $("#f-epochs");
  if (!steps || !epochs) return;
  const set = steps.value.trim() !== "";
  epochs.disabled = set;
  const hint = $("#hint-epochs");
  if (hint) {
    hint.dataset.base ??= hint.textContent;
    hint.textContent = set ? "not used: steps is set (clear steps to train by epochs)" : hint.dataset.base;
  }
}

/** Inputs for the chosen selector's own options (sent as `selector_options`). */
function renderSelectorOptions() {
  syncPoolFields();
  const box = $("#selector-options");
  if (!box) return;
  const sel = OPTIONS.selectors.find((x) => x.name === $("#f-selector").value);
  const opts = Object.fromEntries(Object.entries(sel?.options || {}).filter(([name]) => !COVERED_OPTIONS.has(name)));
  box.replaceChildren(...Object.entries(opts).map(([name, o]) => {
    const def = o && typeof o === "object" && "default" in o ? o.default : o;
    const id = `so-${name}`;
    const input = typeof def === "boolean"
      ? h("input", { id, type: "checkbox", checked: def, "data-default": JSON.stringify(def) })
      : h("input", { id, type: typeof def === "number" ? "number" : "text", step: "any", value: def ?? "", "data-default": JSON.stringify(def ?? null) });
    input.dataset.option = name;
    return h("div", { class: "field", "data-field": `selector_options.${name}` },
      h("label", { for: id }, OPTION_LABELS[name] ?? name.replaceAll("_", " ")), input,
      h("div", { class: "hint" }, (o && o.help) || ""),
      h("div", { class: "error", id: `error-selector_options-${name}` }));
  }));
  box.closest("fieldset")?.classList.toggle("hidden", !Object.keys(opts).length);
}

/** Build the form from the answer of GET /api/options. */
export function buildForm(options) {
  OPTIONS = options;
  for (const f of OPTIONS.fields) specs.set(f.name, f);
  const placed = new Set();
  const root = $("#config-fields");
  root.replaceChildren();
  const groups = GROUPS.map((g) => ({ ...g, fields: g.fields.filter((n) => specs.has(n) && !HIDDEN.has(n)) }));
  const other = [...specs.keys()].filter((n) => !HIDDEN.has(n) && !GROUPS.some((g) => g.fields.includes(n)));
  if (other.length) groups.push({ title: "Other", fields: other });
  for (const g of groups) {
    if (!g.fields.length) continue;
    const grid = h("div", { class: "fields" }, ...g.fields.map((n) => { placed.add(n); return fieldBlock(specs.get(n)); }));
    if (g.open) root.append(h("fieldset", { "data-group": g.title }, h("legend", {}, g.title), grid));
    else root.append(h("fieldset", { "data-group": g.title }, h("details", {}, h("summary", {}, g.title), grid)));
    if (g.title === "Essentials") {
      root.append(h("fieldset", { "data-group": "selector options" }, h("legend", {}, "Selector options"),
        h("div", { class: "fields", id: "selector-options" })));
    }
  }
  $("#f-steps")?.addEventListener("input", syncLength);
  $("#f-steps")?.addEventListener("change", syncLength);
  syncLength();
}

// ---------------------------------------------------------------- reading and filling

function readField(name) {
  const spec = specs.get(name);
  const el = $(`#f-${name}`);
  if (!el) return undefined;
  if (name === "regime" && el.value === "__custom") {
    const raw = $("#f-regime-custom").value.trim();
    try { return JSON.parse(raw); } catch (_) { throw fieldError(name, "custom drops must be JSON like [[0.5, 0.1], [0.8, 0.1]]"); }
  }
  if (spec.type === "boolean") return el.checked;
  if (spec.type === "integer" || spec.type === "number") {
    if (el.value.trim() === "") {
      if (spec.nullable) return null;
      throw fieldError(name, "a number is required here");
    }
    const v = Number(el.value);
    if (!Number.isFinite(v)) throw fieldError(name, "not a number");
    return v;
  }
  if (spec.type === "object" || spec.type === "array") {
    const raw = el.value.trim();
    if (!raw) return spec.nullable ? null : spec.default;
    try { return JSON.parse(raw); } catch (_) { throw fieldError(name, "not valid JSON"); }
  }
  const v = el.value;
  return v === "" && spec.nullable ? null : v;
}

function fieldError(field, message) {
  const e = new Error(message);
  e.field = field;
  return e;
}

/** The config to POST: fields that differ from their defaults, plus the defining ones. A form
 * filled from a run (`fillConfig`) also keeps what that run set and the form shows no box for. */
export function collectConfig() {
  const config = {};
  for (const [name, spec] of specs) {
    if (HIDDEN.has(name) || !$(`#f-${name}`)) continue;
    // steps overrides epochs: its disabled box is sent as it stands (a copied run's value), unless empty
    if (name === "epochs" && $("#f-steps")?.value.trim() && !$("#f-epochs").value.trim()) continue;
    const v = readField(name);
    if (ALWAYS_SEND.has(name) || JSON.stringify(v) !== JSON.stringify(spec.default)) config[name] = v;
  }
  const same = copied && copied.selector === config.selector;
  const so = same ? { ...(copied.selector_options || {}) } : {};
  for (const el of $$("#selector-options input")) {
    const def = JSON.parse(el.dataset.default);
    const v = el.type === "checkbox" ? el.checked : el.type === "number" ? (el.value === "" ? null : Number(el.value)) : el.value;
    if (JSON.stringify(v) !== JSON.stringify(def) || el.dataset.option in so) so[el.dataset.option] = v;
  }
  if (Object.keys(so).length) config.selector_options = so;
  if (copied?.out_dir) config.out_dir = copied.out_dir;
  // checked here too, so the message sits at the field instead of above the button
  if (selectorUsesPool() && config.candidates !== undefined && config.batch_size !== undefined && config.candidates < config.batch_size) {
    throw fieldError("candidates", `candidates B (${config.candidates}) must be at least the batch size b (${config.batch_size}): the selector picks b of B`);
  }
  return config;
}

/** Fill every box from a stored config (a run's "Run again"); what has no box (its other
 * selector options) is kept for `collectConfig`. */
export function fillConfig(config) {
  for (const [name, spec] of specs) if (!HIDDEN.has(name)) setField(name, name in config ? config[name] : spec.default);
  for (const el of $$("#selector-options input")) {
    const v = (config.selector_options || {})[el.dataset.option];
    if (v === undefined) continue;
    if (el.type === "checkbox") el.checked = Boolean(v); else el.value = v === null ? "" : String(v);
  }
  copied = config;
}

export function setField(name, value) {
  const spec = specs.get(name);
  const el = $(`#f-${name}`);
  if (!spec || !el) return;
  // a value the list does not offer (a Wide ResNet's size, an image folder) becomes a choice
  if (el.tagName === "SELECT" && typeof value === "string" && !Array.from(el.options).some((o) => o.value === value)) {
    el.append(h("option", { value }, value));
  }
  if (name === "regime") {
    const custom = typeof value !== "string";
    el.value = custom ? "__custom" : value;
    $("#f-regime-custom").value = custom ? JSON.stringify(value) : "";
    $("#f-regime-custom").classList.toggle("hidden", !custom);
  } else if (spec.type === "boolean") el.checked = !!value;
  else if (spec.type === "object" || spec.type === "array") el.value = value === null ? "" : JSON.stringify(value);
  else el.value = value === null || value === undefined ? "" : String(value);
  el.dispatchEvent(new Event("change"));
}
