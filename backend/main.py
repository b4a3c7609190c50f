"""The FastAPI app: settings, store, launcher and live hub in the lifespan; routers; error handlers.

This module only assembles (full-stack-fastapi-template `app/main.py`). `create_app(settings)` is
what `marginscope serve`, the tests and `uvicorn --factory backend.main:create_app` use; it
refuses a non-loopback host without a token, or a token under 16 characters. Start-up
refuses an out-of-date schema (the store raises SchemaOutOfDate naming `marginscope db upgrade`).
Store errors become JSON answers (404/409/422), never a traceback page; anything unexpected is
logged and answered with a JSON 500.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.engine import make_url

from backend import security
from backend.launcher import Launcher
from backend.live import LiveHub
from backend.routes import compare, export, live, metrics, options, pages, runs, session
from backend.settings import Settings, get_settings
from backend.store import (
    Conflict,
    InvalidArgument,
    RunNotFound,
    SchemaOutOfDate,
    StoreError,
    open_store,
)
from backend.store.db import json_safe

log = logging.getLogger(__name__)


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

    app = FastAPI(title="MarginScope", version="0.1.0", lifespan=lifespan,
                  description="Selective sampling by Minimal Margin Score: launch, watch and compare "
                              "training runs. The contract is docs/api.md.")
    for router in (runs.router, metrics.router, export.router, compare.router, options.router,
                   live.router, pages.router):
        app.include_router(router)
    pages.mount_static(app)
    _add_error_handlers(app)

    # Security (backend/security.py): refuse an exposed server without a token here, in the
    # factory; Host/Origin/content-type checks and security headers on every request; the
    # session cookie websockets and downloads use instead of a token in the URL.
    settings = security.resolve_settings(settings)
    security.install(app, settings)
    app.include_router(session.router)

    return app


def _add_error_handlers(app: FastAPI) -> None:
    async def invalid_request(_: Request, exc: Exception) -> JSONResponse:
        # FastAPI's own handler, but strict JSON: a NaN in the body must not turn the 422 into a 500
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        return JSONResponse({"detail": json_safe(jsonable_encoder(errors))}, status_code=422)

    app.add_exception_handler(RequestValidationError, invalid_request)

    def answer(code: int):  # type: ignore[no-untyped-def]
        async def handler(_: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=code)
        return handler

    app.add_exception_handler(RunNotFound, answer(404))
    app.add_exception_handler(Conflict, answer(409))
    app.add_exception_handler(InvalidArgument, answer(422))
    app.add_exception_handler(SchemaOutOfDate, answer(503))

    async def store_error(_: Request, exc: Exception) -> JSONResponse:
        log.error("store error: %s", exc, exc_info=exc)
        return JSONResponse({"detail": "database error; see the server log"}, status_code=500)

    app.add_exception_handler(StoreError, store_error)

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error: %s", exc, exc_info=exc)
        return JSONResponse({"detail": "internal error; see the server log"}, status_code=500)

    app.add_exception_handler(Exception, unexpected)
