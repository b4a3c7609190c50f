// launch-sweep.js — the launch form's sweep: several seeds and a grid over any field.
//
// The page only reads what was typed (each value parsed by its field's type); the server expands
// the grid (POST /api/sweeps/preview), so the count shown, the summary confirmed and the runs
// queued (POST /api/sweeps, all or none) are one plan. A 422 about the grid is shown beside the
// row of the field it names, the rest beside the form's fields (launch-errors.js).

import { api, ApiError, errorText } from "./api.js";
import { h, $, $$, confirmDialog } from "./ui.js";
import { HIDDEN, specs } from "./launch-form.js";
import { showServerErrors } from "./launch-errors.js";
import { tagFilter } from "./runs-columns.js";

const OWN_BOX = "seed"; // several seeds have their own box, the first thing people sweep
const PREVIEW_MS = 250; // typing pauses this long before the plan is asked for
let rows = 0;
let form = null; // () => {name, tags, notes, config}, or null after showing why not (launch.js)

// ---------------------------------------------------------------- reading the grid

function sweepable() {
  return [...specs.keys()].filter((n) => !HIDDEN.has(n) && n !== OWN_BOX && $(`#f-${n}`));
}

function valueError(message) {
  const e = new Error(message);
  e.sweep = true;
  return e;
}

/** "0.05, 0.1" as the field's values: numbers, booleans or text, as its type says. */
function parseValues(field, text) {
  const spec = specs.get(field);
  return text.split(",").map((t) => t.trim()).filter(Boolean).map((t) => {
    if (spec.nullable && /^(none|null)$/i.test(t)) return null;
    if (spec.type === "integer" || spec.type === "number") {
      const v = Number(t);
      if (!Number.isFinite(v)) throw valueError(`“${t}” is not a number`);
      return v;
    }
    if (spec.type === "boolean") {
      if (/^(true|yes|on)$/i.test(t)) return true;
      if (/^(false|no|off)$/i.test(t)) return false;
      throw valueError(`“${t}” is not true or false`);
    }
    return t;
  });
}

function boxOf(field) {
  if (field === OWN_BOX) return $('.field[data-field="seeds"]');
  return $$("#grid-rows .grid-row").find((r) => r.dataset.field === field) || null;
}

function showError(box, message) {
  const target = box || $("#sweep");
  target.classList.add("invalid");
  const err = box ? box.querySelector(".error") : $("#error-grid");
  err.textContent = err.textContent ? `${err.textContent}; ${message}` : message;
}

function clearSweepErrors() {
  for (const b of [$("#sweep"), ...$$("#sweep .field")]) b.classList.remove("invalid");
  for (const e of $$("#sweep .error")) e.textContent = "";
}

/** The grid typed so far ({field: [values]}; {} for a single run), or null after showing what
 * cannot be read. */
function readGrid() {
  const grid = {};
  let ok = true;
  const read = (field, text, box) => {
    try {
      const values = parseValues(field, text);
      if (!values.length) throw valueError("list at least one value");
      grid[field] = values;
    } catch (e) { showError(box, e.message); ok = false; }
  };
  const seeds = $("#f-seeds").value;
  if (seeds.trim()) read(OWN_BOX, seeds, boxOf(OWN_BOX));
  for (const row of $$("#grid-rows .grid-row")) {
    const field = row.dataset.field;
    const text = row.querySelector(".grid-values").value;
    if (!field && !text.trim()) continue;
    if (!field) { showError(row, "choose the field these values are for"); ok = false; continue; }
    if (field in grid) { showError(row, `${field} is varied twice: list all its values in one row`); ok = false; continue; }
    read(field, text, row);
  }
  return ok ? grid : null;
}

/** Whether the form launches a sweep (any seeds or grid row filled in) rather than one run. */
export function sweeping() {
  return Boolean($("#f-seeds").value.trim()) || $$("#grid-rows .grid-values").some((i) => i.value.trim());
}

// ---------------------------------------------------------------- the grid's rows

function addRow() {
  const id = `grid-${rows++}`;
  const select = h("select", { class: "grid-field", id: `${id}-field`, "aria-label": "Field to vary" },
    h("option", { value: "" }, "field…"),
    ...sweepable().map((n) => h("option", { value: n }, n.replaceAll("_", " "))));
  const values = h("input", {
    class: "grid-values", id: `${id}-values`, "aria-label": "Its values, comma-separated",
    autocomplete: "off", placeholder: "values, comma-separated",
  });
  const row = h("div", { class: "grid-row field", "data-row": id, "data-field": "" },
    h("div", { class: "grid-inputs" }, select, values,
      h("button", { type: "button", class: "secondary small", title: "Stop varying this field", "aria-label": "Remove this row",
        onclick: () => { row.remove(); changed(); } }, "×")),
    h("div", { class: "hint" }), h("div", { class: "error", role: "alert" }));
  select.addEventListener("change", () => {
    row.dataset.field = select.value;
    const spec = specs.get(select.value);
    const box = $(`#f-${select.value}`);
    const choices = box?.tagName === "SELECT" ? Array.from(box.options).filter((o) => !o.disabled && !o.value.startsWith("__")).map((o) => o.value) : null;
    const now = box?.type === "checkbox" ? String(box.checked) : box?.value;
    row.querySelector(".hint").textContent = !spec ? "" : choices ? `one or more of: ${choices.join(", ")}`
      : `${spec.type === "boolean" ? "true, false" : spec.type === "string" ? "text" : `${spec.type}s`}${now ? ` (the form has ${now})` : ""}`;
    values.placeholder = spec?.type === "number" ? "e.g. 0.05, 0.1" : spec?.name === "selector" ? "e.g. uniform, mms" : "values, comma-separated";
  });
  $("#grid-rows").append(row);
  return row;
}

// ---------------------------------------------------------------- the plan

let timer = null;
let asked = 0; // the newest preview request: older answers are dropped

function changed() {
  clearTimeout(timer);
  timer = setTimeout(refresh, PREVIEW_MS);
}

function showCount(count, text) {
  const el = $("#sweep-count");
  el.dataset.count = count === null ? "" : String(count);
  el.textContent = text;
  $("#submit-btn").textContent = count && count > 1 ? `Launch ${count} runs…` : sweeping() ? "Launch sweep…" : "Launch run";
}

function countText(plan) {
  const sizes = plan.varying.map((f) => `${plan.runs.length && new Set(plan.runs.map((r) => JSON.stringify(r.values[f]))).size} ${f}`);
  return `${plan.count} run${plan.count === 1 ? "" : "s"}${sizes.length > 1 ? `: ${sizes.join(" × ")}` : ""}`;
}

/** The body both sweep routes take, or null after showing why the form cannot be read. */
function body() {
  const base = form(); // first: it clears the form's messages, the sweep's among them
  clearSweepErrors();
  const grid = readGrid();
  return grid && base ? { ...base, grid } : null;
}

/** The grid's errors beside their rows; the rest where launch-errors.js puts a run's. While the
 * user types (`focus` false) the keyboard stays where it is. */
function showErrors(err, focus = true) {
  const typing = document.activeElement;
  if (!(err instanceof ApiError) || !Array.isArray(err.detail)) showServerErrors(err, specs);
  else {
    const rest = [];
    for (const d of err.detail) {
      const loc = (d.loc || []).filter((x) => x !== "body");
      const msg = String(d.msg || "invalid").replace(/^Value error, /, "");
      if (loc[0] !== "grid") rest.push(d);
      else showError(loc.length > 1 ? boxOf(String(loc[1])) : null, msg);
    }
    if (rest.length) showServerErrors(new ApiError(err.status, rest), specs);
    else if (focus) $("#sweep .field.invalid input, #sweep .field.invalid select")?.focus();
  }
  if (!focus) typing?.focus();
}

/** The server's plan for body `b`; null when a newer request has been sent meanwhile. */
async function plan(b) {
  const n = ++asked;
  try {
    const answer = await api.post("/api/sweeps/preview", b);
    return n === asked ? answer : null;
  } catch (err) {
    if (n === asked) throw err;
    return null;
  }
}

async function refresh() {
  if (!sweeping()) { clearSweepErrors(); showCount(1, "1 run"); return; }
  const b = body();
  if (!b) { asked++; showCount(null, "fix the values marked above to see the runs"); return; }
  try {
    const p = await plan(b);
    if (p) showCount(p.count, countText(p));
  } catch (err) {
    showCount(null, "cannot launch yet: see the messages above");
    showErrors(err, false);
  }
}

function fmt(v) { return typeof v === "string" ? v : JSON.stringify(v); }

/** What will launch: one row per run, with the values that set it apart. */
function summary(p) {
  const varying = p.varying;
  return h("div", { class: "sweep-summary", "data-testid": "sweep-summary" },
    h("p", {}, `Launch these ${p.count} runs? Each has the form's settings, except:`),
    h("div", { class: "summary-scroll" }, h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, h("th", { class: "num" }, "#"), h("th", { class: "name" }, "name"), ...varying.map((f) => h("th", {}, f)))),
      h("tbody", {}, ...p.runs.map((r, i) => h("tr", {},
        h("td", { class: "num" }, i + 1), h("td", { class: "name" }, r.name || "(run-<id>)"),
        ...varying.map((f) => h("td", { "data-field": f }, fmt(r.values[f])))))))),
    h("p", { class: "muted small" }, "They share a tag sweep:<id>: the runs list opens filtered on it."));
}

/** Preview, confirm with the summary, then queue every run (or none) and open the runs list
 * filtered on the sweep's tag. Returns false when nothing was launched. */
export async function launchSweep() {
  clearTimeout(timer);
  const b = body();
  if (!b) return false;
  let p;
  try {
    p = await plan(b);
  } catch (err) { showErrors(err); return false; }
  if (!p) return false;
  showCount(p.count, countText(p));
  if (!(await confirmDialog(summary(p), { confirmText: `Launch ${p.count} run${p.count === 1 ? "" : "s"}`, danger: false }))) return false;
  try {
    const sweep = await api.post("/api/sweeps", b);
    location.href = `/?q=${encodeURIComponent(tagFilter(sweep.tag))}`;
    return true;
  } catch (err) {
    if (err instanceof ApiError) showErrors(err); else $("#form-error").textContent = errorText(err);
    return false;
  }
}

/** Wire the sweep box; `readForm` gives the run's fields (or null, having shown why not). */
export function wireSweep(readForm) {
  form = readForm;
  $("#grid-add").addEventListener("click", () => addRow().querySelector("select").focus());
  // any change of the form may change the plan (a value a combination breaks): ask again
  $("#launch-form").addEventListener("input", () => { if (sweeping()) changed(); else showCount(1, "1 run"); });
  $("#launch-form").addEventListener("change", () => { if (sweeping()) changed(); });
  addRow();
}
