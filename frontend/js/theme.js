// theme.js — the plots' side of the page theme. The colours live in css/style.css as custom
// properties (light, dark by the system setting, or forced by <html data-theme>); header.js sets
// data-theme from the toggle and announces each change with a `themechange` event on window.
// Plotly cannot read CSS, so its colours are read from the properties here and a page redraws
// its plots when the event fires.

/** The current theme's plot colours, as Plotly layout fields. */
export function plotTheme() {
  const css = getComputedStyle(document.documentElement);
  const v = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  const grid = v("--plot-grid", "#e5e7eb");
  return {
    paper_bgcolor: v("--plot-bg", "#fff"),
    plot_bgcolor: v("--plot-bg", "#fff"),
    fg: v("--plot-fg", "#222"),
    grid,
    muted: v("--muted", "#5f6b7a"),
  };
}

/** "dark" or "light": what the page shows now (the toggle, else the system setting). */
export function currentTheme() {
  const forced = document.documentElement.dataset.theme;
  if (forced === "dark" || forced === "light") return forced;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

/** Call `redraw` whenever the theme changes (toggle or system setting). */
export function onThemeChange(redraw) {
  window.addEventListener("themechange", () => redraw());
}
