"""Websocket routes: a run's live stream and the runs list's status stream (see backend/live.py).

Bad input closes the handshake with `WebSocketException` (policy violation, 1008) before accepting:
a missing or wrong token (an `Authorization` header, or the session cookie of POST /api/session;
never the URL), an unknown run. A foreign `Origin` or `Host` is refused earlier, by
backend/security.py's middleware. A malformed id or `since` is rejected by FastAPI's own
validation the same way.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, WebSocket, WebSocketException, status

from marginscope.backend.deps import websocket_token_ok
from marginscope.backend.live import LiveHub

router = APIRouter(prefix="/ws", tags=["live"])


def _hub(websocket: WebSocket) -> LiveHub:
    return websocket.app.state.hub  # type: ignore[no-any-return]


def _check_token(websocket: WebSocket) -> None:
    if not websocket_token_ok(websocket):
        raise WebSocketException(status.WS_1008_POLICY_VIOLATION, reason="token required: open a session (POST /api/session) or send Authorization: Bearer")


@router.websocket("/runs")
async def runs_stream(websocket: WebSocket) -> None:
    """Status changes of all runs: a snapshot, then one message per change."""
    _check_token(websocket)
    await _hub(websocket).serve_runs(websocket)


@router.websocket("/runs/{run_id}")
async def run_stream(websocket: WebSocket, run_id: int,
                     since: int | None = Query(None, ge=0)) -> None:
    """One run: a snapshot (unless `since` is given), then numbered deltas."""
    _check_token(websocket)
    await _hub(websocket).serve_run(websocket, run_id, since)
