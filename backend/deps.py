"""FastAPI dependencies as `Annotated` aliases (full-stack-fastapi-template `api/deps.py`).

The app keeps one settings object, one store, one launcher and one live hub on `app.state`
(built in `main.create_app`'s lifespan); routes receive them through `SettingsDep`, `StoreDep`,
`LauncherDep` and `HubDep`, so tests can swap any of them with `app.dependency_overrides`.
`TokenDep` guards mutating endpoints when `MARGINSCOPE_TOKEN` is set (the other checks, and reads
under `protect_reads`, are backend/security.py's middleware). `RunReportDep` guards the ingest
routes of one run (`/api/ingest/runs/{run_id}/...`): the token, or that run's own credential.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, WebSocket, status

from marginscope.backend.launcher import Launcher
from marginscope.backend.live import LiveHub
from marginscope.backend.security import bearer, is_run_credential, run_credential_ok, token_ok
from marginscope.backend.settings import Settings
from marginscope.backend.store import AbstractStore, RunNotFound


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_store(request: Request) -> AbstractStore:
    return request.app.state.store  # type: ignore[no-any-return]


def get_launcher(request: Request) -> Launcher:
    return request.app.state.launcher  # type: ignore[no-any-return]


def get_hub(request: Request) -> LiveHub:
    return request.app.state.hub  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[AbstractStore, Depends(get_store)]
LauncherDep = Annotated[Launcher, Depends(get_launcher)]
HubDep = Annotated[LiveHub, Depends(get_hub)]


def require_token(request: Request, settings: SettingsDep) -> None:
    """401 unless the request carries the configured token in its `Authorization` header (no-op
    when none is configured). Mutations never take the session cookie: a foreign page's request
    could carry it, never a header."""
    if not token_ok(settings, request.headers, cookie=False):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="this server needs its token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


TokenDep = Depends(require_token)


def require_run_report(run_id: int, request: Request, settings: SettingsDep, store: StoreDep) -> None:
    """The trainer of run `run_id` may report: it carries that run's current credential, or the
    dashboard's token (what `require_token` takes). A run credential is checked whenever one is
    sent, token or not, so a trainer of an earlier attempt (its credential replaced at the
    resume) is refused even on a server without a token; it opens no other route (those check
    the token alone)."""
    given = bearer(request.headers)
    if is_run_credential(given):
        assert given is not None
        try:
            digest = store.credential_digest(run_id)
        except RunNotFound:
            digest = None  # a 401 like a wrong credential: it tells nothing about other runs
        if not run_credential_ok(given, digest):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail=f"this run credential does not report run {run_id} (a credential reports only "
                       "the run, and the attempt, it was issued for)",
                headers={"WWW-Authenticate": "Bearer"})
        return
    require_token(request, settings)


RunReportDep = Depends(require_run_report)


def websocket_token_ok(websocket: WebSocket) -> bool:
    """A handshake carries the token as a header (scripts) or the session cookie (pages)."""
    settings: Settings = websocket.app.state.settings
    return token_ok(settings, websocket.headers, cookie=True)
