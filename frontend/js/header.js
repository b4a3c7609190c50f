// header.js — what every page shares at its top: the brand, the navigation with the current page
// marked, and the <head> entries (viewport, no favicon request). Each page holds only
//   <header class="top"><script src="/static/js/header.js"></script></header>
// A classic script, not a module: it runs where it stands while the page is parsed, so the header
// is there from the first paint, with no build step and no server-side template.

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
  header.replaceChildren(brand, nav);

  const viewport = Object.assign(document.createElement("meta"), { name: "viewport", content: "width=device-width, initial-scale=1" });
  const icon = Object.assign(document.createElement("link"), { rel: "icon", href: "data:," });
  document.head.append(viewport, icon);
})();
