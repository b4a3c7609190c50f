"""The samples behind the margins, driven as a user would, in a real Chromium against the real server.

One digits run trains with samples tracking on while the run page's "Hardest samples" gallery fills
and follows it live; the user then opens one sample's story, exports the suspect labels, looks at
the gallery on a phone, and compares the hardest sets of two runs on the same data.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest

from dashboard_helpers import Server, shot, wait_ready
from servers import wait_for

pytestmark = pytest.mark.browser

TERMINAL = {"finished", "cancelled", "failed", "crashed"}
SAMPLED = {"dataset": "digits", "candidates": 64, "batch_size": 16, "hist_every": 50, "log_every": 50,
           "eval_every": 10_000, "samples_every": 10, "samples_k": 32, "seed": 1,
           "label_noise": 0.2}  # flipped labels: suspects exist however far the run has trained


@pytest.fixture(scope="module")
def runs(server: Server) -> Iterator[tuple[int, int]]:
    """Two runs on the same data, launched together: one long enough to be watched mid-training
    (the first test cancels it once it has seen the gallery change; any later test stops it
    first), and a short uniform one for the compare page."""
    long = server.launch("samples-live", **{**SAMPLED, "steps": 50_000})
    short = server.launch("samples-uniform", **{**SAMPLED, "selector": "uniform", "steps": 60})
    yield long["id"], short["id"]
    for run in (long, short):
        stop(server, run["id"])


@pytest.fixture()
def long_run(runs: tuple[int, int]) -> int:
    return runs[0]


def stop(server: Server, run_id: int) -> dict[str, Any]:
    """The run, cancelled unless it has already ended, and never before it has logged two sample
    snapshots: every test here looks at a gallery, whichever of them runs first (or alone)."""
    wait_for(lambda: server.api("GET", f"/api/runs/{run_id}")["status"] in TERMINAL
             or len(server.api("GET", f"/api/runs/{run_id}/samples", params={"limit": 1})["steps"]) >= 2,
             f"run {run_id} to log two sample snapshots", timeout=180)
    if server.api("GET", f"/api/runs/{run_id}")["status"] not in TERMINAL:
        server.api("POST", f"/api/runs/{run_id}/cancel")
    return server.wait_status(run_id, TERMINAL, timeout=300)


def gallery(page: Any) -> dict[str, Any]:
    return page.evaluate("""() => { const s = document.getElementById('samples').dataset;
        return {state: s.state, step: Number(s.step || -1), count: Number(s.count || 0), live: Number(s.live || 0),
                tiles: document.querySelectorAll('#samples-grid .sample-tile').length}; }""")


def test_gallery_fills_and_changes_while_the_run_trains(server: Server, long_run: int, page: Any) -> None:
    server.wait_status(long_run, {"running"})
    page.goto(f"{server.url}/runs/{long_run}")
    wait_ready(page)
    page.wait_for_function("document.getElementById('samples').dataset.state === 'ready'", timeout=90_000)
    first = gallery(page)
    assert first["tiles"] > 0 and first["step"] > 0
    # a newer snapshot arrives on the run's websocket and the grid follows it
    page.wait_for_function(
        f"Number(document.getElementById('samples').dataset.step) > {first['step']}"
        " && Number(document.getElementById('samples').dataset.live) > 0", timeout=60_000)
    assert gallery(page)["tiles"] > 0
    tile = page.locator("#samples-grid .sample-tile").first
    img = tile.locator("img")
    assert "Training sample" in (img.get_attribute("alt") or "")
    page.wait_for_function("[...document.querySelectorAll('#samples-grid img')].some((i) => i.complete && i.naturalWidth > 0)")
    shot(page, "samples-gallery-live")
    run = stop(server, long_run)
    assert run["status"] == "cancelled"

    # the step slider, moved with the keyboard, shows the first logged snapshot
    steps = server.api("GET", f"/api/runs/{long_run}/samples", params={"limit": 1})["steps"]
    assert len(steps) >= 2
    page.focus("#samples-step")
    page.keyboard.press("Home")
    page.wait_for_function(f"Number(document.getElementById('samples').dataset.step) === {steps[0]}")
    assert not page.is_checked("#samples-follow")
    # filtered by class: every tile shows a sample of that class
    label = int(page.locator("#samples-grid .sample-tile").first.get_attribute("data-label"))
    page.select_option("#samples-class", str(label))
    page.wait_for_function(
        f"[...document.querySelectorAll('#samples-grid .sample-tile')].every((t) => t.dataset.label === '{label}')"
        " && document.querySelectorAll('#samples-grid .sample-tile').length > 0")
    # the other views answer too
    page.click("#samples-views [data-view='selected']")
    page.wait_for_function("document.getElementById('samples').dataset.state !== 'loading'")
    assert page.get_attribute("#samples-views [data-view='selected']", "aria-pressed") == "true"


def test_clicking_a_sample_shows_its_history(server: Server, long_run: int, page: Any) -> None:
    stop(server, long_run)
    page.goto(f"{server.url}/runs/{long_run}")
    page.wait_for_function("document.getElementById('samples').dataset.state === 'ready'")
    tile = page.locator("#samples-grid .sample-tile").first
    index = int(tile.get_attribute("data-index"))
    tile.focus()
    page.keyboard.press("Enter")  # tiles are buttons: the keyboard opens them as a click does
    dialog = page.locator("dialog#sample-story")
    dialog.wait_for(state="visible")
    assert f"#{index}" in dialog.locator("h2").inner_text()
    page.wait_for_function("document.querySelector('#story-plot .main-svg') !== null")
    story = server.api("GET", f"/api/runs/{long_run}/samples/{index}")
    assert story["history"], "a sample shown in the gallery has a margin history"
    mms = page.evaluate("document.getElementById('story-plot').data[0].y")
    assert mms == pytest.approx([r["mms"] for r in story["history"]])
    assert "times selected" in dialog.inner_text()
    shot(page, "samples-story")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert page.evaluate("document.activeElement.dataset.index") == str(index)


def test_suspect_list_exports_its_rows(server: Server, long_run: int, page: Any) -> None:
    stop(server, long_run)
    page.goto(f"{server.url}/runs/{long_run}")
    page.wait_for_function("document.querySelectorAll('#suspects-table tbody tr').length > 0")
    assert page.locator("#suspects-rule").inner_text().startswith("Rule:")
    shown = [int(r.get_attribute("data-index")) for r in page.locator("#suspects-table tbody tr").all()]
    shot(page, "samples-suspects")
    # the export links download what the list shows, in rank order (fetched with the page's cookies)
    csv_text = page.request.get(server.url + page.get_attribute("#suspects-csv", "href")).text()
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert [int(r["index"]) for r in rows[:len(shown)]] == shown
    assert {"index", "label", "prediction", "score", "selected", "mean_mms"} <= set(rows[0])
    data = page.request.get(server.url + page.get_attribute("#suspects-json", "href")).json()
    assert [it["index"] for it in data["items"]] == [int(r["index"]) for r in rows]
    assert data["rule"]


def test_phone_width_reflows_without_overflow(server: Server, long_run: int, browser: Any) -> None:
    stop(server, long_run)
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{server.url}/runs/{long_run}")
        page.wait_for_selector("#samples[data-state='ready']")
        outside = """() => [...document.querySelectorAll('#samples *, #sample-story *')]
            .filter((el) => !el.closest('.suspects-scroll') && el.getClientRects().length)
            .filter((el) => el.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)
            .map((el) => el.id || el.className || el.tagName)"""
        assert page.evaluate(outside) == []
        # more than one tile per row, none wider than the screen
        lefts = page.evaluate("[...document.querySelectorAll('#samples-grid li')].slice(0, 3).map((li) => li.getBoundingClientRect().left)")
        assert len(set(lefts)) == 3
        # the suspect table scrolls inside its own box, not the page
        assert page.evaluate("(() => { const s = document.querySelector('.suspects-scroll'); return s.scrollWidth <= s.clientWidth; })()")
        page.locator("#samples-grid .sample-tile").first.click()
        page.wait_for_selector("#story-plot .main-svg")
        assert page.evaluate(outside) == []
        assert page.evaluate("document.getElementById('sample-story').getBoundingClientRect().right") <= 390
    finally:
        context.close()
    assert not errors, errors


def test_compare_shows_the_overlap_of_two_hardest_sets(server: Server, runs: tuple[int, int], page: Any) -> None:
    long_run, other = runs
    stop(server, long_run)
    server.wait_status(other, {"finished"}, timeout=300)
    page.goto(f"{server.url}/compare?runs={long_run},{other}")
    page.wait_for_function("document.getElementById('samples-overlap').dataset.state === 'ready'")
    api = server.api("GET", "/api/compare/samples", params={"runs": f"{long_run},{other}", "k": 100})
    assert page.locator("[data-testid='overlap-count']").inner_text() == f"{api['count']:,}"
    only_a = page.locator("#overlap-grid-a .sample-tile").count()
    assert only_a == min(24, len(api["only"][str(long_run)]))
    shot(page, "samples-compare")
