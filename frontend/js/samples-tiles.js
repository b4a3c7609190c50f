// samples-tiles.js — what the samples views share: the API addresses of one run's samples, a
// sample's thumbnail tile, its label → prediction text, and Plotly colours read off the page's
// theme, so the gallery (samples.js), a sample's story, the suspect list and the compare page
// draw a sample the same way.

import { fmtNum } from "./api.js";
import { h } from "./ui.js";

export const samplesUrl = (run) => `/api/runs/${run}/samples`;
export const sampleUrl = (run, index) => `/api/runs/${run}/samples/${index}`;
export const imageUrl = (run, index) => `/api/runs/${run}/samples/${index}/image.png`;
export const suspectsUrl = (run) => `/api/runs/${run}/suspects`;

/** A class's name: the one the item carries, else the run's list, else the class number. */
export function className(names, k, given) {
  if (given !== undefined && given !== null && given !== "") return String(given);
  if (k === null || k === undefined) return "–";
  return names[k] ?? String(k);
}

/** "3 → 5" (label → prediction), in class names. */
export function labelText(names, item) {
  const label = className(names, item.label, item.class_name);
  if (item.prediction === null || item.prediction === undefined) return label;
  return `${label} → ${className(names, item.prediction)}`;
}

export const isWrong = (item) => item.prediction !== null && item.prediction !== undefined && item.prediction !== item.label;

/** The sentence a screen reader reads for a sample (the image's alt text). */
export function altText(names, item) {
  const parts = [`Training sample ${item.index}, labelled ${className(names, item.label, item.class_name)}`];
  if (item.prediction !== null && item.prediction !== undefined) parts.push(`predicted ${className(names, item.prediction)}`);
  if (item.flipped) parts.push("its label was flipped on purpose (label noise)");
  return parts.join(", ");
}

/** A sample's thumbnail. `pixelated`: small images (digits, MNIST) scale up as crisp squares. */
export function sampleImage(run, names, item, { size = 72 } = {}) {
  return h("img", {
    class: "sample-img", src: imageUrl(run, item.index), alt: altText(names, item), width: size, height: size,
    loading: "lazy", decoding: "async", draggable: "false",
  });
}

/**
 * One sample as a focusable tile: its image, label → prediction, MMS, times selected and class.
 * `onOpen(item, tile)` runs on click, Enter or Space (it is a <button>).
 */
export function sampleTile(run, names, item, onOpen) {
  const wrong = isWrong(item);
  const facts = [
    h("span", { class: `sample-label${wrong ? " wrong" : ""}`, title: "label → prediction" }, labelText(names, item)),
  ];
  if (item.mms !== undefined && item.mms !== null) facts.push(h("span", { class: "sample-mms", title: "minimal margin score" }, `MMS ${fmtNum(item.mms, 3)}`));
  if (item.selected !== undefined && item.selected !== null) facts.push(h("span", { class: "sample-sel", title: "times selected for training" }, `selected ×${item.selected}`));
  facts.push(h("span", { class: "sample-class", title: "class" }, `class ${className(names, item.label, item.class_name)}`));
  const tile = h("button", {
    type: "button", class: `sample-tile${wrong ? " wrong" : ""}`, "data-index": item.index, "data-label": item.label,
    "aria-label": `${altText(names, item)}. Open its history.`,
  },
  h("span", { class: "sample-index" }, `#${item.index}`),
  item.flipped ? h("span", { class: "sample-flag", title: "label flipped on purpose (label noise)" }, "flipped") : null,
  sampleImage(run, names, item),
  h("span", { class: "sample-facts" }, ...facts));
  if (onOpen) tile.addEventListener("click", () => onOpen(item, tile));
  return tile;
}

/** A CSS variable of the page's theme (light or dark), for Plotly, which cannot read CSS. */
export function themeColor(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

/** Plotly layout colours that follow the page's theme (its --plot-* variables, light or dark). */
export function themedLayout(lay) {
  const fg = themeColor("--plot-fg", themeColor("--fg", "#1d2330"));
  const card = themeColor("--plot-bg", themeColor("--card", "#ffffff"));
  const grid = themeColor("--plot-grid", themeColor("--border", themeColor("--line", "#dde2e8")));
  const axis = (a) => ({ ...a, gridcolor: grid, linecolor: grid, zerolinecolor: grid });
  const out = { ...lay, paper_bgcolor: card, plot_bgcolor: card, font: { ...(lay.font || {}), color: fg } };
  for (const k of Object.keys(out)) if (/^[xy]axis\d*$/.test(k)) out[k] = axis(out[k]);
  if (out.legend) out.legend = { ...out.legend, bgcolor: "rgba(0,0,0,0)" };
  return out;
}
