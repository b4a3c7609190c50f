"""The dashboard's guard: which requests reach the routes, and the headers every answer carries.

The default setup is loopback without a token, so the threat is the user's own browser: any page
it shows can send requests to 127.0.0.1, and a DNS name rebound to 127.0.0.1 makes them
same-origin. `SecurityMiddleware` refuses, before any route runs:

- any request reaching the server on a non-loopback address while no token is set, however the
  socket was bound (`marginscope serve`, or `uvicorn --factory ... --host 0.0.0.0`): 403;
- a `Host` that is neither loopback, an IP literal, the configured host nor in `allowed_hosts`
  (a rebound name): 400;
- an `Origin` other than the server's own or one in `allowed_origins`, on a websocket handshake
  or a mutating request: 403 (no `Origin` at all is not a browser: the CLI, curl, tests);
- a mutating request with a form's content type, the only bodies a foreign page can send
  without asking (urlencoded, multipart, text/plain): 415;
- with a token and `protect_reads`, an /api read without the token: 401.

Credentials: `Authorization: Bearer <token>`, or the session cookie that POST /api/session sets
(HttpOnly, SameSite=Strict), or, on the ingest routes of one run only, that run's credential
(`mint_run_credential`: what a launcher hands the trainer of a run instead of the token). The cookie is taken only where a browser cannot attach a header —
websocket handshakes and reads such as downloads — never for a mutation, so no request a foreign
page can make carries a credential. Tokens never travel in URLs, and the server log redacts any
`token=` a client still puts there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
from urllib.parse import urlsplit

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from marginscope.backend.settings import Settings, get_settings

SESSION_COOKIE = "marginscope_session"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})

# The pages are static ES modules and plotly.js, all from /static; Plotly writes inline styles.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# /docs and /redoc load their bundles from this server (never a CDN) and start them with one inline
# script, allowed by its hash (computed from the page itself, so it follows FastAPI's template).
DOCS_CSP = ("default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; font-src 'self' data:; worker-src blob:; connect-src 'self'; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY",
           "referrer-policy": "no-referrer"}
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


class RefusedToServe(SystemExit):
    """The app factory will not build an app for an unsafe setup. A SystemExit carrying the
    message, so `uvicorn --factory marginscope.backend.main:create_app` prints one line and exits 1."""


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (a name other than localhost counts as public)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def resolve_settings(settings: Settings | None) -> Settings:
    """`settings`, or the environment's; a bad value (a short token) is one line, not a traceback."""
    if settings is not None:
        return settings
    try:
        return get_settings()
    except ValidationError as exc:
        from marginscope.engine.config import describe_validation_error

        raise RefusedToServe(f"error: {describe_validation_error(exc)}") from None


def check_exposure(settings: Settings) -> None:
    """Refuse to serve a non-loopback host without a token (reads and launches would be open)."""
    if not is_loopback(settings.host) and settings.token is None:
        raise RefusedToServe(
            f"refusing to listen on {settings.host} without a token: set MARGINSCOPE_TOKEN "
            "(mutating requests and websockets will need it) or keep --host 127.0.0.1")


# --------------------------------------------------------------------------- credentials


def session_value(token: str) -> str:
    """The session cookie's value: derived from the token, so the cookie never holds the token
    itself, and changing the token ends every session."""
    return hmac.new(token.encode(), b"marginscope session", hashlib.sha256).hexdigest()


def bearer(headers: Headers) -> str | None:
    auth = headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def token_matches(settings: Settings, given: str | None) -> bool:
    """True when no token is set, or `given` is it (constant-time comparison)."""
    if settings.token is None:
        return True
    return given is not None and hmac.compare_digest(given.encode(), settings.token.encode())


RUN_CREDENTIAL_PREFIX = "msr_"  # tells a run's credential from the dashboard's token


def mint_run_credential() -> tuple[str, str]:
    """(a new run credential, its digest to store with the run).

    Why a random secret per attempt whose SHA-256 is stored, rather than an HMAC of the run id
    with a server secret: the database is the state every dashboard on it shares (two dashboards
    on one PostgreSQL database verify each other's runs without sharing a key); a copy of the
    database holds no usable credential; and each start of the run (a resume too) replaces it,
    so a trainer of an earlier attempt, still alive somewhere, can no longer write to the run.
    The secret travels to the trainer only (an environment variable of a local worker, an
    argument of a Dask task), never in a URL or a command line."""
    secret = RUN_CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
    return secret, credential_digest(secret)


def credential_digest(credential: str) -> str:
    return hashlib.sha256(credential.encode()).hexdigest()


def is_run_credential(given: str | None) -> bool:
    return given is not None and given.startswith(RUN_CREDENTIAL_PREFIX)


def run_credential_ok(given: str, digest: str | None) -> bool:
    """Whether `given` is the credential whose digest the run stores (constant-time)."""
    return digest is not None and hmac.compare_digest(credential_digest(given).encode(), digest.encode())


def session_ok(settings: Settings, headers: Headers) -> bool:
    """True when the request carries a valid session cookie (a token is set)."""
    value = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE)
    return (settings.token is not None and value is not None
            and hmac.compare_digest(value.encode(), session_value(settings.token).encode()))


def token_ok(settings: Settings, headers: Headers, *, cookie: bool) -> bool:
    """True when no token is set, or the request carries it: `Authorization: Bearer`, or (where
    `cookie`) the session cookie."""
    if settings.token is None or token_matches(settings, bearer(headers)):
        return True
    return cookie and session_ok(settings, headers)


# --------------------------------------------------------------------------- the middleware


def _host_name(netloc: str) -> str | None:
    try:
        return urlsplit(f"//{netloc}").hostname
    except ValueError:
        return None


class SecurityMiddleware:
    """Refuses what a foreign page or a rebound name could send; adds the security headers."""

    def __init__(self, app: ASGIApp, settings: Settings, docs_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.settings = settings
        self.docs_paths = docs_paths
        self.hosts = {"localhost", settings.host.strip("[]").lower(),
                      *(h.strip("[]").lower() for h in settings.allowed_hosts)}
        self.origins = {o.rstrip("/").lower() for o in settings.allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is not None and scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": refusal[1][:120]})
            return
        if scope["type"] == "http":
            send = self._docs_send(send) if scope["path"] in self.docs_paths else self._page_send(send)
        if refusal is not None:
            status, detail = refusal
            extra = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            await JSONResponse({"detail": detail}, status_code=status, headers=extra)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(status, detail) of the first rule the request breaks, or None."""
        headers = Headers(scope=scope)
        server = scope.get("server")
        if (self.settings.token is None and server and isinstance(server[0], str)
                and _is_ip(server[0]) and not is_loopback(server[0])):
            return 403, (f"this server has no token, so it answers on loopback only (reached on "
                         f"{server[0]}): set MARGINSCOPE_TOKEN to serve a network")
        host = headers.get("host", "")
        name = _host_name(host)
        if not (name and (_is_ip(name) or name in self.hosts or "*" in self.hosts)):
            return 400, (f"Host {host[:100]!r} is not served here (DNS rebinding?): use 127.0.0.1 or "
                         "add the name to MARGINSCOPE_ALLOWED_HOSTS")
        method = scope.get("method", "GET")
        origin = headers.get("origin")
        if origin is not None and (scope["type"] == "websocket" or method in MUTATING):
            own = urlsplit(origin).netloc.lower() == host.lower() if origin != "null" else False
            if not own and origin.rstrip("/").lower() not in self.origins:
                return 403, (f"cross-origin request refused: Origin {origin[:100]!r} is not this server "
                             "(add it to MARGINSCOPE_ALLOWED_ORIGINS to allow it)")
        if method in MUTATING:
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            if media in FORM_TYPES:
                return 415, f"send JSON (Content-Type: application/json), not {media}"
        if (self.settings.protect_reads and scope["type"] == "http" and method not in MUTATING
                and scope["path"].startswith("/api/") and scope["path"] != "/api/session"
                and not token_ok(self.settings, headers, cookie=True)):
            return 401, ("this server protects reads: send 'Authorization: Bearer <token>' or open a "
                         "session (POST /api/session)")
        return None

    def _page_send(self, send: Send) -> Send:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add_headers(message, PAGE_CSP)
            await send(message)
        return with_headers

    def _docs_send(self, send: Send) -> Send:
        """Hold the (small) docs page to allow its inline scripts by hash."""
        start: Message = {}
        body = bytearray()

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'"
                              for s in _INLINE_SCRIPT.findall(bytes(body)))
            _add_headers(start, DOCS_CSP.format(hashes=hashes))
            await send(start)
            await send({"type": "http.response.body", "body": bytes(body)})
        return with_headers


def _add_headers(message: Message, csp: str) -> None:
    message["headers"] = list(message.get("headers", []))
    headers = MutableHeaders(raw=message["headers"])
    headers.setdefault("content-security-policy", csp)
    for name, value in HEADERS.items():
        headers.setdefault(name, value)


# --------------------------------------------------------------------------- logs

_TOKEN_IN_URL = re.compile(r"((?:[?&]|%3[fF]|%26)(?:access_)?token(?:=|%3[dD]))[^&\s\"']*", re.I)


def redact(text: str) -> str:
    return _TOKEN_IN_URL.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    """Blanks `token=` values in uvicorn's log lines (the access log prints every query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_tokens_in_logs() -> None:
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


def install(app: FastAPI, settings: Settings) -> None:
    """Refuse an unsafe setup now (in the factory, whoever calls it); guard every request."""
    check_exposure(settings)
    docs = tuple(p for p in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if p)
    app.add_middleware(SecurityMiddleware, settings=settings, docs_paths=docs)
    redact_tokens_in_logs()
