"""The dashboard's views in a real Chromium, on recorded runs: seed groups drawn as bands,
smoothing, the config diff, the dark theme, the phone layout of every page, the offline API docs,
the not-found page, the ETA of a resumed run and the run page's System panel (screenshots at
1440x900 and 390x844, light and dark, written to $MARGINSCOPE_SHOTS, default the test's temp dir).

The runs are recorded (recorded_runs.py), not trained: three seeds of two selectors, finished,
and one run still running after a resume, whose first start lies two hours back (the time it sat
cancelled). The server's heartbeat check is relaxed so that recorded run stays "running".
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from dashboard_helpers import Server, wait_ready
from recorded_runs import B, b, recorded_run, record

from marginscope.backend.recording import write_events
from marginscope.engine.config import TrainConfig
from marginscope.engine.events import RunStarted

pytestmark = pytest.mark.browser

STEPS = 400  # per recorded run: enough for curves and a target, quick to write
PHONE = {"width": 390, "height": 844}
WIDE = {"width": 1440, "height": 900}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, Any]]]:
    from marginscope.backend.settings import Settings
    from marginscope.backend.store import open_store

    srv = Server(tmp_path_factory.mktemp("views"))
    srv.env["MARGINSCOPE_STALE_AFTER"] = "3600"  # the recorded running run has no worker
    srv.migrate()
    store = open_store(Settings(data_dir=srv.data_dir, db_url=""))
    ids: dict[str, Any] = {"groups": []}
    try:
        for selector in ("uniform", "mms"):
            for seed in range(3):
                ids["groups"].append(record(store, f"{selector}-s{seed}", seed, selector, steps=STEPS))
        ids["resumed"] = record_resumed(store)
    finally:
        store.close()
    with sqlite3.connect(srv.db_path) as con:  # first started two hours ago, then cancelled
        started = (datetime.now(UTC) - timedelta(hours=2)).replace(tzinfo=None).isoformat(sep=" ")
        con.execute("UPDATE runs SET started_at = ? WHERE id = ?", (started, ids["resumed"]))
    srv.start()
    try:
        yield srv, ids
    finally:
        srv.stop()


def record_resumed(store: Any) -> int:
    """A run of 2,000 steps at 0.045 s a step, resumed from its checkpoint at step 1,000 and now
    at step 1,200: 800 steps to go, about 36 s of training."""
    config = TrainConfig(dataset="mnist", selector="mms", candidates=B, batch_size=b, seed=9,
                         hist_every=10, log_every=10).model_dump(mode="json")
    run = store.create_run(name="resumed", config=config, tags=["recorded"])
    store.set_status(run.id, "running")
    events = recorded_run(9, "mms", 2000, finished=False)
    first = [e for e in events if getattr(getattr(e, "counters", None), "step", 0) <= 1000]
    again = [dataclasses.replace(events[0], resumed_from_step=1000)] + [
        e for e in events if 1000 < getattr(getattr(e, "counters", None), "step", 0) <= 1200]
    assert isinstance(events[0], RunStarted)
    for part in (first, again):
        for i in range(0, len(part), 500):
            write_events(store, run.id, part[i:i + 500])
    return int(run.id)


def compare_url(srv: Server, ids: list[int], **extra: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in extra.items())
    return f"{srv.url}/compare?runs={','.join(map(str, ids))}&baseline={ids[0]}&{query}"


def test_three_seeds_of_two_selectors_draw_two_bands(recorded: tuple[Server, dict[str, Any]], page: Any) -> None:
    srv, ids = recorded
    page.goto(compare_url(srv, ids["groups"], group="selector"))
    wait_ready(page)
    page.wait_for_function("document.getElementById('acc-plot').dataset.bands === '2'")
    names = page.evaluate("document.getElementById('acc-plot').data.filter(t => t.meta === 'mean').map(t => t.name)")
    assert names == ["uniform (3 runs) — baseline", "mms (3 runs)"]
    rows = page.locator("#group-table tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).locator("td.ratio-step").inner_text().startswith("1.00× ± 0.00")  # the baseline group
    assert "±" in rows.nth(1).locator("td.ratio-step").inner_text()
    # the MMS seeds learn at different speeds (the recorded uniform ones do not): its band has width
    spread = page.evaluate("""(() => { const band = document.getElementById('acc-plot').data.filter(t => t.meta === 'band')[1];
        const n = band.x.length / 2; let widest = 0;
        for (let i = 0; i < n; i++) widest = Math.max(widest, band.y[i] - band.y[2 * n - 1 - i]);
        return widest; })()""")
    assert spread > 0
    page.select_option("#group-by", "")  # back to one line per run
    page.wait_for_function("document.getElementById('acc-plot').dataset.bands === '0'")


def test_smoothing_keeps_the_raw_values_faint_behind(recorded: tuple[Server, dict[str, Any]], page: Any) -> None:
    srv, ids = recorded
    page.goto(compare_url(srv, ids["groups"][:2], key="train/accuracy"))
    wait_ready(page)
    assert page.evaluate("document.getElementById('acc-plot').data.length") == 2  # unsmoothed by default
    page.locator("#smoothing").fill("0.9")
    page.wait_for_function("document.getElementById('acc-plot').data.length === 4")
    traces = page.evaluate("document.getElementById('acc-plot').data.map(t => ({meta: t.meta || '', opacity: t.opacity ?? 1, y: t.y}))")
    raw = [t for t in traces if t["meta"] == "raw"]
    smooth = [t for t in traces if t["meta"] != "raw"]
    assert len(raw) == 2 and all(t["opacity"] < 0.5 for t in raw)

    def roughness(y: list[float]) -> float:  # the path's length beyond its net rise
        return sum(abs(a - b) for a, b in zip(y[1:], y[:-1], strict=False)) - abs(y[-1] - y[0])
    assert all(roughness(s["y"]) < 0.5 * roughness(r["y"]) for s, r in zip(smooth, raw, strict=True))
    assert "smooth=0.9" in page.url


def test_config_table_shows_only_the_fields_that_differ(recorded: tuple[Server, dict[str, Any]], page: Any) -> None:
    srv, ids = recorded
    page.goto(compare_url(srv, [ids["groups"][0], ids["groups"][4]]))  # uniform seed 0, mms seed 1
    wait_ready(page)
    page.wait_for_selector("#config-table tbody tr")
    fields = page.eval_on_selector_all("#config-table tbody tr", "rows => rows.map(r => r.dataset.field)")
    assert sorted(fields) == ["seed", "selector"]
    assert page.locator("#config-table td.differs").count() == 4
    page.check("#config-all")
    assert page.locator("#config-table tbody tr").count() > 10
    assert page.locator("#config-table td.differs").count() == 4  # still highlighted among all


def test_dark_mode_follows_the_toggle_and_the_plots_follow_it(recorded: tuple[Server, dict[str, Any]], page: Any) -> None:
    srv, ids = recorded
    page.emulate_media(color_scheme="light")
    page.goto(compare_url(srv, ids["groups"][:2]))
    wait_ready(page)
    paper = "document.getElementById('acc-plot')._fullLayout.paper_bgcolor"
    light = page.evaluate(paper)
    page.click("#theme-toggle")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.wait_for_function(f"{paper} !== {light!r}")
    background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    assert page.evaluate(paper) == "#161b22" and background == "rgb(13, 17, 23)"  # --plot-bg, --bg
    page.goto(f"{srv.url}/")  # remembered on every page
    wait_ready(page)
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    # with no choice made, the system setting decides
    page.evaluate("localStorage.removeItem('marginscope.theme')")
    page.emulate_media(color_scheme="dark")
    page.goto(f"{srv.url}/")
    wait_ready(page)
    assert page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--bg').trim()") == "#0d1117"


def test_every_page_fits_a_phone_screen(recorded: tuple[Server, dict[str, Any]], browser: Any) -> None:
    srv, ids = recorded
    context = browser.new_context(viewport=PHONE, device_scale_factor=1, is_mobile=True, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        for path in ("/", "/launch", f"/runs/{ids['groups'][3]}", f"/runs/{ids['resumed']}",
                     f"/compare?runs={','.join(map(str, ids['groups']))}&mode=side",
                     f"/compare?runs={','.join(map(str, ids['groups']))}&group=selector", "/runs/999"):
            page.goto(srv.url + path)
            if path != "/runs/999":
                wait_ready(page)
                page.wait_for_timeout(300)  # the plots' responsive resize
            width = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
            assert width[0] <= width[1], f"{path}: the page is {width[0]} px wide on a {width[1]} px screen"
        page.goto(f"{srv.url}/launch")
        wait_ready(page)
        presets = page.locator("#presets").bounding_box()
        form = page.locator("#config-fields").bounding_box()
        assert presets["y"] < form["y"]  # the presets come first on a phone
    finally:
        context.close()
    assert not errors, errors


def test_api_docs_render_with_no_request_leaving_the_machine(recorded: tuple[Server, dict[str, Any]], page: Any) -> None:
    srv, _ = recorded
    outside: list[str] = []

    def guard(route: Any) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.goto(f"{srv.url}/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    assert page.locator(".swagger-ui .opblock").count() > 10
    # the dashboard's theme toggle reaches the reference: dark when chosen, light when chosen
    darkness = "getComputedStyle(document.querySelector('.swagger-ui')).filter"
    assert page.evaluate(darkness) == "none"
    for theme, dark in (("dark", True), ("light", False)):
        page.evaluate(f"localStorage.setItem('marginscope.theme', '{theme}')")
        page.reload()
        page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
        assert ("invert" in page.evaluate(darkness)) is dark, theme
    page.goto(f"{srv.url}/redoc")
    page.wait_for_selector("redoc h1, #redoc h1, [role=navigation]", timeout=30_000)
    assert "MarginScope" in page.inner_text("body")
    assert outside == []


def test_a_run_that_does_not_exist_gets_a_not_found_page(recorded: tuple[Server, dict[str, Any]], page: Any) -> None:
    srv, _ = recorded
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.errors.expected_http.add(404)
    for path, reason in (("/runs/999", "Run 999 does not exist"), ("/runs/abc", "is not a run number")):
        answer = page.goto(srv.url + path)
        assert answer is not None and answer.status == 404
        assert "Run not found" in page.inner_text("[data-testid=not-found]")
        assert reason in page.inner_text("#not-found-reason")
        assert page.get_by_role("link", name="See all runs").is_visible()
    page.wait_for_timeout(1000)
    assert sockets == []  # nothing to watch, nothing retried


def test_the_eta_of_a_resumed_run_uses_its_recent_rate(recorded: tuple[Server, dict[str, Any]], page: Any) -> None:
    srv, ids = recorded
    page.goto(f"{srv.url}/runs/{ids['resumed']}")
    wait_ready(page)
    page.wait_for_function("document.getElementById('eta').dataset.seconds > 0")
    seconds = int(page.get_attribute("#eta", "data-seconds") or 0)
    # 800 steps at 0.045 s: 36 s; elapsed-since-first-start / step would say about 80 minutes
    assert 25 <= seconds <= 50, seconds
    assert page.inner_text("#eta").startswith("ETA ")


@pytest.mark.parametrize("view", [(WIDE, "light"), (WIDE, "dark"), (PHONE, "light"), (PHONE, "dark")],
                         ids=["1440-light", "1440-dark", "390-light", "390-dark"])
def test_the_run_page_draws_the_system_panel(recorded: tuple[Server, dict[str, Any]], browser: Any,
                                             tmp_path: Path, view: tuple[dict[str, int], str]) -> None:
    srv, ids = recorded
    size, scheme = view
    phone = size["width"] < 640
    context = browser.new_context(viewport=size, color_scheme=scheme, is_mobile=phone, has_touch=phone,
                                  device_scale_factor=1)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    shots = Path(os.environ.get("MARGINSCOPE_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    try:
        for name, rid in (("finished", ids["groups"][3]), ("running", ids["resumed"])):
            page.goto(f"{srv.url}/runs/{rid}")
            wait_ready(page)
            page.wait_for_function("() => document.getElementById('system').dataset.traces === '4'")
            names = page.evaluate("document.getElementById('system').data.map(t => t.name)")
            assert names == ["process CPU (% of a core)", "machine CPU", "machine memory", "process memory (MiB)"]
            readings = srv.api("GET", f"/api/runs/{rid}/metrics", params={"keys": "system/memory_mb"})
            drawn = page.evaluate("document.getElementById('system').data[3].y.length")
            assert drawn == len(readings["series"]["system/memory_mb"]["y"]) > 0  # every reading, none made up
            width = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
            assert width[0] <= width[1], f"the run page is {width[0]} px wide on a {width[1]} px screen"
            page.wait_for_timeout(300)  # the plots' responsive resize
            page.screenshot(path=str(shots / f"run-{name}-{size['width']}-{scheme}.png"), full_page=True)
    finally:
        context.close()
    assert not errors, errors
