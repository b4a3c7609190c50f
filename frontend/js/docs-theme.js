// docs-theme.js — the API reference pages (/docs, /redoc) follow the dashboard's light/dark
// toggle: the choice header.js remembered is put on <html data-theme>, which css/docs-dark.css
// reads. A classic script in <head>, so the page never flashes the other theme.
(() => {
  let saved = null;
  try { saved = localStorage.getItem("marginscope.theme"); } catch (_) { /* private mode */ }
  if (saved === "dark" || saved === "light") document.documentElement.dataset.theme = saved;
})();
