// run-notes.js — a run's tags and notes on its page, editable there (PATCH /api/runs/{id}).
//
// The notes are Markdown, shown rendered (markdown.js: no raw HTML, links only http(s)) and edited
// as text. A refused change (422: a tag too long, text with NUL) is shown beside the field, in the
// server's words, and the field keeps what was typed; nothing is lost to an error.

import { api, errorText } from "./api.js";
import { h, $ } from "./ui.js";
import { renderMarkdown } from "./markdown.js";

/**
 * Wire the card for run `runId`. `onSaved(run)` receives the run the server answered with (the
 * page takes it as the newest); `current()` returns the run the page shows now.
 * Returns `draw()`, which shows the current tags and notes (skipped while the notes are edited).
 */
export function wireNotes(runId, { current, onSaved }) {
  const editing = () => !$("#notes-editor").classList.contains("hidden");

  async function save(fields, errorBox) {
    errorBox.textContent = "";
    try {
      const run = await api.patch(`/api/runs/${runId}`, fields);
      onSaved(run);
      return true;
    } catch (err) {
      errorBox.textContent = `Not saved: ${errorText(err)}`;
      return false;
    }
  }

  function drawTags(run) {
    $("#tag-list").replaceChildren(...(run.tags || []).map((tag) => h("li", { class: "tag", "data-tag": tag }, tag,
      h("button", { type: "button", class: "tag-remove", "aria-label": `Remove tag ${tag}`, title: `Remove tag ${tag}`,
        onclick: () => save({ tags: (current().tags || []).filter((t) => t !== tag) }, $("#tags-error")) }, "×"))));
  }

  function draw() {
    const run = current();
    if (!run) return;
    drawTags(run);
    if (editing()) return;
    const view = $("#notes-view");
    view.replaceChildren(run.notes ? renderMarkdown(run.notes) : h("p", { class: "muted" }, "No notes yet."));
    view.dataset.empty = String(!run.notes);
  }

  function showEditor(on) {
    $("#notes-editor").classList.toggle("hidden", !on);
    $("#notes-view").classList.toggle("hidden", on);
    $("#notes-edit").classList.toggle("hidden", on);
    if (on) { $("#notes-text").value = current()?.notes || ""; $("#notes-text").focus(); }
  }

  $("#tag-add").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("#tag-input");
    const tag = input.value.trim();
    if (!tag) return;
    const tags = current().tags || [];
    if (tags.includes(tag)) { input.value = ""; return; }
    if (await save({ tags: [...tags, tag] }, $("#tags-error"))) input.value = "";
  });
  $("#notes-edit").addEventListener("click", () => showEditor(true));
  $("#notes-cancel").addEventListener("click", () => { $("#notes-error").textContent = ""; showEditor(false); draw(); });
  $("#notes-editor").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (await save({ notes: $("#notes-text").value }, $("#notes-error"))) { showEditor(false); draw(); }
  });
  return draw;
}
