// api.js — the page side of docs/api.md: JSON requests, errors, and self-healing websockets.
//
// Every page imports this module rather than calling fetch/WebSocket directly, so the token,
// the error shape ({"detail": ...}) and the reconnect-with-?since= rule live in one place.
// The token never goes into a URL: REST sends `Authorization: Bearer`, websockets and downloads
// carry the session cookie of POST /api/session (docs/api.md, "Access").

const TOKEN_KEY = "marginscope.token";

/**
 * The access token of a server started with MARGINSCOPE_TOKEN: from the page address's
 * `#token=...` (a fragment never reaches the server, so never its log; it is then removed from
 * the address bar), else the one this browser remembered.
 */
function readToken() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    remember(fromHash);
    history.replaceState(null, "", location.pathname + location.search);
    return fromHash;
  }
  try { return localStorage.getItem(TOKEN_KEY); } catch (_) { return null; }
}
function remember(token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token); else localStorage.removeItem(TOKEN_KEY);
  } catch (_) { /* private mode */ }
}
function askToken() {
  TOKEN = window.prompt("This MarginScope server needs its access token (MARGINSCOPE_TOKEN):") || null;
  remember(TOKEN);
  return TOKEN;
}
let TOKEN = readToken();

/** An HTTP error from the API, carrying the status and the server's `detail`. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

/** Build a query string, skipping null/undefined/"" values. */
export function query(params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === "") continue;
    q.set(k, Array.isArray(v) ? v.join(",") : String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

async function request(method, path, { params, body } = {}, retried = false) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const sent = TOKEN;
  if (sent) headers.Authorization = `Bearer ${sent}`;
  const res = await fetch(path + query(params), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return null;
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch (_) { data = text; }
  }
  if (res.status === 401 && !retried) {
    // The server was started with MARGINSCOPE_TOKEN: ask once (unless another request just
    // did), remember it, open the session websockets and downloads use, and try again.
    if (TOKEN === sent || !TOKEN) askToken();
    if (TOKEN) {
      sessionRequest = null;
      await session().catch(() => {});
      return request(method, path, { params, body }, true);
    }
  }
  if (!res.ok) {
    const detail = data && typeof data === "object" && "detail" in data ? data.detail : data;
    throw new ApiError(res.status, detail || res.statusText);
  }
  return data;
}

export const api = {
  get: (path, params) => request("GET", path, { params }),
  head: (path) => request("HEAD", path), // whether a download is there, without fetching it
  post: (path, body, params) => request("POST", path, { body: body ?? {}, params }),
  patch: (path, body) => request("PATCH", path, { body }),
  del: (path) => request("DELETE", path),
};

let sessionRequest = null;

/**
 * The session cookie (POST /api/session, HttpOnly) that websockets and download links carry,
 * since they cannot send the Authorization header and a token in their URL would be logged.
 * Asked once per page, and only of a server with a token: asks the user when no token is known
 * or the known one is wrong.
 */
export function session() {
  sessionRequest ||= (async () => {
    const state = await api.get("/api/session");
    if (!state.token_required || state.authenticated) return;
    for (let attempt = 0; attempt < 2; attempt++) {
      if (!TOKEN && !askToken()) return;
      const res = await fetch("/api/session", {
        method: "POST",
        headers: { Accept: "application/json", "Content-Type": "application/json" },
        body: JSON.stringify({ token: TOKEN }),
      });
      if (res.ok) return;
      if (res.status !== 401) throw new ApiError(res.status, res.statusText);
      TOKEN = null; // a wrong or outdated token: forget it and ask
      remember(null);
    }
  })().catch((err) => { sessionRequest = null; throw err; });
  return sessionRequest;
}
session().catch(() => { /* the page's own requests report a server that does not answer */ });

let optionsRequest = null;

/** GET /api/options, fetched once per page (a failed request is asked again by the next call). */
function options() {
  optionsRequest ||= api.get("/api/options").catch((err) => { optionsRequest = null; throw err; });
  return optionsRequest;
}

/**
 * The server's names for counters (= x axes), populations, quantile keys and run statuses
 * (GET /api/options `vocabulary`).
 */
export function vocabulary() {
  return options().then((o) => o.vocabulary);
}

/**
 * The selectors that draw a candidate pool of B (GET /api/options `selectors[].uses_candidates`);
 * the others (uniform) train on the b samples they draw, so B does not apply to their runs.
 */
export function pooledSelectors() {
  return options().then((o) => new Set(o.selectors.filter((s) => s.uses_candidates).map((s) => s.name)));
}

/** A human sentence from an ApiError's detail (string, or FastAPI's validation list). */
export function errorText(err) {
  if (!(err instanceof ApiError)) return String(err && err.message ? err.message : err);
  const d = err.detail;
  if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).slice(-1)[0] ?? ""}: ${e.msg}`).join("; ");
  if (d && typeof d === "object") return JSON.stringify(d);
  return String(d);
}

const RUN_DELETED = 4404; // close code of a run's stream when the run is deleted (docs/api.md)

/**
 * A websocket that reconnects by itself.
 *
 * `path` is e.g. "/ws/runs/3"; `since()` returns the last seq seen (or null) and is sent as
 * `?since=` on every reconnect so the server sends exactly the rows the page missed.
 * `onStatus(connected: bool)` drives the page's "connection lost" banner. `onRefused()` hears of
 * an attempt that never opened: a refused handshake (unknown run, bad token) reaches the browser
 * only as a failed connection, so the page asks the REST API why.
 */
export function liveSocket(path, { onMessage, onStatus = () => {}, onRefused = () => {}, since = () => null }) {
  let ws = null;
  let closedByUs = false;
  let retry = 0;
  let timer = null;
  let everOpened = false;

  function url() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const s = since();
    return `${proto}//${location.host}${path}${query({ since: s })}`;
  }

  async function connect() {
    timer = null;
    await session().catch(() => {}); // the handshake carries the session cookie, if one is needed
    if (closedByUs) return;
    ws = new WebSocket(url());
    let opened = false;
    ws.onopen = () => { retry = 0; opened = everOpened = true; onStatus(true); };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (_) { return; }
      onMessage(msg, performance.now());
    };
    ws.onclose = (ev) => {
      ws = null;
      if (closedByUs) return;
      // the run was deleted while we watched: retrying will not help
      if (ev.code === RUN_DELETED) { onStatus(false, ev); return; }
      if (everOpened) onStatus(false, ev);
      if (!opened) { sessionRequest = null; onRefused(); } // a refused handshake: check the session again
      const delay = Math.min(5000, 250 * 2 ** retry++);
      timer = setTimeout(connect, delay);
    };
    ws.onerror = () => { /* onclose follows and handles the retry */ };
  }

  connect();
  return {
    close() { closedByUs = true; if (timer) clearTimeout(timer); if (ws) ws.close(); },
    /** Drop the connection as if the network failed (used by the banner's "reconnect now"). */
    reconnect() { if (ws) ws.close(); else if (timer) { clearTimeout(timer); connect(); } },
  };
}

// ---------------------------------------------------------------- formatting

export function fmtNum(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return v.toFixed(digits);
}

export function fmtPct(v, digits = 2) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return `${(100 * v).toFixed(digits)}%`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  return `${h}h ${String(m % 60).padStart(2, "0")}m`;
}

/** Parse the API's ISO 8601 UTC strings (with or without a zone suffix). */
export function parseTime(iso) {
  if (!iso) return null;
  const hasZone = /[zZ]|[+-]\d\d:?\d\d$/.test(iso);
  const t = Date.parse(hasZone ? iso : `${iso}Z`);
  return Number.isNaN(t) ? null : t;
}

export function fmtDate(iso) {
  const t = parseTime(iso);
  if (t === null) return "–";
  const d = new Date(t);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export const ACTIVE = new Set(["queued", "running"]);
export const isActive = (status) => ACTIVE.has(status);

export function escapeHtml(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
