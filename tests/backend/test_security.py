"""What a foreign web page, a rebound DNS name or a careless setup can do to the dashboard: nothing.

In-process tests drive the real app as a browser would (Origin, Host, content types, cookies);
two subprocess tests check what only a real process shows: `uvicorn --factory` refusing an unsafe
setup in one line, and the access log of a real server holding no token after a page's calls.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import TINY, TOKEN, create
from fastapi.testclient import TestClient
from pydantic import ValidationError
from servers import DashboardProcess, free_port
from starlette.websockets import WebSocketDisconnect

from marginscope.backend.main import create_app
from marginscope.backend.security import SESSION_COOKIE, RefusedToServe, is_loopback
from marginscope.backend.settings import Settings

pytest_plugins = ["api_fixtures"]

REPO = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FOREIGN = "http://evil.example"


def _client(settings: Settings, base_url: str = "http://testserver", **update: object) -> TestClient:
    return TestClient(create_app(settings.model_copy(update=update), supervise=False), base_url=base_url)


def _ws_refused(client: TestClient, path: str, **kw: object) -> int:
    with pytest.raises(WebSocketDisconnect) as exc, client.websocket_connect(path, **kw) as ws:
        ws.receive_json()
    return exc.value.code


# --------------------------------------------------------------------------- Origin and forms (11)


def test_a_foreign_page_cannot_drive_the_dashboard(client: TestClient) -> None:
    run = create(client)
    rid = run["id"]
    # a cross-site form post (what <form action=... method=post> sends), and a fetch() with no-cors
    form = client.post(f"/api/runs/{rid}/cancel", data={"x": "1"}, headers={"Origin": FOREIGN})
    assert form.status_code == 403 and "Origin" in form.json()["detail"]
    for origin in (FOREIGN, "null", "http://testserver.evil.example"):
        r = client.post("/api/runs", json={"config": TINY}, headers={"Origin": origin})
        assert r.status_code == 403, origin
    assert client.delete(f"/api/runs/{rid}", headers={"Origin": FOREIGN}).status_code == 403
    assert client.patch(f"/api/runs/{rid}", json={"notes": "x"}, headers={"Origin": FOREIGN}).status_code == 403
    assert client.get(f"/api/runs/{rid}").json()["status"] == "queued"
    assert client.get("/api/runs").json()["count"] == 1
    # reads stay open, as on loopback by design; the server's own page may do everything
    assert client.get("/api/runs", headers={"Origin": FOREIGN}).status_code == 200
    own = client.post(f"/api/runs/{rid}/cancel", json={}, headers={"Origin": "http://testserver"})
    assert own.status_code == 200 and own.json()["status"] == "cancelled"


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "text/plain;charset=UTF-8"])
def test_simple_cross_site_bodies_are_refused_even_without_origin(client: TestClient,
                                                                  content_type: str) -> None:
    rid = create(client)["id"]
    body = '{"config": {"dataset": "digits"}}'
    for method, path in (("POST", "/api/runs"), ("POST", f"/api/runs/{rid}/cancel"),
                         ("PATCH", f"/api/runs/{rid}"), ("DELETE", f"/api/runs/{rid}")):
        r = client.request(method, path, content=body, headers={"Content-Type": content_type})
        assert r.status_code == 415, (method, path, r.text)
        assert "application/json" in r.json()["detail"]
    assert client.get(f"/api/runs/{rid}").json()["status"] == "queued"


def test_websockets_check_origin(client: TestClient) -> None:
    rid = create(client)["id"]
    for path in ("/ws/runs", f"/ws/runs/{rid}"):
        assert _ws_refused(client, path, headers={"Origin": FOREIGN}) == 1008
        with client.websocket_connect(path, headers={"Origin": "http://testserver"}) as ws:
            assert ws.receive_json()["type"] == "snapshot"


def test_allowed_origins_are_configurable(settings: Settings) -> None:
    with _client(settings, allowed_origins=["https://ops.example:8443"]) as c:
        assert c.post("/api/runs", json={"config": TINY},
                      headers={"Origin": "https://ops.example:8443"}).status_code == 201
        assert c.post("/api/runs", json={"config": TINY},
                      headers={"Origin": "https://ops.example"}).status_code == 403


# --------------------------------------------------------------------------- Host (11: DNS rebinding)


def test_a_rebound_host_name_is_refused(settings: Settings) -> None:
    with _client(settings, allowed_hosts=[]) as c:
        for host in ("evil.example", "evil.example:8000", "localhost.evil.example", ""):
            r = c.get("/api/runs", headers={"Host": host})
            assert r.status_code == 400 and "MARGINSCOPE_ALLOWED_HOSTS" in r.json()["detail"], host
        assert _ws_refused(c, "/ws/runs", headers={"Host": "evil.example:8000"}) == 1008
        for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST", "192.168.1.5:8000"):
            assert c.get("/api/runs", headers={"Host": host}).status_code == 200, host
    with _client(settings, allowed_hosts=["dash.example"]) as c:
        assert c.get("/api/runs", headers={"Host": "dash.example:8000"}).status_code == 200
        assert c.get("/api/runs", headers={"Host": "evil.example"}).status_code == 400
    with _client(settings, allowed_hosts=["*"]) as c:
        assert c.get("/api/runs", headers={"Host": "anything.example"}).status_code == 200


def test_allowed_hosts_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARGINSCOPE_ALLOWED_HOSTS", "a.example, b.example")
    monkeypatch.setenv("MARGINSCOPE_ALLOWED_ORIGINS", "https://a.example")
    s = Settings()  # type: ignore[call-arg]
    assert s.allowed_hosts == ["a.example", "b.example"] and s.allowed_origins == ["https://a.example"]


# --------------------------------------------------------------------------- exposure and tokens (13)


def test_loopback_hosts() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.0.0.2", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.com"))


def test_the_app_factory_refuses_a_public_host_without_a_token(settings: Settings) -> None:
    with pytest.raises(RefusedToServe, match="MARGINSCOPE_TOKEN"):
        create_app(settings.model_copy(update={"host": "0.0.0.0"}), supervise=False)
    create_app(settings.model_copy(update={"host": "0.0.0.0", "token": TOKEN}), supervise=False)


def test_a_request_on_a_public_address_needs_a_token(settings: Settings) -> None:
    """However the socket was bound (`uvicorn --host 0.0.0.0` bypasses the settings' host), a
    server without a token answers only what arrives on loopback."""
    with _client(settings, base_url="http://192.0.2.10:8000") as c:
        r = c.get("/api/runs")
        assert r.status_code == 403 and "MARGINSCOPE_TOKEN" in r.json()["detail"]
        assert _ws_refused(c, "ws://192.0.2.10:8000/ws/runs") == 1008
    with _client(settings, base_url="http://192.0.2.10:8000", token=TOKEN) as c:
        assert c.get("/api/runs").status_code == 200


def test_a_short_token_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 16 characters") as exc:
        Settings(token="x" * 15)
    assert "x" * 15 not in str(exc.value)  # the error never echoes the token
    assert Settings(token="x" * 16).token == "x" * 16
    assert Settings(token="").token is None


def test_protect_reads(settings: Settings) -> None:
    with _client(settings, token=TOKEN) as c:  # by default reads stay open
        assert c.get("/api/runs").status_code == 200
    with _client(settings, token=TOKEN, protect_reads=True) as c:
        rid = c.post("/api/runs", json={"config": TINY}, headers=AUTH).json()["id"]
        for path in ("/api/runs", f"/api/runs/{rid}", f"/api/runs/{rid}/logs", "/api/options",
                     f"/api/runs/{rid}/export?format=json", f"/api/runs/{rid}/metrics"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
            assert c.get(path, headers=AUTH).status_code == 200, path
        assert c.get("/").status_code == 200  # the page loads, then asks for the token
        assert c.get("/api/session").json() == {"token_required": True, "authenticated": False,
                                                "reads_protected": True}
        assert c.post("/api/session", json={"token": TOKEN}).status_code == 204
        assert c.get(f"/api/runs/{rid}/export?format=csv").status_code == 200  # a download link


# --------------------------------------------------------------------------- the session cookie (12)


def test_session_cookie_stands_for_the_token_on_websockets_only_for_reads(settings: Settings) -> None:
    with _client(settings, token=TOKEN) as c:
        rid = c.post("/api/runs", json={"config": TINY}, headers=AUTH).json()["id"]
        assert c.post("/api/session", json={"token": "wrong-token-wrong-token"}).status_code == 401
        assert SESSION_COOKIE not in c.cookies
        assert _ws_refused(c, "/ws/runs") == 1008
        # the page sends its token as a header, yet has no cookie for its websockets
        assert c.get("/api/session", headers=AUTH).json()["authenticated"] is False
        r = c.post("/api/session", json={"token": TOKEN})
        assert r.status_code == 204
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert TOKEN not in cookie  # derived from the token, not the token
        assert c.get("/api/session").json()["authenticated"] is True
        with c.websocket_connect(f"/ws/runs/{rid}") as ws:
            assert ws.receive_json()["type"] == "snapshot"
        # a cookie rides along on any request to the server: it never authorises a mutation
        assert c.post(f"/api/runs/{rid}/cancel", json={}).status_code == 401
        assert c.delete("/api/session").status_code == 204
        assert _ws_refused(c, "/ws/runs") == 1008


def test_the_page_never_puts_the_token_in_a_url() -> None:
    for js in (REPO / "frontend" / "js").glob("*.js"):
        text = js.read_text()
        assert not re.search(r"[?&]token=|tokenQuery|query\([^)]*token|params\.token\s*=|"
                             r"(search\)|params)\.get\(\"token\"\)", text), js.name


# --------------------------------------------------------------------------- headers (13)


def _csp_hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def test_security_headers_on_every_response(client: TestClient) -> None:
    rid = create(client)["id"]
    answers = [client.get(p) for p in ("/", "/launch", f"/runs/{rid}", "/compare", "/static/js/api.js",
                                       "/api/runs", "/api/runs/999", "/openapi.json", "/docs")]
    answers += [client.get("/", headers={"Host": "evil.example"}),
                client.post("/api/runs", json={}, headers={"Origin": FOREIGN})]
    for r in answers:
        assert r.headers["x-content-type-options"] == "nosniff", r.url
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    page_csp = answers[0].headers["content-security-policy"]
    assert "script-src 'self';" in page_csp and "unsafe-eval" not in page_csp
    docs = answers[8]
    inline = re.findall(r"<script>(.*?)</script>", docs.text, re.S)
    assert inline and all(_csp_hash(s) in docs.headers["content-security-policy"] for s in inline)


def test_pages_have_nothing_inline_a_strict_csp_would_block() -> None:
    for html in (REPO / "frontend").glob("*.html"):
        text = html.read_text()
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", text, re.S)
        assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts), html.name
        assert not re.search(r"\son[a-z]+\s*=|javascript:", text), html.name


# --------------------------------------------------------------------------- real processes


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARGINSCOPE_")}
    env.update(MARGINSCOPE_DATA_DIR=str(settings.data_dir), MARGINSCOPE_DB_URL=settings.db_url, **extra)
    return env


def test_uvicorn_factory_refuses_an_unsafe_setup_in_one_line(settings: Settings) -> None:
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "marginscope.backend.main:create_app",
           "--host", "127.0.0.1", "--port", str(free_port())]
    for extra, expected in (({"MARGINSCOPE_HOST": "0.0.0.0"}, "without a token"),
                            ({"MARGINSCOPE_TOKEN": "short"}, "at least 16 characters")):
        done = subprocess.run(cmd, cwd=REPO, env=_env(settings, **extra), capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 1 and expected in done.stderr, done.stderr[-2000:]
        assert "Traceback" not in done.stderr and "short" not in done.stderr


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[str, Path]]:
    """`marginscope serve` with a token, its whole output (access log included) in a file."""
    server = DashboardProcess(settings.data_dir, {"MARGINSCOPE_DB_URL": settings.db_url,
                                                  "MARGINSCOPE_TOKEN": TOKEN})
    server.start()
    try:
        yield server.url, server.log
    finally:
        server.stop()


def test_the_token_stays_out_of_the_server_log(served: tuple[str, Path]) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url, log = served
    ws_url = url.replace("http", "ws")
    with httpx.Client(base_url=url, timeout=30) as page:  # what frontend/js/api.js does
        assert page.get("/").status_code == 200
        assert page.get("/api/session").json()["token_required"] is True
        assert page.post("/api/session", json={"token": TOKEN}).status_code == 204
        assert page.get("/api/runs", headers=AUTH).status_code == 200
        assert page.patch("/api/runs/999", json={"notes": "x"}, headers=AUTH).status_code == 404
        assert page.get("/api/runs/999/export?format=csv").status_code == 404  # a download link
        cookie = f"{SESSION_COOKIE}={page.cookies[SESSION_COOKIE]}"
        with connect(f"{ws_url}/ws/runs", additional_headers={"Cookie": cookie}, open_timeout=30) as ws:
            assert '"snapshot"' in ws.recv(timeout=30)
        # an old bookmark or script still putting the token in the URL: ignored or refused, never logged
        assert page.get(f"/api/runs?token={TOKEN}&limit=1").status_code == 200
        with pytest.raises(InvalidStatus), connect(f"{ws_url}/ws/runs?token={TOKEN}", open_timeout=30):
            pass
    time.sleep(0.5)  # let the access log reach the file
    text = log.read_text()
    assert "GET /api/runs" in text and "WebSocket /ws/runs" in text, text[-3000:]  # the log is there
    assert "token=[redacted]" in text
    assert TOKEN not in text


def test_a_run_credential_reports_its_own_run_and_opens_nothing_else(settings: Settings) -> None:
    """What a worker or a Dask task holds: the ingest routes of its run, for its current attempt."""
    from marginscope.backend.security import mint_run_credential
    from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore

    with _client(settings, token=TOKEN, protect_reads=True) as http:
        mine = http.post("/api/runs", json={"config": TINY}, headers=AUTH).json()["id"]
        other = http.post("/api/runs", json={"config": TINY}, headers=AUTH).json()["id"]
        credential, digest = mint_run_credential()
        store = SqlAlchemyStore(settings.db_url, data_dir=settings.data_dir)
        store.set_credential(mine, digest)
        as_run = {"Authorization": f"Bearer {credential}"}
        trainer = {"host": "node", "pid": 1}
        # another run's ingest routes: refused, whatever exists there
        for path in (f"/api/ingest/runs/{other}/claim", f"/api/ingest/runs/{other}/heartbeat",
                     "/api/ingest/runs/424242/claim"):
            r = http.post(path, json=trainer if path.endswith("claim") else {}, headers=as_run)
            assert r.status_code == 401 and "does not report run" in r.json()["detail"], (path, r.text)
        # every other route checks the dashboard's token: no launch, cancel, resume, delete or read
        assert http.post("/api/runs", json={"config": TINY}, headers=as_run).status_code == 401
        assert http.post("/api/ingest/runs", json={"config": TINY, **trainer}, headers=as_run).status_code == 401
        for run_id in (mine, other):
            assert http.post(f"/api/runs/{run_id}/cancel", headers=as_run).status_code == 401
            assert http.post(f"/api/runs/{run_id}/resume", headers=as_run).status_code == 401
            assert http.delete(f"/api/runs/{run_id}", headers=as_run).status_code == 401
            assert http.get(f"/api/runs/{run_id}", headers=as_run).status_code == 401
        assert http.get("/api/runs", headers=as_run).status_code == 401
        # its own run: claimed and reported
        r = http.post(f"/api/ingest/runs/{mine}/claim", json=trainer, headers=as_run)
        assert r.status_code == 200, r.text
        assert http.post(f"/api/ingest/runs/{mine}/heartbeat", json={}, headers=as_run).status_code == 200
        # a newer start of the run replaces it: the earlier attempt's trainer is refused
        store.set_credential(mine, mint_run_credential()[1])
        assert http.post(f"/api/ingest/runs/{mine}/heartbeat", json={}, headers=as_run).status_code == 401
        store.close()
