"""The dashboard's pages: static HTML from frontend/, plotly.js, the API docs, all offline.

`/` runs list, `/launch`, `/runs/{id}`, `/compare` return frontend/{index,launch,run,compare}.html;
a run that does not exist gets a not-found page (404), never a live page that waits forever.
Static files are served twice: `/static/...` (revalidated on every load) and
`/static/v<version>/...`, where <version> is a hash of frontend/'s files taken at start-up. The
pages are served with their `/static/` URLs rewritten to the versioned ones, so a browser keeps
every script for a year (`immutable`) and still gets new ones after an upgrade; ES modules'
relative imports inherit the prefix. `plotly.min.js` is plotly.js's cartesian bundle when set-up
fetched it (frontend/vendor/, scripts/fetch_assets.py), else the full one of the `plotly` Python
package. `/docs` (Swagger UI, from the `swagger-ui-bundle` package) and `/redoc` (frontend/vendor/)
load nothing from the internet.
"""

from __future__ import annotations

import hashlib
import html
import importlib.util
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from marginscope.backend.package_data import frontend_dir
from marginscope.backend.store import RunNotFound

FRONTEND_DIR = frontend_dir()
VENDOR_DIR = FRONTEND_DIR / "vendor"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

router = APIRouter(tags=["pages"], include_in_schema=False)


def plotly_js() -> Path | None:
    """plotly.min.js inside the installed plotly package, if any."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


def plotly_bundle() -> Path | None:
    """The plotly.js the pages load: the cartesian bundle if set-up fetched it, else the full one."""
    partial = VENDOR_DIR / "plotly-cartesian.min.js"
    return partial if partial.is_file() else plotly_js()


def swagger_ui_dir() -> Path | None:
    """Swagger UI's files: version 5 from set-up (frontend/vendor/swagger-ui), else the 4.x inside
    the installed swagger-ui-bundle package, if any."""
    fetched = VENDOR_DIR / "swagger-ui"
    if (fetched / "swagger-ui-bundle.js").is_file():
        return fetched.resolve()
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    path = Path(str(swagger_ui_bundle.swagger_ui_path)).resolve()  # resolved: StaticFiles refuses links
    return path if (path / "swagger-ui-bundle.js").is_file() else None


def asset_version() -> str:
    """A hash of every file the pages can load: changes whenever one of them does."""
    digest = hashlib.sha256()
    bundle = plotly_bundle()
    files = sorted(p for p in FRONTEND_DIR.rglob("*") if p.is_file()) if FRONTEND_DIR.is_dir() else []
    for path in [*files, *([bundle] if bundle else [])]:
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def _version(request: Request) -> str:
    return request.app.state.asset_version  # type: ignore[no-any-return]


def _page(request: Request, name: str, status_code: int = 200) -> HTMLResponse:
    path = FRONTEND_DIR / name
    if not path.is_file():
        raise HTTPException(404, detail=f"page {name} is not in {FRONTEND_DIR}")
    prefix = f"/static/v{_version(request)}/"
    text = path.read_text().replace('"/static/', f'"{prefix}')
    return HTMLResponse(text, status_code=status_code, headers={"Cache-Control": REVALIDATE})


@router.get("/")
def runs_page(request: Request) -> HTMLResponse:
    """The runs list."""
    return _page(request, "index.html")


@router.get("/launch")
def launch_page(request: Request) -> HTMLResponse:
    """The launch form."""
    return _page(request, "launch.html")


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str) -> HTMLResponse:
    """One run, live; a clear not-found page for an id that names no run."""
    if not run_id.isdecimal() or len(run_id) > 18:
        return not_found(request, f"“{run_id}” is not a run number.")
    try:
        request.app.state.store.get_run(int(run_id))
    except RunNotFound:
        return not_found(request, f"Run {int(run_id)} does not exist: it was deleted, or never was.")
    return _page(request, "run.html")


API_PREFIXES = ("/api/", "/ws/", "/static/", "/docs/", "/openapi")


def wants_page(request: Request) -> bool:
    """Whether a request that found nothing came from a browser's address bar (a GET asking for
    HTML, outside the API): it gets the not-found page, the API keeps its JSON 404."""
    path = request.url.path
    return (request.method == "GET" and "text/html" in request.headers.get("accept", "")
            and not path.startswith(API_PREFIXES) and path != "/api")


def not_found(request: Request, message: str, heading: str = "Run not found") -> HTMLResponse:
    """frontend/notfound.html with the heading and the reason filled in, answered with a 404."""
    page = _page(request, "notfound.html", status_code=404)
    body = (bytes(page.body).decode().replace("<!--heading-->", html.escape(heading))
            .replace("<!--reason-->", html.escape(message)))
    return HTMLResponse(body, status_code=404, headers={"Cache-Control": REVALIDATE})


@router.get("/compare")
def compare_page(request: Request) -> HTMLResponse:
    """Several runs side by side."""
    return _page(request, "compare.html")


def _plotly_response(cache: str) -> FileResponse:
    path = plotly_bundle()
    if path is None:
        raise HTTPException(404, detail="plotly is not installed: pip install plotly")
    return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": cache})


@router.get("/static/plotly.min.js")
def plotly_script() -> FileResponse:
    """plotly.js, from set-up's partial bundle or the installed plotly package (no CDN)."""
    return _plotly_response(REVALIDATE)


@router.get("/static/v{version}/plotly.min.js")
def plotly_script_versioned(version: str) -> FileResponse:
    """plotly.js under a versioned URL: cached for a year."""
    return _plotly_response(IMMUTABLE)


def _dark_theme(page: HTMLResponse, request: Request) -> HTMLResponse:
    """An API reference page with the dashboard's dark theme (css/docs-dark.css, js/docs-theme.js)."""
    static = f"/static/v{_version(request)}"
    head = (f'<link rel="stylesheet" href="{static}/css/docs-dark.css">'
            f'<script src="{static}/js/docs-theme.js"></script></head>')
    body = bytes(page.body).decode().replace("</head>", head, 1)
    return HTMLResponse(body, status_code=page.status_code)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI from the swagger-ui-bundle package."""
    prefix = f"/static/v{_version(request)}/swagger-ui"
    old = not (VENDOR_DIR / "swagger-ui" / "swagger-ui-bundle.js").is_file()
    return _dark_theme(get_swagger_ui_html(
        openapi_url="/docs/openapi-3.0.json" if old else request.app.openapi_url, title="MarginScope API",
        swagger_js_url=f"{prefix}/swagger-ui-bundle.js", swagger_css_url=f"{prefix}/swagger-ui.css",
        swagger_favicon_url=f"{prefix}/favicon-32x32.png"), request)


@router.get("/docs/openapi-3.0.json")
def openapi_for_swagger_ui_4(request: Request) -> dict[str, Any]:
    """The OpenAPI document labelled 3.0: Swagger UI 4 (swagger-ui-bundle) refuses to draw a 3.1
    one, and draws this one well enough."""
    return {**request.app.openapi(), "openapi": "3.0.3"}


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """ReDoc from frontend/vendor/ (fetched at set-up); without it, a page pointing to /docs."""
    if not (VENDOR_DIR / "redoc.standalone.js").is_file():
        return HTMLResponse(
            "<!doctype html><title>ReDoc · MarginScope</title><p>ReDoc's bundle was not installed "
            "(it is fetched by <code>make setup</code>, scripts/fetch_assets.py). The same API "
            'reference is at <a href="/docs">/docs</a>; the schema is <a href="/openapi.json">'
            "/openapi.json</a>.</p>")
    return _dark_theme(get_redoc_html(
        openapi_url=request.app.openapi_url, title="MarginScope API",
        redoc_js_url=f"/static/v{_version(request)}/vendor/redoc.standalone.js",
        redoc_favicon_url="data:,", with_google_fonts=False), request)


class CachedStatic(StaticFiles):
    """StaticFiles with one Cache-Control for everything it serves."""

    def __init__(self, *, cache: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.cache = cache

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = self.cache
        return response


def mount_static(app: FastAPI) -> None:
    """Serve frontend/ under /static and /static/v<version> (after the router, so plotly.js's
    routes win), and Swagger UI's files under /static/v<version>/swagger-ui."""
    app.state.asset_version = version = asset_version()
    swagger = swagger_ui_dir()
    if swagger is not None:
        app.mount(f"/static/v{version}/swagger-ui", CachedStatic(directory=swagger, cache=IMMUTABLE),
                  name="swagger-ui")
    if FRONTEND_DIR.is_dir():
        app.mount(f"/static/v{version}", CachedStatic(directory=FRONTEND_DIR, cache=IMMUTABLE),
                  name="static-versioned")
        app.mount("/static", CachedStatic(directory=FRONTEND_DIR, cache=REVALIDATE), name="static")
