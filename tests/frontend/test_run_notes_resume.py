"""The run page in a real Chromium: Resume offered only when the server would accept it (disabled,
with the reason, while the previous worker is still stopping; enabled once it has gone, without a
reload), a refusal that still happens shown as a message rather than an error, and the run's tags
and notes edited there (Markdown rendered safely: no raw HTML, links only http(s)).

The runs are recorded (recorded_runs.py). The "previous worker" is a stand-in process whose command
line names the run as a worker's does, so the server's own check (backend/launcher.py) sees it
exactly as it would a real worker that is still shutting down.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import Server, keep_screenshot, wait_ready
from recorded_runs import record

from marginscope.backend.recording import write_events
from marginscope.backend.settings import Settings
from marginscope.backend.store import RunStatus, open_store
from marginscope.engine.events import CheckpointSaved, Counters

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}
NOTES = """## Why this run
Checks **MMS** against *uniform* on `digits`; see [the paper](https://arxiv.org/abs/1234.5678).

- seed 0 only
- <img src=x onerror="window.__pwned = 1"> stays text
- [a trap](javascript:window.__pwned=1) and [another](data:text/html,hi) are no links
"""


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, int]]]:
    srv = Server(tmp_path_factory.mktemp("runpage"))
    srv.env["MARGINSCOPE_STALE_AFTER"] = "3600"  # recorded runs have no worker
    srv.migrate()
    store = open_store(Settings(data_dir=srv.data_dir, db_url=""))
    try:
        ids = {"notes": record(store, "notes-run", 0, "mms", steps=200, dataset="digits", tags=["recorded"]),
               "stopped": record(store, "stopped-run", 1, "mms", steps=200, dataset="digits", finished=False)}
    finally:
        store.close()
    srv.start()
    try:
        yield srv, ids
    finally:
        srv.stop()


@pytest.fixture
def stopping_worker(recorded: tuple[Server, dict[str, int]], tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The stopped run, cancelled with a checkpoint, while its previous worker (a stand-in whose
    command line names the run as a worker's does) is still alive; yields it and the checkpoint."""
    srv, ids = recorded
    rid = ids["stopped"]
    checkpoint = srv.data_dir / "runs" / str(rid) / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_bytes(b"a checkpoint")
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "marginscope.backend.worker",
                               str(rid), "--stand-in"], start_new_session=True)
    store = open_store(Settings(data_dir=srv.data_dir, db_url=""))
    try:
        c = Counters(step=200, epoch=0.3, samples_forwarded=1, samples_backpropagated=1, wall_time=1.0)
        write_events(store, rid, [CheckpointSaved(counters=c, path=str(checkpoint))])
        store.set_status(rid, RunStatus.CANCELLED, pid=worker.pid, host=socket.gethostname())
    finally:
        store.close()
    try:
        yield worker, checkpoint
    finally:
        worker.kill()
        worker.wait()


def test_resume_is_offered_once_the_previous_worker_has_stopped(
        recorded: tuple[Server, dict[str, int]], stopping_worker: tuple[subprocess.Popen[bytes], Path], page: Any) -> None:
    srv, ids = recorded
    worker, checkpoint = stopping_worker
    page.goto(f"{srv.url}/runs/{ids['stopped']}")
    wait_ready(page)
    button = page.locator("#resume-btn")
    page.wait_for_function("document.getElementById('resume-btn').dataset.wait === 'true'")
    assert button.is_disabled()
    assert "still stopping" in (button.get_attribute("title") or "")
    assert "still stopping" in page.locator("#resume-note").inner_text()
    keep_screenshot(page, "run-resume-waits")
    worker.kill()  # the worker is gone: the page learns it by itself, no reload
    worker.wait()
    page.wait_for_function("!document.getElementById('resume-btn').disabled", timeout=10_000)
    assert page.locator("#resume-note").is_hidden()
    assert button.get_attribute("title") == "Continue from the last checkpoint"
    # a refusal that still happens (here: the checkpoint vanished meanwhile) is a message, not an error
    page.errors.expected_http.add(409)
    checkpoint.unlink()
    button.click()
    toast = page.locator("#toasts .toast").last
    toast.wait_for()
    assert "Not resumed yet" in toast.inner_text() and "no checkpoint" in toast.inner_text()
    assert "error" not in (toast.get_attribute("class") or "")
    page.wait_for_function("document.getElementById('resume-btn').disabled")
    assert "no checkpoint" in page.locator("#resume-note").inner_text()
    assert srv.api("GET", f"/api/runs/{ids['stopped']}")["status"] == "cancelled"


def test_tags_and_notes_are_edited_on_the_run_page(recorded: tuple[Server, dict[str, int]], page: Any) -> None:
    srv, ids = recorded
    rid = ids["notes"]
    page.goto(f"{srv.url}/runs/{rid}")
    wait_ready(page)
    page.wait_for_selector("#tag-list li[data-tag='recorded']")
    assert page.locator("#notes-view").get_attribute("data-empty") == "true"
    # tags: add two, remove one
    for tag in ("baseline-check", "digits"):
        page.fill("#tag-input", tag)
        page.press("#tag-input", "Enter")
        page.wait_for_selector(f"#tag-list li[data-tag='{tag}']")
    page.click("button[aria-label='Remove tag recorded']")
    page.wait_for_selector("#tag-list li[data-tag='recorded']", state="detached")
    assert srv.api("GET", f"/api/runs/{rid}")["tags"] == ["baseline-check", "digits"]
    # a tag the server refuses: its words beside the field, what was typed kept
    page.errors.expected_http.add(422)
    page.fill("#tag-input", "x" * 101)
    page.press("#tag-input", "Enter")
    page.wait_for_function("document.getElementById('tags-error').textContent.includes('Not saved')")
    assert "tags" in page.locator("#tags-error").inner_text()
    assert page.input_value("#tag-input") == "x" * 101
    # notes: Markdown, rendered without raw HTML and with http(s) links only
    page.click("#notes-edit")
    page.fill("#notes-text", NOTES)
    page.click("#notes-save")
    page.wait_for_selector("#notes-view[data-empty='false']")
    view = page.locator("#notes-view")
    assert view.locator("h4").inner_text() == "Why this run"
    assert view.locator("strong").inner_text() == "MMS" and view.locator("em").inner_text() == "uniform"
    assert view.locator("li").count() == 3 and view.locator("code").inner_text() == "digits"
    assert view.locator("img, script, iframe").count() == 0
    assert '<img src=x onerror="window.__pwned = 1">' in view.inner_text()
    links = view.locator("a")
    assert links.count() == 1 and links.get_attribute("href") == "https://arxiv.org/abs/1234.5678"
    assert links.get_attribute("rel") == "noopener noreferrer nofollow"
    assert "a trap (javascript:" in view.inner_text()
    assert page.evaluate("window.__pwned") is None
    assert srv.api("GET", f"/api/runs/{rid}")["notes"] == NOTES
    page.reload()  # kept by the server
    wait_ready(page)
    page.wait_for_selector("#notes-view strong")
    assert page.locator("#tag-list li").count() == 2


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_run_page_with_notes_fits(recorded: tuple[Server, dict[str, int]], browser: Any,
                                  viewport: dict[str, int], theme: str) -> None:
    """The run page with tags, rendered notes and a resume note, at 1440×900 and 390×844, light
    and dark: nothing wider than the screen, tags beside the notes on a desktop and above them on
    a phone (screenshots: `keep_screenshot`)."""
    srv, ids = recorded
    srv.api("PATCH", f"/api/runs/{ids['notes']}", json={"notes": NOTES, "tags": ["recorded", "a-long-tag-name-for-layout"]})
    phone = viewport is PHONE
    context = browser.new_context(viewport=viewport, is_mobile=phone, has_touch=phone, color_scheme=theme)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{srv.url}/runs/{ids['notes']}")
        wait_ready(page)
        page.wait_for_selector("#notes-view strong")
        page.wait_for_timeout(300)  # the plots' responsive resize
        width = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert width[0] <= width[1], f"the page is {width[0]} px wide on a {width[1]} px screen"
        tags = page.locator(".notes-tags").bounding_box()
        notes = page.locator(".notes-body").bounding_box()
        assert (tags["y"] + tags["height"] <= notes["y"]) if phone else (tags["x"] + tags["width"] <= notes["x"])
        keep_screenshot(page, f"run-notes-{'phone' if phone else 'desktop'}-{theme}")
    finally:
        context.close()
    assert not errors, errors
