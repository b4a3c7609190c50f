"""Pages and static files are served from frontend/ and the plotly package; OpenAPI docs exist."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from marginscope.backend.routes.pages import FRONTEND_DIR, plotly_bundle, plotly_js

pytest_plugins = ["api_fixtures"]


@pytest.mark.parametrize(("path", "page"), [("/", "index.html"), ("/launch", "launch.html"),
                                            ("/compare", "compare.html")])
def test_pages(client: TestClient, path: str, page: str) -> None:
    r = client.get(path)
    if not (FRONTEND_DIR / page).exists():
        assert r.status_code == 404 and page in r.json()["detail"]
        return
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    version = client.app.state.asset_version
    assert r.text == (FRONTEND_DIR / page).read_text().replace('"/static/', f'"/static/v{version}/')
    assert r.headers["cache-control"] == "no-cache"
    for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', r.text):
        asset = client.get(src)
        assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"], src


def test_plotly_comes_from_the_installed_package(client: TestClient) -> None:
    r = client.get("/static/plotly.min.js")
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    path = plotly_bundle()  # the cartesian bundle when set-up fetched it, else the full one
    assert path is not None and plotly_js() is not None
    assert len(r.content) == path.stat().st_size > 1_000_000


def test_static_files_and_bad_paths(client: TestClient) -> None:
    css = FRONTEND_DIR / "css" / "style.css"
    if css.exists():
        assert client.get("/static/css/style.css").status_code == 200
    assert client.get("/static/nope.js").status_code == 404
    assert client.get("/static/../pyproject.toml").status_code == 404



@pytest.mark.parametrize("path", ["/runs/999", "/runs/abc", "/runs/-1", "/runs/1e3"])
def test_a_run_that_does_not_exist_gets_a_not_found_page(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "Run not found" in r.text and "/ws/" not in r.text and "run.js" not in r.text


def test_an_unknown_address_gets_the_not_found_page_in_a_browser_and_json_elsewhere(client: TestClient) -> None:
    browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    r = client.get("/no/such/page", headers=browser)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "Page not found" in r.text and "/no/such/page" in r.text
    assert "&lt;" in client.get("/x<b>", headers=browser).text  # the path is escaped, never markup
    for path, headers in (("/no/such/page", {}), ("/api/nope", browser), ("/static/nope.js", browser)):
        r = client.get(path, headers=headers)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/json"), path
    assert client.post("/no/such/page", headers=browser).status_code in (404, 405)


def test_compression_and_docs_assets_are_local(client: TestClient) -> None:
    r = client.get("/static/plotly.min.js", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    for path in ("/docs", "/redoc"):
        page = client.get(path).text
        assert "cdn." not in page and "https://" not in page.split("<body")[-1], path
        for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
            assert client.get(src).status_code == 200, src


def test_openapi_docs(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/api/runs", "/api/runs/{run_id}", "/api/compare", "/api/options"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_an_existing_run_gets_its_live_page(client: TestClient) -> None:
    rid = client.post("/api/runs", json={"config": {"dataset": "digits"}}).json()["id"]
    r = client.get(f"/runs/{rid}")
    assert r.status_code == 200 and "/js/run.js" in r.text
