// samples-story.js — one sample's story, in a modal dialog: the image large, its margin and the
// model's prediction over the run, and the steps at which the selector chose it
// (GET /api/runs/{id}/samples/{index}). Escape or "Close" shuts it and gives the focus back to the
// tile that opened it.

/* global Plotly */

import { api, errorText, fmtNum } from "./api.js";
import { h, $ } from "./ui.js";
import { layout, draw } from "./plots.js";
import { sampleUrl, imageUrl, className, altText, themedLayout, themeColor } from "./samples-tiles.js";

let dialog = null;
let opener = null;
let current = null; // the index shown, so a late answer for another sample is dropped

function build() {
  dialog = h("dialog", { id: "sample-story", class: "sample-story", "aria-labelledby": "story-title", "data-testid": "sample-story" },
    h("div", { class: "story-head" },
      h("h2", { id: "story-title" }, "Sample"),
      h("span", { class: "spacer" }),
      h("button", { type: "button", class: "secondary small", id: "story-close", "aria-label": "Close the sample's story" }, "Close")),
    h("div", { class: "story-body" },
      h("figure", { class: "story-figure" },
        h("img", { id: "story-img", class: "sample-img", alt: "", width: 168, height: 168 }),
        h("figcaption", { id: "story-facts", class: "story-facts" })),
      h("div", { class: "story-plot-wrap" },
        h("div", { id: "story-plot", class: "story-plot", "data-testid": "story-plot" }),
        h("p", { id: "story-note", class: "muted small", role: "status" }))));
  $("#story-close", dialog).addEventListener("click", () => dialog.close());
  // a click on the backdrop (outside the dialog's box) closes it too
  dialog.addEventListener("click", (ev) => { if (ev.target === dialog) dialog.close(); });
  dialog.addEventListener("close", () => {
    current = null;
    shown = null;
    const plot = $("#story-plot", dialog);
    if (plot && window.Plotly) Plotly.purge(plot);
    // the gallery may have been redrawn meanwhile: focus the same sample's new tile
    const back = opener?.isConnected ? opener : opener && document.querySelector(`.sample-tile[data-index="${opener.dataset.index}"]`);
    if (back) back.focus();
    opener = null;
  });
  document.body.append(dialog);
}

function fact(label, value) {
  return h("div", {}, h("span", { class: "muted" }, label), " ", h("b", {}, value));
}

/** Open the story of sample `item.index` of run `run` (`names`: the run's class names). */
export async function openStory(run, names, item, from = null) {
  if (!dialog) build();
  opener = from;
  current = item.index;
  $("#story-title", dialog).textContent = `Sample #${item.index}`;
  const img = $("#story-img", dialog);
  img.src = imageUrl(run, item.index);
  img.alt = altText(names, item);
  $("#story-facts", dialog).replaceChildren(fact("label", className(names, item.label, item.class_name)));
  $("#story-note", dialog).textContent = "loading its history…";
  $("#story-plot", dialog).replaceChildren();
  if (!dialog.open) dialog.showModal();
  let story;
  try {
    story = await api.get(sampleUrl(run, item.index));
  } catch (err) {
    if (current === item.index) $("#story-note", dialog).textContent = `Could not load this sample's history: ${errorText(err)}`;
    return;
  }
  if (current !== item.index || !dialog.open) return;
  showStory(names, story);
}

let shown = null; // [names, story] on screen, redrawn when the theme changes
window.addEventListener("themechange", () => { if (dialog?.open && shown) drawStory(...shown); });

function showStory(names, s) {
  shown = [names, s];
  const hist = s.history || [];
  const sel = s.selected || [];
  const last = hist[hist.length - 1];
  const label = className(names, s.label, s.class_name);
  const facts = [
    fact("label", label),
    fact("latest prediction", last ? className(names, last.prediction) : "–"),
    fact("latest MMS", last ? fmtNum(last.mms, 4) : "–"),
    fact("times selected", fmtNum(s.selected_total ?? sel.reduce((a, r) => a + r.count, 0))),
    fact("scored at", `${hist.length} logged step${hist.length === 1 ? "" : "s"}`),
  ];
  if (s.flipped) facts.push(h("div", { class: "sample-flag inline" }, "label flipped on purpose (label noise)"));
  $("#story-facts", dialog).replaceChildren(...facts);
  $("#story-img", dialog).alt = altText(names, { ...s, prediction: last?.prediction });
  $("#story-note", dialog).textContent = hist.length
    ? `At each logged snapshot that names it (among the lowest-margin samples, or selected since the previous one). Top: its minimal margin score (lower = closer to flipping). Middle: what the model predicted (red = not its label ${label}). Bottom: how often it was selected in the steps up to that snapshot.`
    : "No logged snapshot names this sample yet: it has not been among the lowest-margin samples nor selected.";
  drawStory(names, s);
}

function drawStory(names, s) {
  const hist = s.history || [];
  const sel = s.selected || [];
  const steps = hist.map((r) => r.step);
  const bad = themeColor("--danger", "#c62828");
  const accent = themeColor("--accent", "#2563eb");
  const muted = themeColor("--muted", "#5f6b7a");
  const classes = [...new Set([s.label, ...hist.map((r) => r.prediction)].filter((k) => k !== null && k !== undefined))].sort((a, b) => a - b);
  const traces = [
    {
      type: "scatter", mode: hist.length < 60 ? "lines+markers" : "lines", x: steps, y: hist.map((r) => r.mms),
      name: "MMS", line: { color: accent, width: 1.8 }, marker: { size: 5 }, xaxis: "x", yaxis: "y",
      hovertemplate: "step %{x}: MMS %{y:.4g}<extra></extra>",
    },
    {
      type: "scatter", mode: "markers", x: steps, y: hist.map((r) => classes.indexOf(r.prediction)), name: "prediction",
      marker: { size: 7, symbol: "square", color: hist.map((r) => (r.prediction === s.label ? accent : bad)) },
      text: hist.map((r) => className(names, r.prediction)), xaxis: "x", yaxis: "y2",
      hovertemplate: "step %{x}: predicted %{text}<extra></extra>",
    },
    {
      type: "bar", x: sel.map((r) => r.step), y: sel.map((r) => r.count), name: "selected",
      marker: { color: muted }, xaxis: "x", yaxis: "y3",
      hovertemplate: "selected %{y}× in the steps up to %{x}<extra></extra>",
    },
  ];
  const maxCount = Math.max(1, ...sel.map((r) => r.count));
  const positive = hist.length && hist.every((r) => r.mms > 0);
  const lay = themedLayout(layout("", "step (optimizer steps)", "", {
    showlegend: false,
    margin: { l: 64, r: 12, t: 12, b: 44 },
    yaxis: { title: { text: "MMS" }, domain: [0.56, 1], type: positive ? "log" : "linear", exponentformat: "power" },
    // the classes it was predicted as (and its label), evenly spaced whatever their numbers
    yaxis2: {
      title: { text: "pred." }, domain: [0.3, 0.5], automargin: true, zeroline: false,
      tickvals: classes.map((_, i) => i), ticktext: classes.map((k) => className(names, k)),
      range: [-0.6, Math.max(0, classes.length - 1) + 0.6],
    },
    yaxis3: { title: { text: "sel." }, domain: [0, 0.22], automargin: true, zeroline: false, rangemode: "tozero", dtick: Math.max(1, Math.ceil(maxCount / 3)) },
    shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y2", y0: classes.indexOf(s.label), y1: classes.indexOf(s.label), line: { color: muted, width: 1, dash: "dot" } }],
  }));
  lay.xaxis = { ...lay.xaxis, anchor: "y3" };
  return draw($("#story-plot", dialog), traces, lay);
}
