"""FastAPI dependencies as `Annotated` aliases (full-stack-fastapi-template `api/deps.py`).

The app keeps one settings object, one store, one launcher and one live hub on `app.state`
(built in `main.create_app`'s lifespan); routes receive them through `SettingsDep`, `StoreDep`
and `LauncherDep`, so tests can swap any of them with `app.dependency_overrides`.
`TokenDep` guards mutating endpoints when `MARGINSCOPE_TOKEN` is set.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, HTTPException, Request, WebSocket, status

from backend.launcher import Launcher
from backend.settings import Settings
from backend.store import AbstractStore


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_store(request: Request) -> AbstractStore:
    return request.app.state.store  # type: ignore[no-any-return]


def get_launcher(request: Request) -> Launcher:
    return request.app.state.launcher  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[AbstractStore, Depends(get_store)]
LauncherDep = Annotated[Launcher, Depends(get_launcher)]


def token_matches(expected: str | None, given: str | None) -> bool:
    """True when no token is configured, or `given` equals it (constant-time comparison)."""
    if expected is None:
        return True
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


def given_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The token a request or websocket carries: `Authorization: Bearer <t>` first, then `?token=`."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return query.get("token")


def require_token(request: Request, settings: SettingsDep) -> None:
    """401 unless the request carries the configured token (no-op when none is configured)."""
    if not token_matches(settings.token, given_token(request.headers, request.query_params)):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="this server needs its token: send 'Authorization: Bearer <token>' or ?token=<token>",
            headers={"WWW-Authenticate": "Bearer"},
        )


TokenDep = Depends(require_token)


def websocket_token_ok(websocket: WebSocket) -> bool:
    settings: Settings = websocket.app.state.settings
    return token_matches(settings.token, given_token(websocket.headers, websocket.query_params))
