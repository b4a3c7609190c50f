"""The FastAPI app: settings, store, launcher and live hub in the lifespan; routers; error handlers.

This module only assembles (full-stack-fastapi-template `app/main.py`). `create_app(settings)` is
what `marginscope serve`, the tests and `uvicorn --factory marginscope.backend.main:create_app` use; it
refuses a non-loopback host without a token, or a token under 16 characters. Start-up
refuses an out-of-date schema (the store raises SchemaOutOfDate naming `marginscope db upgrade`).
Store errors become JSON answers (404/409/422), never a traceback page; anything unexpected is
logged and answered with a JSON 500. Request limits (body size, how much of a bad input a 422
shows) are backend/limits.py's.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from sqlalchemy.engine import make_url
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from marginscope.backend import security
from marginscope.backend.launcher import Launcher
from marginscope.backend.limits import BodySizeLimit, validation_detail
from marginscope.backend.live import LiveHub
from marginscope.backend.routes import (
    compare,
    export,
    ingest,
    live,
    metrics,
    options,
    pages,
    runs,
    samples,
    session,
    sweeps,
)
from marginscope.backend.settings import Settings, get_settings
from marginscope.backend.store import (
    Conflict,
    InvalidArgument,
    RunNotFound,
    SchemaOutOfDate,
    StoreError,
    open_store,
)

log = logging.getLogger(__name__)

HTTP_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")  # what a 405's Allow may name


class ServedAddress:
    """Learns the port this server really listens on from its first request (ASGI's
    `scope["server"]`) and hands it to the local executor, whose workers report to it.

    `marginscope serve` sets MARGINSCOPE_PORT itself, but an app served by `uvicorn --factory
    marginscope.backend.main:create_app --port 9000` only knows its settings' port (8000 unless
    MARGINSCOPE_PORT says otherwise): its workers would report to nothing. The first request fixes
    that (a launch from the page or the API always comes after one); a difference is logged once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.learned = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.learned and scope["type"] in ("http", "websocket") and scope.get("server"):
            self.learned = True
            launcher = getattr(scope["app"].state, "launcher", None)
            executor = getattr(launcher, "executor", None)
            settings: Settings = scope["app"].state.settings
            port = int(scope["server"][1])
            if hasattr(executor, "server_url") and port != settings.port:
                executor.server_url = settings.model_copy(update={"port": port}).local_url
                log.warning("serving on port %d, not MARGINSCOPE_PORT=%d: workers report to %s "
                            "(set MARGINSCOPE_PORT to silence this)", port, settings.port,
                            executor.server_url)
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None, *, supervise: bool = True) -> FastAPI:
    """The app. `supervise=False` keeps the launcher's thread off (API tests: nothing is spawned)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        conf = settings or get_settings()
        conf.data_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(conf, check_pages=True)  # raises SchemaOutOfDate: `marginscope db upgrade`
        launcher = Launcher(store, conf)
        hub = LiveHub(store)
        app.state.settings, app.state.store = conf, store
        app.state.launcher, app.state.hub = launcher, hub
        if supervise:
            launcher.start()
        await hub.start()
        log.info("MarginScope serving %s (data dir %s)",
                 make_url(conf.db_url).render_as_string(hide_password=True), conf.data_dir)
        try:
            yield
        finally:
            await hub.stop()
            launcher.stop()
            store.close()

    # /docs and /redoc are pages.py's (their assets served from this machine, not a CDN)
    app = FastAPI(title="MarginScope", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Selective sampling by Minimal Margin Score: launch, watch and compare "
                              "training runs. The contract is docs/api.md.")
    for router in (runs.router, sweeps.router, metrics.router, export.router, compare.router, samples.router,
                   options.router, ingest.router, live.router, pages.router):
        app.include_router(router)
    pages.mount_static(app)
    app.docs_url, app.redoc_url = "/docs", "/redoc"  # what the security middleware names docs pages
    _add_error_handlers(app)

    # Security (backend/security.py): refuse an exposed server without a token here, in the
    # factory; Host/Origin/content-type checks and security headers on every request; the
    # session cookie websockets and downloads use instead of a token in the URL.
    settings = security.resolve_settings(settings)
    security.install(app, settings)
    app.include_router(session.router)

    # --- request limits: a body over settings.max_body_bytes is refused (413) before any route runs
    app.add_middleware(BodySizeLimit)
    app.add_middleware(ServedAddress)
    # --- compression, outermost: every other layer sees the plain body (the docs pages' CSP
    # hashes their inline script); plotly.js goes out at a fifth of its size. Binary downloads (a
    # checkpoint) go as they are: they hardly shrink, and keep their Content-Length
    app.add_middleware(GZipMiddleware, minimum_size=1024,
                       exclude_content_types=(*DEFAULT_EXCLUDED_CONTENT_TYPES, "application/octet-stream"))
    return app


def _add_error_handlers(app: FastAPI) -> None:
    async def invalid_request(_: Request, exc: Exception) -> JSONResponse:
        # FastAPI's list, with short excerpts of the input instead of the whole of it
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        return JSONResponse({"detail": validation_detail(errors)}, status_code=422)

    app.add_exception_handler(RequestValidationError, invalid_request)

    async def invalid_argument(_: Request, exc: Exception) -> JSONResponse:
        # the store's refusal as a one-item validation list: every 422 has the same shape
        field = getattr(exc, "field", None)
        loc = [int(p) if p.isdigit() else p for p in field.split(".")] if field else []
        return JSONResponse({"detail": validation_detail([{"type": "value_error", "loc": loc,
                                                           "msg": str(exc)}])}, status_code=422)

    app.add_exception_handler(InvalidArgument, invalid_argument)

    async def http_error(request: Request, exc: Exception) -> Response:
        # Starlette's 405 names only the methods of the first route on the path: name them all
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            allowed = [m for m in HTTP_METHODS if any(
                route.matches({**request.scope, "method": m})[0] == Match.FULL
                for route in request.app.router.routes)]
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
        if exc.status_code == 404 and pages.wants_page(request):  # a mistyped address in a browser
            return pages.not_found(request, f"There is no page at {request.url.path}.", heading="Page not found")
        return await http_exception_handler(request, exc)

    app.add_exception_handler(StarletteHTTPException, http_error)

    def answer(code: int):  # type: ignore[no-untyped-def]
        async def handler(_: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=code)
        return handler

    app.add_exception_handler(RunNotFound, answer(404))
    app.add_exception_handler(Conflict, answer(409))
    app.add_exception_handler(SchemaOutOfDate, answer(503))

    async def store_error(_: Request, exc: Exception) -> JSONResponse:
        log.error("store error: %s", exc, exc_info=exc)
        return JSONResponse({"detail": "database error; see the server log"}, status_code=500)

    app.add_exception_handler(StoreError, store_error)

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error: %s", exc, exc_info=exc)
        return JSONResponse({"detail": "internal error; see the server log"}, status_code=500)

    app.add_exception_handler(Exception, unexpected)
