"""Browser-test fixtures: the real server in a subprocess, a real Chromium through Playwright.

Each server gets a temporary data dir and SQLite file, migrated with the project's own Alembic
upgrade before start-up, and listens on a free port. Chromium is Debian's (`apt-get install -y
chromium`), driven by PyPI playwright without `playwright install`; when it is missing the tests
skip saying so. Every page collects console errors and uncaught exceptions, and a test fails if
any occurred.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import CHROMIUM_ARGS, VIEWPORT, Server, chromium_path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("server"))
    srv.migrate()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium not found (apt-get install -y chromium, or set MARGINSCOPE_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("PyPI playwright is not installed (pip install playwright)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class PageErrors(list[str]):
    """Console errors and uncaught exceptions of one page.

    Chromium also logs every HTTP error answer as a console error ("Failed to load resource: ...
    status of 422"); a test that provokes one on purpose lists the status in `expected_http`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.expected_http: set[int] = set()

    def unexpected(self) -> list[str]:
        return [e for e in self if not any(f"status of {code} " in e and "Failed to load resource" in e
                                           for code in self.expected_http)]


def _wait_for_function(page: Any, expression: str, *, arg: Any = None,
                       timeout: float = 30_000) -> Any:
    """Playwright's own `wait_for_function` runs its predicate through eval() inside the page,
    which the pages' Content-Security-Policy forbids (as it should); `evaluate` goes through the
    DevTools protocol, which the policy does not govern."""
    deadline = time.monotonic() + timeout / 1000
    while not (value := page.evaluate(expression, arg)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout / 1000:.0f} s for: {expression}")
        page.wait_for_timeout(100)
    return value


@pytest.fixture()
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    errors = PageErrors()
    pg.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    pg.errors = errors
    pg.shots = tmp_path / "screenshots"
    pg.shots.mkdir()
    pg.set_default_timeout(30_000)
    pg.wait_for_function = lambda expression, **kw: _wait_for_function(pg, expression, **kw)
    try:
        yield pg
        bad = errors.unexpected()
        assert not bad, "JavaScript errors on the page:\n" + "\n".join(bad)
    finally:
        context.close()
