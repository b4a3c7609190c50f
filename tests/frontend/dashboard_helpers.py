"""Browser-test helpers: the real server in a subprocess, screenshots, readiness.

Each server gets a temporary data dir and SQLite file, migrated with the project's own Alembic
upgrade before start-up, and listens on a free loopback port (tests/servers.py). Chromium is found
at /usr/bin/chromium (Debian's package) or $MARGINSCOPE_CHROMIUM.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from servers import HOST, DashboardProcess

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-quic"]
VIEWPORT = {"width": 1366, "height": 900}  # a laptop screen


def chromium_path() -> str | None:
    for candidate in (os.environ.get("MARGINSCOPE_CHROMIUM"), "/usr/bin/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


class Server(DashboardProcess):
    """`uvicorn --factory marginscope.backend.main:create_app` (the app as a deployment may serve it) on its own
    data dir, with no token and at most two runs training at once."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, {"MARGINSCOPE_DATA_DIR": str(data_dir),
                                    "MARGINSCOPE_MAX_CONCURRENT_RUNS": "2", "MARGINSCOPE_TOKEN": ""})

    def command(self) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "--factory", "marginscope.backend.main:create_app",
                "--host", HOST, "--port", str(self.port), "--log-level", "warning"]

    @property
    def db_path(self) -> Path:
        return self.data_dir / "marginscope.db"

    def migrate(self) -> None:
        """Create the SQLite file at the Alembic head (in-process: saves a Python start-up)."""
        from marginscope.backend.settings import Settings
        from marginscope.backend.store.db import upgrade

        upgrade(Settings(data_dir=self.data_dir, db_url="").db_url)

    # --- small API helpers for setting up what a test is not about
    def api(self, method: str, path: str, **kw: Any) -> Any:
        r = httpx.request(method, f"{self.url}{path}", timeout=30, **kw)
        r.raise_for_status()
        return r.json() if r.content else None

    def launch(self, name: str, **config: Any) -> dict[str, Any]:
        return self.api("POST", "/api/runs", json={"name": name, "config": config})  # type: ignore[no-any-return]

    def wait_status(self, run_id: int, statuses: set[str], timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.api("GET", f"/api/runs/{run_id}")
            if run["status"] in statuses:
                return run  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} still {run['status']} after {timeout} s")
            time.sleep(0.3)


def shot(page: Any, name: str) -> Path:
    """A full-page screenshot under the test's temp dir."""
    path = page.shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


SCREENSHOT_DIR_ENV = "MARGINSCOPE_SCREENSHOT_DIR"


def keep_screenshot(page: Any, name: str) -> Path | None:
    """A full-page screenshot into $MARGINSCOPE_SCREENSHOT_DIR when it is set (to look at a page
    as the test left it: its layout, its theme); nothing otherwise."""
    folder = os.environ.get(SCREENSHOT_DIR_ENV)
    if not folder:
        return None
    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_ready(page: Any) -> None:
    page.wait_for_selector("body[data-ready='1']")
