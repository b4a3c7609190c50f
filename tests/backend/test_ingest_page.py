"""A remote run in the real dashboard page (Chromium through Playwright): listed at once, with the
host it trains on, while its events arrive over the ingest API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import store_events as ev
from ingest_server import ThreadServer

from marginscope.backend.settings import Settings

pytestmark = pytest.mark.browser


@pytest.fixture
def chromium() -> Iterator[Any]:
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Chromium not found (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def test_the_runs_list_shows_a_remote_run_with_its_host(settings: Settings, chromium: Any) -> None:
    with ThreadServer(settings) as server, httpx.Client(base_url=server.url) as http:
        body = {"config": {"dataset": "digits", "steps": 30}, "host": "gpu-node-7", "pid": 4242, "name": "far away"}
        rid = http.post("/api/ingest/runs", json=body).json()["run"]["id"]
        http.post(f"/api/ingest/runs/{rid}/events",
                  json={"seq": 0, "events": [e.to_dict() for e in (ev.run_started(30), ev.step_metrics(1))]})
        page = chromium.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{server.url}/")
        row = page.locator(f'tr[data-run-id="{rid}"]')
        row.wait_for(timeout=30_000)
        assert row.get_attribute("data-status") == "running"
        assert row.locator(".status-cell .host").inner_text() == "gpu-node-7"
        assert not errors
