// compare-plots.js — the compare page's plots: the chosen metric and the loss (one line per run,
// or a band per group), the MMS distributions at one step, and the median MMS over time.

import { fmtNum, fmtPct } from "./api.js";
import { $ } from "./ui.js";
import { runColor, runLabel, X_AXES, layout, draw, binCentres, logFriendly, shares, nearestIndex, sideLegend, logAxis, smoothed } from "./plots.js";
import { bandTraces } from "./groups.js";
import { plotTheme } from "./theme.js";
import { state, data, runsById, currentGroups, accuracyKey } from "./compare-state.js";

function curveTraces(cmp) {
  if (!cmp) return [];
  const byId = runsById();
  return state.runs.filter((id) => cmp.series[String(id)]).flatMap((id) => {
    const s = cmp.series[String(id)];
    const run = byId.get(id) || { id };
    return smoothed({
      type: "scatter", mode: s.x.length < 60 ? "lines+markers" : "lines", x: s.x, y: s.y,
      name: runLabel(run) + (id === state.baseline ? " — baseline" : ""),
      line: { color: runColor(id), width: id === state.baseline ? 2.5 : 1.8 }, marker: { size: 4 },
      hovertemplate: `%{y:.4g}<extra>${runLabel(run).replace(/[<>]/g, "")}</extra>`,
    }, state.smooth);
  });
}

/** One band and mean line per group, when grouping is on; else one line per run. */
function seriesTraces(cmp) {
  const groups = currentGroups();
  if (!groups || !cmp) return curveTraces(cmp);
  return groups.flatMap((g) => bandTraces(g, cmp.series, { band: state.band, smooth: state.smooth, baseline: g.baseline }));
}

export async function drawCurves() {
  const xt = X_AXES[state.x];
  const cmp = data.cmp;
  const accLike = accuracyKey();
  const accTitle = state.key === "val/accuracy" ? "Validation accuracy" : state.key;
  const muted = plotTheme().muted;
  const targetLine = cmp && cmp.target !== null ? [{ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: cmp.target, y1: cmp.target, line: { color: muted, dash: "dot", width: 1 } }] : [];
  const targetNote = cmp && cmp.target !== null ? [{ xref: "paper", x: 0, y: cmp.target, yref: "y", text: `target ${accLike ? fmtPct(cmp.target) : fmtNum(cmp.target)}`, showarrow: false, xanchor: "left", yanchor: "bottom", font: { size: 10, color: muted } }] : [];
  // before the first evaluation: say so, on a sensible empty range (not −100% … 400%)
  const empty = (c) => !c || !Object.values(c.series).some((s) => s.x.length);
  const waiting = (c) => (empty(c) ? [{ text: "waiting for the runs' first values…", xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false, font: { color: muted, size: 13 } }] : []);
  const accEmpty = empty(cmp);
  const accTraces = seriesTraces(cmp);
  const lossTraces = seriesTraces(data.loss);
  const legend = sideLegend(currentGroups()?.length ?? state.runs.length); // one entry per group, else per run
  await Promise.all([
    draw("acc-plot", accTraces, layout(accTitle, xt, accLike ? "accuracy" : state.key, {
      yaxis: accLike ? { tickformat: ".1%", ...(accEmpty ? { range: [0, 1] } : {}) } : {},
      xaxis: accEmpty ? { range: [0, 1] } : {},
      shapes: targetLine, annotations: [...targetNote, ...waiting(cmp)], hovermode: "x unified", ...legend,
    }), { toggleLog: true }),
    draw("loss-plot", lossTraces, layout(data.loss?.key === "train/loss" ? "Training-batch loss" : "Validation loss", xt, "cross-entropy (nats)", {
      yaxis: empty(data.loss) ? { range: [0, 1] } : logAxis(lossTraces.flatMap((t) => t.y || [])),
      xaxis: empty(data.loss) ? { range: [0, 1] } : {},
      annotations: waiting(data.loss), hovermode: "x unified", ...legend,
    }), { toggleLog: true }),
  ]);
  document.getElementById("acc-plot").dataset.bands = String(accTraces.filter((t) => t.meta === "band").length);
}

/** The slider's positions: the union of the runs' logged steps (or epochs). */
export function sliderPositions() {
  const key = state.align === "epoch" ? "epochs" : "steps";
  const all = new Set();
  for (const id of state.runs) for (const v of data.hist[id]?.[key] || []) all.add(v);
  return [...all].sort((a, b) => a - b);
}

export function drawDistributions() {
  const pos = sliderPositions();
  const slider = $("#dist-slider");
  slider.max = String(Math.max(0, pos.length - 1));
  slider.disabled = pos.length < 2;
  if (!pos.length) {
    $("#dist-label").textContent = "no histograms yet";
    return draw("dist-plot", [], layout("MMS distributions", "minimal margin score", "share", {}));
  }
  const idx = state.at === null ? pos.length - 1 : nearestIndex(pos, state.at);
  slider.value = String(idx);
  const at = pos[idx];
  $("#dist-label").textContent = state.align === "epoch" ? `epoch ${fmtNum(at, 2)}` : `step ${at}`;
  const byId = runsById();
  const runsWith = state.runs.filter((id) => data.hist[id]?.steps?.length);
  const traces = [];
  const side = state.mode === "side" && runsWith.length > 1;
  let centres = [];
  runsWith.forEach((id, k) => {
    const H = data.hist[id];
    centres = binCentres(H.edges);
    const arr = state.align === "epoch" ? H.epochs : H.steps;
    const i = nearestIndex(arr, at);
    const run = byId.get(id) || { id };
    const axis = side ? (k === 0 ? "" : String(k + 1)) : "";
    traces.push({
      type: "scatter", mode: "lines", x: centres, y: shares(H.counts[i]),
      line: { shape: "hvh", color: runColor(id), width: 1.6 }, fill: "tozeroy",
      fillcolor: `${runColor(id)}33`,
      name: `${runLabel(run)} @ step ${H.steps[i]}`,
      xaxis: `x${axis}`, yaxis: `y${axis}`,
      hovertemplate: `MMS ≈ %{x:.3g}: %{y:.2%}<extra>${runLabel(run).replace(/[<>]/g, "")}</extra>`,
    });
  });
  const xType = logFriendly(centres) ? "log" : "linear";
  const title = `MMS distribution of ${state.pop} at ${state.align} ${state.align === "epoch" ? fmtNum(at, 2) : at}`;
  const lay = layout(title, "minimal margin score", "share of population", {
    xaxis: { type: xType, exponentformat: "power", dtick: xType === "log" ? 1 : undefined }, yaxis: { tickformat: ".0%", rangemode: "tozero" },
    ...sideLegend(traces.length),
  });
  if (side) {
    // a phone stacks the panels (side by side their tick labels would overlap)
    const stacked = window.innerWidth < 640;
    lay.grid = stacked ? { rows: runsWith.length, columns: 1, pattern: "independent" } : { rows: 1, columns: runsWith.length, pattern: "independent" };
    if (stacked) lay.height = Math.max(300, 220 * runsWith.length) + 18 * traces.length; // panels + legend lines
    runsWith.forEach((id, k) => {
      if (k === 0) return;
      lay[`xaxis${k + 1}`] = { type: xType, exponentformat: "power", dtick: xType === "log" ? 1 : undefined, title: { text: "minimal margin score" }, matches: "x" };
      lay[`yaxis${k + 1}`] = { tickformat: ".0%", matches: "y" };
    });
  }
  return draw("dist-plot", traces, lay);
}

export function drawMedians() {
  const byId = runsById();
  const traces = [];
  for (const id of state.runs) {
    let s = data.median[id];
    if (!s || !s.x?.length) {
      // Fallback: the histogram quantiles (available on step / epoch / wall-clock axes).
      const H = data.hist[id];
      const xs = H && { step: H.steps, epoch: H.epochs, wall_time: H.wall_time }[state.x];
      if (!H || !xs || !H.quantiles?.p50) continue;
      s = { x: xs, y: H.quantiles.p50 };
    }
    const run = byId.get(id) || { id };
    traces.push({
      type: "scatter", mode: "lines", x: s.x, y: s.y.map((v) => (v > 0 ? v : null)), name: runLabel(run),
      line: { color: runColor(id), width: 1.8 },
    });
  }
  return draw("median-plot", traces, layout(`Median MMS of ${state.pop} over time`, X_AXES[state.x], "median MMS", {
    yaxis: logAxis(traces.flatMap((t) => t.y)), hovermode: "x unified", ...sideLegend(traces.length),
  }), { toggleLog: true });
}
