"""Pages and static files are served from frontend/ and the plotly package; OpenAPI docs exist."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from backend.routes.pages import FRONTEND_DIR, plotly_js

pytest_plugins = ["api_fixtures"]


@pytest.mark.parametrize(("path", "page"), [("/", "index.html"), ("/launch", "launch.html"),
                                            ("/runs/1", "run.html"), ("/compare", "compare.html")])
def test_pages(client: TestClient, path: str, page: str) -> None:
    r = client.get(path)
    if not (FRONTEND_DIR / page).exists():
        assert r.status_code == 404 and page in r.json()["detail"]
        return
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.text == (FRONTEND_DIR / page).read_text()


def test_plotly_comes_from_the_installed_package(client: TestClient) -> None:
    r = client.get("/static/plotly.min.js")
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    path = plotly_js()
    assert path is not None and len(r.content) == path.stat().st_size > 1_000_000


def test_static_files_and_bad_paths(client: TestClient) -> None:
    css = FRONTEND_DIR / "css" / "style.css"
    if css.exists():
        assert client.get("/static/css/style.css").status_code == 200
    assert client.get("/static/nope.js").status_code == 404
    assert client.get("/static/../pyproject.toml").status_code == 404
    assert client.get("/runs/abc").status_code == 422


def test_openapi_docs(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/api/runs", "/api/runs/{run_id}", "/api/compare", "/api/options"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200
