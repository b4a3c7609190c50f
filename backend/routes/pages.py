"""The dashboard's pages: static HTML from frontend/, and plotly.js from the installed package.

`/` runs list, `/launch`, `/runs/{id}`, `/compare` return frontend/{index,launch,run,compare}.html;
`/static/...` serves frontend/ (css/, js/); `/static/plotly.min.js` comes from the `plotly` Python
package (`plotly/package_data/plotly.min.js`), so the pages work with no internet.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

FRONTEND_DIR = Path(__file__).resolve().parents[2] / "frontend"

router = APIRouter(tags=["pages"], include_in_schema=False)


def plotly_js() -> Path | None:
    """plotly.min.js inside the installed plotly package, if any."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


def _page(name: str) -> FileResponse:
    path = FRONTEND_DIR / name
    if not path.is_file():
        raise HTTPException(404, detail=f"page {name} is not in {FRONTEND_DIR}")
    return FileResponse(path, media_type="text/html")


@router.get("/")
def runs_page() -> FileResponse:
    """The runs list."""
    return _page("index.html")


@router.get("/launch")
def launch_page() -> FileResponse:
    """The launch form."""
    return _page("launch.html")


@router.get("/runs/{run_id}")
def run_page(run_id: int) -> FileResponse:
    """One run, live."""
    return _page("run.html")


@router.get("/compare")
def compare_page() -> FileResponse:
    """Several runs side by side."""
    return _page("compare.html")


@router.get("/static/plotly.min.js")
def plotly_script() -> FileResponse:
    """plotly.js from the installed plotly package (no CDN)."""
    path = plotly_js()
    if path is None:
        raise HTTPException(404, detail="plotly is not installed: pip install plotly")
    return FileResponse(path, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})


def mount_static(app: FastAPI) -> None:
    """Serve frontend/ under /static (after the router, so /static/plotly.min.js wins)."""
    if FRONTEND_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=FRONTEND_DIR), name="static")
