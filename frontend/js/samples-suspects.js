// samples-suspects.js — the run's suspect labels: samples whose history marks them as likely
// mislabelled, ranked by the server's rule (GET /api/runs/{id}/suspects, the rule's text shown
// above the list), with CSV and JSON downloads of the same list so a user can fix their data set.

import { api, errorText, fmtNum, query } from "./api.js";
import { h, $ } from "./ui.js";
import { suspectsUrl, sampleImage, className, isWrong } from "./samples-tiles.js";

export const SUSPECTS_SHOWN = 50; // rows on the page; the downloads hold EXPORT_LIMIT
export const EXPORT_LIMIT = 500;

/** Point the export links at the API (the browser downloads with the session cookie). */
export function wireExports(run) {
  $("#suspects-csv").href = suspectsUrl(run) + query({ format: "csv", limit: EXPORT_LIMIT });
  $("#suspects-json").href = suspectsUrl(run) + query({ format: "json", limit: EXPORT_LIMIT });
}

/** Fetch and draw the list; `onOpen(item, row)` opens a sample's story. */
export async function loadSuspects(run, names, onOpen) {
  let res;
  try {
    res = await api.get(suspectsUrl(run), { format: "json", limit: SUSPECTS_SHOWN });
  } catch (err) {
    $("#suspects-rule").textContent = `Could not load the suspects: ${errorText(err)}`;
    return null;
  }
  drawSuspects(run, names, res, onOpen);
  return res;
}

function drawSuspects(run, names, res, onOpen) {
  $("#suspects-rule").textContent = res.rule ? `Rule: ${res.rule}` : "";
  const items = res.items || [];
  const hasFlipped = items.some((it) => it.flipped !== undefined && it.flipped !== null);
  $("#suspects-empty").classList.toggle("hidden", items.length > 0);
  $("#suspects-table").classList.toggle("hidden", !items.length);
  $("#suspects-flipped-head").classList.toggle("hidden", !hasFlipped);
  $("#suspects-table tbody").replaceChildren(...items.map((it, i) => {
    const open = h("button", { type: "button", class: "link-like", "aria-label": `Open the history of sample ${it.index}` }, `#${it.index}`);
    open.addEventListener("click", () => onOpen(it, open));
    return h("tr", { "data-index": it.index },
      h("td", { class: "num opt" }, String(i + 1)),
      h("td", { class: "thumb" }, sampleImage(run, names, it, { size: 36 })),
      h("td", {}, open),
      h("td", { class: isWrong(it) ? "wrong" : "" }, `${className(names, it.label)} → ${className(names, it.prediction)}`),
      h("td", { class: "num" }, fmtNum(it.score, 3)),
      h("td", { class: "num" }, fmtNum(it.selected)),
      h("td", { class: "num opt" }, fmtNum(it.mean_mms, 3)),
      hasFlipped ? h("td", {}, it.flipped ? "yes" : "no") : null);
  }));
}
