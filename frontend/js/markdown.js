// markdown.js — a run's notes as Markdown, rendered safely: the text is parsed into DOM nodes
// built with createElement and text nodes, never innerHTML, so HTML in a note shows as the
// characters typed and no script or handler can run. Links go only to absolute http(s) addresses
// (no javascript:, data:, or relative ones), in a new tab without the opener or a referrer.
//
// The subset: paragraphs (lines joined), headings (#..###), bullet (-, *, +) and numbered lists,
// quotes (>), fenced code (```), inline `code`, **bold**, *italic* / _italic_, [text](url) and
// bare http(s) addresses.

import { h } from "./ui.js";

/** `href` when it is an absolute http(s) address, else null. */
export function safeHref(href) {
  try {
    const url = new URL(href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch (_) {
    return null;
  }
}

const INLINE = /(`[^`\n]+`)|(\*\*[^\n]+?\*\*)|(\*[^*\s][^*\n]*\*|_[^_\s][^_\n]*_)|(\[[^\]\n]*\]\([^)\s]*\))|(https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"])/;

function link(text, href) {
  const safe = safeHref(href);
  if (!safe) return document.createTextNode(text === href ? text : `${text} (${href})`);
  return h("a", { href: safe, target: "_blank", rel: "noopener noreferrer nofollow" }, text);
}

/** Inline Markdown as a list of nodes. */
export function inline(text) {
  const out = [];
  let rest = text;
  while (rest) {
    const m = INLINE.exec(rest);
    if (!m) { out.push(document.createTextNode(rest)); break; }
    if (m.index) out.push(document.createTextNode(rest.slice(0, m.index)));
    const [tok, code, bold, em, md] = m;
    if (code) out.push(h("code", {}, code.slice(1, -1)));
    else if (bold) out.push(h("strong", {}, ...inline(bold.slice(2, -2))));
    else if (em) out.push(h("em", {}, ...inline(em.slice(1, -1))));
    else if (md) {
      const close = md.indexOf("](");
      out.push(link(md.slice(1, close), md.slice(close + 2, -1)));
    } else out.push(link(tok, tok));
    rest = rest.slice(m.index + tok.length);
  }
  return out;
}

const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBERED = /^\s*\d+[.)]\s+(.*)$/;
const HEADING = /^(#{1,6})\s+(.*)$/;

/** Markdown text as a fragment of safe DOM nodes. */
export function renderMarkdown(text) {
  const lines = String(text ?? "").replace(/\r\n?/g, "\n").split("\n");
  const frag = document.createDocumentFragment();
  let i = 0;
  const gather = (test) => {
    const items = [];
    while (i < lines.length && test(lines[i])) items.push(lines[i++]);
    return items;
  };
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i += 1; continue; }
    if (line.trimStart().startsWith("```")) {
      i += 1;
      const body = gather((l) => !l.trimStart().startsWith("```"));
      i += 1; // the closing fence (or the end)
      frag.append(h("pre", {}, h("code", {}, body.join("\n"))));
    } else if (HEADING.test(line)) {
      const [, hashes, title] = HEADING.exec(line);
      frag.append(h(`h${Math.min(6, hashes.length + 2)}`, {}, ...inline(title))); // under the page's own headings
      i += 1;
    } else if (BULLET.test(line) || NUMBERED.test(line)) {
      const pattern = BULLET.test(line) ? BULLET : NUMBERED;
      const items = gather((l) => pattern.test(l));
      frag.append(h(pattern === BULLET ? "ul" : "ol", {}, ...items.map((l) => h("li", {}, ...inline(pattern.exec(l)[1])))));
    } else if (line.trimStart().startsWith(">")) {
      const quoted = gather((l) => l.trimStart().startsWith(">")).map((l) => l.trimStart().slice(1).trim());
      frag.append(h("blockquote", {}, ...inline(quoted.join(" "))));
    } else {
      const para = gather((l) => l.trim() && !HEADING.test(l) && !BULLET.test(l) && !NUMBERED.test(l) && !l.trimStart().startsWith("```") && !l.trimStart().startsWith(">"));
      frag.append(h("p", {}, ...inline(para.map((l) => l.trim()).join(" "))));
    }
  }
  return frag;
}
