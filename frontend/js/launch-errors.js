// launch-errors.js — the launch form's errors, each beside the field it is about: a field's own
// check, or a 422 from the server (its `loc` names the field); what names no field goes above the
// Launch button.

import { ApiError, errorText } from "./api.js";
import { $, $$ } from "./ui.js";

export function clearError(name) {
  const block = $(`.field[data-field="${CSS.escape(name)}"]`);
  if (!block) return;
  block.classList.remove("invalid");
  const e = block.querySelector(".error");
  if (e) e.textContent = "";
}

export function clearErrors() {
  for (const b of $$(".field.invalid")) b.classList.remove("invalid");
  for (const e of $$(".field .error")) e.textContent = "";
  $("#form-error").textContent = "";
}

export function showFieldError(field, message) {
  const block = $(`.field[data-field="${CSS.escape(field)}"]`);
  if (!block) return false;
  block.classList.add("invalid");
  const err = block.querySelector(".error");
  err.textContent = err.textContent ? `${err.textContent}; ${message}` : message;
  const details = block.closest("details");
  if (details) details.open = true;
  return true;
}

/** Place a 422's messages beside their fields (`fields`: the form's field names); the rest go
 * above the button. */
export function showServerErrors(err, fields, runLabel = "") {
  const leftovers = [];
  if (err instanceof ApiError && Array.isArray(err.detail)) {
    for (const d of err.detail) {
      const loc = (d.loc || []).filter((x) => x !== "body");
      const msg = String(d.msg || "invalid").replace(/^Value error, /, "");
      let placed = false;
      if (loc[0] === "config" && loc.length >= 2) {
        placed = loc[1] === "selector_options" && loc.length >= 3 ? showFieldError(`selector_options.${loc[2]}`, msg) : showFieldError(String(loc[1]), msg);
      } else if (["name", "tags", "notes"].includes(loc[0])) placed = showFieldError(loc[0], msg);
      // a check across fields (the config's own validator) names its field first: put it there
      const named = !placed && msg.match(/^([a-z_]+) \(/);
      if (named && fields.has(named[1])) placed = showFieldError(named[1], msg);
      if (!placed) leftovers.push(loc.length > 1 ? `${loc.slice(1).join(".")}: ${msg}` : msg);
    }
  } else leftovers.push(errorText(err));
  if (leftovers.length) $("#form-error").textContent = `${runLabel}${leftovers.join("; ")}`;
  const first = $(".field.invalid input, .field.invalid select, .field.invalid textarea");
  if (first) first.focus();
}
