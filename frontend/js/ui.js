// ui.js — small DOM helpers shared by the pages: element builder, confirmation dialog,
// toast messages, the connection banner and status badges.

import { escapeHtml } from "./api.js";

/** Create an element: h("button", {class: "x", onclick: f}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "html") el.innerHTML = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/** A modal yes/no question (a sentence, or an element such as a summary); resolves true when
 * confirmed. */
export function confirmDialog(message, { confirmText = "Confirm", danger = true } = {}) {
  return new Promise((resolve) => {
    const dlg = h("dialog", { class: "confirm", "data-testid": "confirm-dialog" },
      message instanceof Node ? message : h("p", {}, message),
      h("div", { class: "dialog-buttons" },
        h("button", { type: "button", class: "secondary", value: "cancel" }, "Keep"),
        h("button", { type: "button", class: danger ? "danger" : "primary", value: "ok", autofocus: true }, confirmText)));
    dlg.addEventListener("click", (ev) => {
      const b = ev.target.closest("button");
      if (b) { dlg.close(b.value); }
    });
    dlg.addEventListener("close", () => { resolve(dlg.returnValue === "ok"); dlg.remove(); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** A short message in the corner (errors stay longer). */
export function toast(message, kind = "info") {
  let box = $("#toasts");
  if (!box) { box = h("div", { id: "toasts", "aria-live": "polite" }); document.body.append(box); }
  const t = h("div", { class: `toast ${kind}` }, message);
  box.append(t);
  setTimeout(() => t.remove(), kind === "error" ? 8000 : 3500);
}

/** Show or hide the "connection lost" banner at the top of the page. */
export function connectionBanner(connected) {
  let b = $("#conn-banner");
  if (!b) {
    b = h("div", { id: "conn-banner", role: "status", hidden: true },
      "Connection to the server lost — reconnecting… (missed updates will be caught up)");
    document.body.prepend(b);
  }
  b.hidden = connected;
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${escapeHtml(status)}`, "data-status": status }, status);
}

/** Fill a <select> with one option per value (labelled by `names`, else the value itself) after
 * any options the page wrote itself (e.g. "any status"), and select `current`. */
export function fillSelect(select, values, { names = {}, current = select.value } = {}) {
  select.querySelectorAll("option[data-from-server]").forEach((o) => o.remove());
  select.append(...values.map((v) => h("option", { value: v, "data-from-server": true }, names[v] ?? v)));
  select.value = current;
}
