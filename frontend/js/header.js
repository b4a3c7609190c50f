// header.js — what every page shares at its top: the brand, the navigation with the current page
// marked, and the <head> entries (viewport, no favicon request). Each page holds only
//   <header class="top"><script src="/static/js/header.js"></script></header>
// A classic script, not a module: it runs where it stands while the page is parsed, so the header
// is there from the first paint, with no build step and no server-side template.
// It also applies the remembered theme (<html data-theme>, before the first paint) and holds the
// light/dark toggle; a change is announced as a `themechange` event on window (js/theme.js).

(() => {
  const PAGES = [["/", "Runs"], ["/launch", "Launch"], ["/compare", "Compare"]];
  const header = document.currentScript.parentElement;
  const brand = Object.assign(document.createElement("a"), { className: "brand", href: "/" });
  brand.append("Margin", Object.assign(document.createElement("span"), { textContent: "Scope" }));
  const nav = document.createElement("nav");
  for (const [path, name] of PAGES) {
    const link = Object.assign(document.createElement("a"), { href: path, textContent: name });
    link.classList.toggle("current", path === location.pathname);
    nav.append(link);
  }
  const THEME_KEY = "marginscope.theme";
  const root = document.documentElement;
  const system = matchMedia("(prefers-color-scheme: dark)");
  let saved = null;
  try { saved = localStorage.getItem(THEME_KEY); } catch (_) { /* private mode */ }
  if (saved === "dark" || saved === "light") root.dataset.theme = saved;
  const shown = () => root.dataset.theme || (system.matches ? "dark" : "light");
  const toggle = Object.assign(document.createElement("button"), {
    type: "button", id: "theme-toggle", className: "theme-toggle",
  });
  const label = () => {
    const dark = shown() === "dark";
    toggle.textContent = dark ? "☀" : "☾";
    toggle.title = dark ? "Switch to the light theme" : "Switch to the dark theme";
    toggle.setAttribute("aria-label", toggle.title);
  };
  const announce = () => { label(); window.dispatchEvent(new CustomEvent("themechange", { detail: shown() })); };
  toggle.addEventListener("click", () => {
    root.dataset.theme = shown() === "dark" ? "light" : "dark";
    try { localStorage.setItem(THEME_KEY, root.dataset.theme); } catch (_) { /* private mode */ }
    announce();
  });
  system.addEventListener("change", () => { if (!root.dataset.theme) announce(); });
  label();
  const api = Object.assign(document.createElement("a"), {
    href: "/docs", textContent: "API", className: "api-link", title: "The HTTP API, with its reference (OpenAPI)",
  });
  header.replaceChildren(brand, nav, Object.assign(document.createElement("span"), { className: "spacer" }), api, toggle);

  const viewport = Object.assign(document.createElement("meta"), { name: "viewport", content: "width=device-width, initial-scale=1" });
  const icon = Object.assign(document.createElement("link"), { rel: "icon", href: "data:," });
  document.head.append(viewport, icon);
})();
