"""A dashboard served with a token and protected reads, opened from a link carrying the token in
its fragment: the page reads with the Authorization header, its websocket gets in with the session
cookie, and the token leaves no trace in the address bar or the server's log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import Server, wait_ready

pytestmark = pytest.mark.browser

TOKEN = "browser-test-token-0123456789"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("token-server"))
    srv.env.update(MARGINSCOPE_TOKEN=TOKEN, MARGINSCOPE_PROTECT_READS="1")
    srv.migrate()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _wait_snapshot(page: Any, frames: list[str]) -> None:
    for _ in range(300):
        if any('"snapshot"' in f for f in frames):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"no websocket snapshot; page errors: {page.errors}")


def test_token_from_the_link_fragment_then_the_session_cookie(token_server: Server, page: Any) -> None:
    dialogs: list[str] = []
    frames: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(str(f))))
    page.goto(f"{token_server.url}/#token={TOKEN}")
    wait_ready(page)
    _wait_snapshot(page, frames)  # the handshake got in with the session cookie
    assert "token" not in page.url and not dialogs
    cookie = next(c for c in page.context.cookies() if c["name"] == "marginscope_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"]
    frames.clear()
    page.goto(f"{token_server.url}/")  # a later visit: the remembered token, the same cookie
    wait_ready(page)
    _wait_snapshot(page, frames)
    assert not dialogs
    assert TOKEN not in Path(token_server.log).read_text()
