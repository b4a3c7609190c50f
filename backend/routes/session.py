"""The browser's session: a cookie that stands for the token where a page cannot send a header.

A page sends `Authorization: Bearer <token>` on its REST calls, but a websocket handshake and a
download link carry no custom header, and a token in their URL would land in logs and history.
POST /api/session with the token in the body sets an HttpOnly, SameSite=Strict cookie derived from
it (`security.session_value`); websockets and reads accept it, mutations do not (backend/security.py).
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from marginscope.backend.deps import SettingsDep
from marginscope.backend.schemas import BODY_ERRORS, errors
from marginscope.backend.security import SESSION_COOKIE, session_ok, session_value, token_matches

router = APIRouter(prefix="/api/session", tags=["session"])


class SessionOpen(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(max_length=1000)


class SessionPublic(BaseModel):
    token_required: bool
    authenticated: bool
    reads_protected: bool


@router.get("")
def session_state(request: Request, settings: SettingsDep) -> SessionPublic:
    """Whether this server needs a token, and whether this browser's session cookie is valid
    (the cookie alone: a page sending its token as a header still needs the cookie for websockets)."""
    return SessionPublic(token_required=settings.token is not None,
                         authenticated=session_ok(settings, request.headers),
                         reads_protected=settings.token is not None and settings.protect_reads)


@router.post("", status_code=status.HTTP_204_NO_CONTENT, responses=errors(*BODY_ERRORS, 401))
def open_session(body: SessionOpen, request: Request, response: Response,
                 settings: SettingsDep) -> None:
    """Set the session cookie (nothing to do on a server without a token)."""
    if settings.token is None:
        return
    if not token_matches(settings, body.token):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="wrong token")
    response.set_cookie(SESSION_COOKIE, session_value(settings.token), httponly=True,
                        samesite="strict", secure=request.url.scheme == "https", path="/")


@router.delete("", status_code=status.HTTP_204_NO_CONTENT)
def close_session(response: Response) -> None:
    """Forget the session cookie."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")

