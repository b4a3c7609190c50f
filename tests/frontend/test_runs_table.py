"""The runs list as a table like MLflow's and W&B's, in a real Chromium at 1440×900 and 390×844,
light and dark: the table fits a wide screen, metric and config columns sort on the server, the
filter takes MLflow's search syntax (and plain words, config values included), tags are links,
the view lives in the address, queued runs say their place and why, and "duration" is the time a
run ran, the same number its run page shows.

The runs are recorded (recorded_runs.py), not trained: six finished runs, two still running (the
server's two places are taken, so the three queued runs stay queued) and no worker at all: the
heartbeat check is relaxed so the running ones stay running. Screenshots of each view are written
to $MARGINSCOPE_SHOTS (default: the test's temp dir) to be looked at.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from dashboard_helpers import Server, wait_ready
from recorded_runs import B, b, record, recorded_run

from marginscope.backend.recording import write_events
from marginscope.engine.config import TrainConfig

pytestmark = pytest.mark.browser

STEPS = 300
WIDE = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
VIEWS = [pytest.param((WIDE, "light"), id="1440-light"), pytest.param((WIDE, "dark"), id="1440-dark"),
         pytest.param((PHONE, "light"), id="390-light"), pytest.param((PHONE, "dark"), id="390-dark")]
ROWS = "Array.from(document.querySelectorAll('#runs-table tbody tr')).map(r => Number(r.dataset.runId))"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, Any]]]:
    from marginscope.backend.settings import Settings
    from marginscope.backend.store import open_store

    srv = Server(tmp_path_factory.mktemp("runs-table"))
    srv.env["MARGINSCOPE_STALE_AFTER"] = "3600"  # the recorded running runs have no worker
    srv.migrate()
    store = open_store(Settings(data_dir=srv.data_dir, db_url=""))
    ids: dict[str, Any] = {"finished": [], "running": [], "queued": []}
    try:
        for selector in ("uniform", "mms"):
            for seed in range(3):
                tags = ["recorded", "baseline"] if (selector, seed) == ("uniform", 0) else ["recorded"]
                ids["finished"].append(record(store, f"{selector}-s{seed}", seed, selector, steps=STEPS, tags=tags))
        store.update_run(ids["finished"][0], notes="the reference run: uniform sampling, seed 0, "
                                                   "kept as the baseline of every comparison")
        for seed in (7, 8):  # a third of the way
            config = TrainConfig(dataset="mnist", selector="mms", candidates=B, batch_size=b, seed=seed,
                                 hist_every=10, log_every=10).model_dump(mode="json")
            run = store.create_run(name=f"live-s{seed}", config=config, tags=["recorded"])
            store.set_status(run.id, "running")
            events = [e for e in recorded_run(seed, "mms", STEPS, finished=False)
                      if getattr(getattr(e, "counters", None), "step", 0) <= STEPS // 3]
            write_events(store, run.id, events)
            ids["running"].append(run.id)
        for i in range(3):
            config = TrainConfig(dataset="digits", selector="mms", seed=i, lr=(0.02, 0.03, 0.04)[i],
                                 steps=500).model_dump(mode="json")
            ids["queued"].append(store.create_run(name=f"waiting-{i}", config=config).id)
    finally:
        store.close()
    with sqlite3.connect(srv.db_path) as con:  # the running runs started 40 s ago, reported just now
        now = datetime.now(UTC).replace(tzinfo=None)
        for rid in ids["running"]:
            con.execute("UPDATE runs SET started_at = ?, heartbeat_at = ? WHERE id = ?",
                        ((now - timedelta(seconds=40)).isoformat(sep=" "), now.isoformat(sep=" "), rid))
    srv.start()
    try:
        yield srv, ids
    finally:
        srv.stop()


@pytest.fixture()
def view(request: pytest.FixtureRequest, browser: Any, tmp_path: Path) -> Iterator[Any]:
    """A page at the parametrized size (a phone as a phone: mobile, touch) and colour scheme; it
    fails the test on any JavaScript error (HTTP errors listed in `errors.expected_http` aside)."""
    from conftest import PageErrors, _wait_for_function

    size, scheme = request.param
    phone = size["width"] < 640
    context = browser.new_context(viewport=size, color_scheme=scheme, is_mobile=phone, has_touch=phone,
                                  device_scale_factor=1)
    page = context.new_page()
    errors = PageErrors()
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.errors = errors
    page.shots = tmp_path
    page.view_id = f"{size['width']}-{scheme}"
    page.set_default_timeout(30_000)
    page.wait_for_function = lambda expression, **kw: _wait_for_function(page, expression, **kw)
    try:
        yield page
        assert not errors.unexpected(), "JavaScript errors on the page:\n" + "\n".join(errors.unexpected())
    finally:
        context.close()


def shot(page: Any, name: str) -> None:
    folder = Path(os.environ.get("MARGINSCOPE_SHOTS") or page.shots)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}-{page.view_id}.png"), full_page=False)


def open_list(page: Any, srv: Server, query: str = "") -> None:
    page.goto(f"{srv.url}/{query}")
    wait_ready(page)
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length > 0 || "
                           "!document.getElementById('runs-none-match').classList.contains('hidden')")


def rows(page: Any) -> list[int]:
    return page.evaluate(ROWS)  # type: ignore[no-any-return]


def wait_rows(page: Any, expected: list[int]) -> None:
    page.wait_for_function(f"JSON.stringify({ROWS}) === {str(expected).replace(' ', '')!r}")


def api_ids(srv: Server, **params: str) -> list[int]:
    return [r["id"] for r in srv.api("GET", "/api/runs", params={"limit": "1000", **params})["data"]]


VIEW = pytest.mark.parametrize("view", VIEWS, indirect=True)


@VIEW
def test_the_table_fits_and_every_head_is_unique(recorded: tuple[Server, dict[str, Any]], view: Any) -> None:
    srv, ids = recorded
    open_list(view, srv, "?cols=" + ",".join(["dataset", "selector", "metrics.test/accuracy",
                                              "metrics.val/best_accuracy", "metrics.train/loss",
                                              "metrics.time/elapsed", "metrics.samples_backpropagated",
                                              "progress", "created_at", "notes", "config.steps"]))
    shot(view, "runs-table")
    heads = view.evaluate("Array.from(document.querySelectorAll('#runs-table thead th')).map(t => t.textContent.trim())")
    named = [h for h in heads if h]
    assert len(named) == len(set(named)), heads  # config "steps" next to "progress": one "steps" head
    for head in ("test acc", "best val acc", "loss", "duration", "samples back-prop.", "created", "notes", "steps"):
        assert head in heads
    page_width, screen = view.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert page_width <= screen  # the page never scrolls sideways; on a phone the card does
    if view.viewport_size["width"] == 1440:
        card = view.evaluate("(c => [c.scrollWidth, c.clientWidth])(document.getElementById('runs-card'))")
        assert card[0] <= card[1], f"the table is {card[0]} px wide in a {card[1]} px card"
        # "created", notes and the actions are all on screen, none covering another
        boxes = {c: view.locator(f"#runs-table thead th[data-col='{c}']").bounding_box() for c in ("created_at", "notes")}
        actions = view.locator("#runs-table thead th.actions-head").bounding_box()
        assert boxes["created_at"]["x"] + boxes["created_at"]["width"] <= boxes["notes"]["x"] + 1
        assert boxes["notes"]["x"] + boxes["notes"]["width"] <= actions["x"] + 1
        assert actions["x"] + actions["width"] <= 1440
        notes = view.locator(f"tr[data-run-id='{ids['finished'][0]}'] td.notes").inner_text()
        assert "reference run" in notes


@VIEW
def test_queued_runs_say_their_place_and_why(recorded: tuple[Server, dict[str, Any]], view: Any) -> None:
    srv, ids = recorded
    open_list(view, srv, "?status=queued&sort=id")
    wait_rows(view, ids["queued"])
    shot(view, "runs-queue")
    reasons = [view.locator(f"tr[data-run-id='{rid}'] [data-testid='queue-reason']").inner_text()
               for rid in ids["queued"]]
    assert reasons == ["1st in queue: 2 runs running, limit 2", "2nd in queue: 2 runs running, limit 2",
                       "3rd in queue: 2 runs running, limit 2"]


@VIEW
def test_duration_and_eta_are_the_same_on_the_list_and_the_run_page(recorded: tuple[Server, dict[str, Any]],
                                                                     view: Any) -> None:
    srv, ids = recorded
    open_list(view, srv)
    col = "td[data-col='metrics.time/elapsed']"
    finished = srv.api("GET", f"/api/runs/{ids['finished'][3]}")
    # the engine's time/elapsed: 3 s of start-up, 300 steps at 0.045 s, 3 validations, the test
    duration = finished["latest"]["time/elapsed"]
    assert duration > finished["latest"]["wall_time"]
    cell = view.locator(f"tr[data-run-id='{finished['id']}'] {col}").inner_text()
    assert cell == f"{round(duration)}s"
    # a queued run has run for no time at all: its time in the queue is no duration
    assert view.locator(f"tr[data-run-id='{ids['queued'][0]}'] {col}").inner_text() == "–"
    running = view.locator(f"tr[data-run-id='{ids['running'][0]}'] {col} .eta")
    run = srv.api("GET", f"/api/runs/{ids['running'][0]}")
    remaining = run["latest"]["time/remaining"]
    step, total, wall = run["progress"]["step"], run["progress"]["total_steps"], run["latest"]["wall_time"]
    assert remaining > (total - step) * wall / step  # the validations and the test are priced too
    listed = float(running.get_attribute("data-seconds"))
    assert remaining - 10 <= listed <= remaining  # counting down from when the page saw the report
    assert running.inner_text().startswith("ETA ")
    # the run pages say the same, from the same definition (frontend/js/timing.js)
    view.goto(f"{srv.url}/runs/{finished['id']}")
    wait_ready(view)
    view.wait_for_function("document.getElementById('duration').textContent.length > 0")
    assert view.inner_text("#duration") == f"duration {cell}"
    assert view.inner_text("#eta") == ""
    view.goto(f"{srv.url}/runs/{ids['running'][0]}")
    wait_ready(view)
    view.wait_for_function("document.getElementById('eta').dataset.seconds > 0")
    on_page = float(view.get_attribute("#eta", "data-seconds"))
    assert remaining - 10 <= on_page <= remaining
    elapsed = run["latest"]["time/elapsed"]  # and goes on with the clock from there
    assert elapsed - 1 <= float(view.get_attribute("#duration", "data-seconds")) <= elapsed + 10


@VIEW
def test_query_sort_columns_tags_and_the_view_in_the_address(recorded: tuple[Server, dict[str, Any]], view: Any) -> None:
    srv, ids = recorded
    view.errors.expected_http.add(422)
    open_list(view, srv)
    query = "config.seed = 0 and metrics.`val/accuracy` > 0.5"
    view.fill("#filter-text", query)
    expected = api_ids(srv, filter=query, order_by="attributes.created_at DESC")
    assert expected and set(expected) <= set(ids["finished"])
    wait_rows(view, expected)
    # sort by a metric column: the server's order, highest first, then lowest first
    view.click("#runs-table th[data-sort='metrics.test/accuracy']")
    wait_rows(view, api_ids(srv, filter=query, order_by="metrics.`test/accuracy` DESC"))
    view.click("#runs-table th[data-sort='metrics.test/accuracy']")
    wait_rows(view, api_ids(srv, filter=query, order_by="metrics.`test/accuracy` ASC"))
    assert "sort=metrics.test%2Faccuracy" in view.url and "q=config.seed" in view.url
    # a bad query: the server's message, naming the token, under the box
    view.fill("#filter-text", "config.seed = 0 or tags.x")
    error = view.locator("#filter-error")
    error.wait_for(state="visible")
    assert "'or'" in error.inner_text() and "only AND" in error.inner_text()
    shot(view, "runs-filter-error")
    # plain words match config values: lr:0.03 names one field
    view.fill("#filter-text", "lr:0.03")
    wait_rows(view, [ids["queued"][1]])
    # a config column from "Columns…": shown in view, sortable on the server
    view.fill("#filter-text", "")
    view.click("#columns-btn")
    view.locator("#columns-menu input[value='config.seed']").check()
    head = view.locator("#runs-table thead th[data-col='config.seed']")
    head.wait_for()
    view.keyboard.press("Escape")
    view.click("main h1")  # closes the menu
    assert head.is_visible()
    box = head.bounding_box()
    assert 0 <= box["x"] and box["x"] + box["width"] <= view.viewport_size["width"] + 1
    head.click()
    wait_rows(view, api_ids(srv, order_by="config.seed DESC"))
    shot(view, "runs-config-column")
    # the view is in the address: a reload shows the same
    kept = rows(view)
    view.reload()
    wait_ready(view)
    wait_rows(view, kept)
    assert view.locator("#runs-table thead th[data-col='config.seed']").count() == 1
    # a tag is a link to the runs that carry it
    view.locator(f"tr[data-run-id='{ids['finished'][0]}'] a.tag", has_text="baseline").click()
    wait_rows(view, [ids["finished"][0]])
    assert view.input_value("#filter-text") == "tags.baseline"
    assert f"q={quote('tags.baseline')}" in view.url
