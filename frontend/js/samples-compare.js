// samples-compare.js — the compare page's "Hardest samples: overlap" block: for two runs on the same
// data, the share of their hardest sets they have in common and the images in one but not the other
// (GET /api/compare/samples?runs=A,B&k=; a run's hardest set = the k samples it selected most often). The runs are the page's (its address's `runs`); the first
// two are compared until the user picks others. compare.js rewrites the address as the user adds or
// removes runs, so this block watches it.

import { api, errorText, fmtNum, fmtPct } from "./api.js";
import { h, $ } from "./ui.js";
import { sampleTile } from "./samples-tiles.js";
import { openStory } from "./samples-story.js";

const SHOWN = 24; // tiles per side before "Show all"
const REFRESH_MS = 10_000; // runs that still train change their hardest sets

const st = { runs: [], a: null, b: null, k: 100, names: [], res: null, shown: { a: SHOWN, b: SHOWN } };
let lastSearch = null;
let request = 0;

function runsInAddress() {
  const raw = new URLSearchParams(location.search).get("runs") || "";
  return [...new Set(raw.split(",").map((s) => Number(s.trim())).filter((n) => Number.isInteger(n) && n > 0))];
}

function fillPickers() {
  for (const [id, key] of [["#overlap-a", "a"], ["#overlap-b", "b"]]) {
    const sel = $(id);
    sel.replaceChildren(...st.runs.map((r) => h("option", { value: r }, `#${r}`)));
    sel.value = String(st[key]);
  }
}

function onAddress() {
  if (location.search === lastSearch) return;
  lastSearch = location.search;
  const runs = runsInAddress();
  st.runs = runs;
  $("#samples-overlap").classList.toggle("hidden", runs.length < 2);
  if (runs.length < 2) return;
  if (!runs.includes(st.a)) st.a = runs[0];
  if (!runs.includes(st.b) || st.b === st.a) st.b = runs.find((r) => r !== st.a);
  fillPickers();
  load();
}

async function load() {
  if (st.a === null || st.b === null || st.a === st.b) {
    $("#overlap-summary").textContent = "Pick two different runs.";
    return;
  }
  const mine = ++request;
  const [a, b, k] = [st.a, st.b, st.k];
  let res;
  try {
    const [r, sel] = await Promise.all([
      api.get("/api/compare/samples", { runs: `${a},${b}`, k }),
      st.names.length ? null : api.get(`/api/runs/${a}/selection`, { max_points: 1 }).catch(() => null),
    ]);
    res = r;
    if (sel?.class_names?.length) st.names = sel.class_names;
  } catch (err) {
    if (mine !== request) return;
    st.res = null;
    $("#overlap-summary").textContent = `No overlap to show: ${errorText(err)}`;
    $("#overlap-grid-a").replaceChildren();
    $("#overlap-grid-b").replaceChildren();
    $("#samples-overlap").dataset.state = "error";
    return;
  }
  if (mine !== request) return;
  st.res = { ...res, a, b, k };
  render();
}

/** The items only run `id` has; the API names the two sides by run id (or A/B). */
function only(res, id, side) {
  const o = res.only || {};
  return o[String(id)] ?? o[side] ?? [];
}

function render() {
  const res = st.res;
  const onlyA = only(res, res.a, "A");
  const onlyB = only(res, res.b, "B");
  const box = $("#samples-overlap");
  box.dataset.state = "ready";
  box.dataset.count = String(res.count ?? "");
  $("#overlap-summary").replaceChildren(
    h("span", {}, h("b", { "data-testid": "overlap-share" }, fmtPct(res.overlap, 0)), " of the hardest sets in common"),
    h("span", {}, h("b", { "data-testid": "overlap-count" }, fmtNum(res.count)), ` samples among the ${res.k} hardest of both runs`),
    h("span", { class: "muted" }, `${onlyA.length} only in #${res.a}, ${onlyB.length} only in #${res.b}`),
    h("span", { class: "muted small" }, "a run's hardest set: the samples its selector chose most often"));
  drawSide("a", res.a, onlyA);
  drawSide("b", res.b, onlyB);
}

function drawSide(side, run, items) {
  $(`#overlap-title-${side}`).textContent = `Only in #${run} (${items.length})`;
  const grid = $(`#overlap-grid-${side}`);
  const tiles = items.slice(0, st.shown[side]).map((it) => h("li", {}, sampleTile(run, st.names, it, (item, tile) => openStory(run, st.names, item, tile))));
  if (items.length > st.shown[side]) {
    tiles.push(h("li", {}, h("button", {
      type: "button", class: "secondary small", onclick: () => { st.shown[side] = Infinity; drawSide(side, run, items); },
    }, `Show all ${items.length}`)));
  }
  if (!items.length) tiles.push(h("li", { class: "muted" }, "none"));
  grid.replaceChildren(...tiles);
}

function init() {
  if (!$("#samples-overlap")) return;
  $("#overlap-a").addEventListener("change", (ev) => { st.a = Number(ev.target.value); st.names = []; load(); });
  $("#overlap-b").addEventListener("change", (ev) => { st.b = Number(ev.target.value); load(); });
  $("#overlap-k").addEventListener("change", (ev) => { st.k = Number(ev.target.value); st.shown = { a: SHOWN, b: SHOWN }; load(); });
  onAddress();
  setInterval(onAddress, 500);
  setInterval(() => { if (!document.hidden && st.runs.length >= 2) load(); }, REFRESH_MS);
}

init();
