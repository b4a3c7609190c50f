"""Seed groups on the compare page in a real Chromium, on recorded runs of unequal lengths and of
two datasets: a group's mean goes on over the runs that still have a point (n on hover), groups
never pool datasets unless asked, and ratios pair only like with like.

The runs (recorded_runs.py, not trained), digits unless said: uniform seeds 0-2 and mms seeds 0-2,
300 steps each; mms seed 3 cancelled at step 106; mms seed 4 still running at step 50; and one
MNIST mms seed 0, 300 steps. Validation every 100 steps, training metrics every 10.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dashboard_helpers import Server, keep_screenshot, wait_ready
from recorded_runs import record

pytestmark = pytest.mark.browser

STEPS = 300
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, Any]]]:
    from marginscope.backend.settings import Settings
    from marginscope.backend.store import RunStatus, open_store

    srv = Server(tmp_path_factory.mktemp("groups"))
    srv.env["MARGINSCOPE_STALE_AFTER"] = "3600"  # the recorded running run has no worker
    srv.migrate()
    store = open_store(Settings(data_dir=srv.data_dir, db_url=""))
    try:
        ids = {
            "uniform": [record(store, f"uniform-s{s}", s, "uniform", steps=STEPS, dataset="digits") for s in range(3)],
            "mms": [record(store, f"mms-s{s}", s, "mms", steps=STEPS, dataset="digits") for s in range(3)],
            "cut": record(store, "mms-s3", 3, "mms", steps=106, dataset="digits", finished=False),
            "young": record(store, "mms-s4", 4, "mms", steps=50, dataset="digits", finished=False),
            "mnist": record(store, "mms-mnist-s0", 0, "mms", steps=STEPS, dataset="mnist"),
        }
        store.set_status(ids["cut"], RunStatus.CANCELLED)
    finally:
        store.close()
    srv.start()
    try:
        yield srv, ids
    finally:
        srv.stop()


def url(srv: Server, ids: list[int], **extra: str) -> str:
    query = "".join(f"&{k}={v}" for k, v in extra.items())
    return f"{srv.url}/compare?runs={','.join(map(str, ids))}&baseline={ids[0]}{query}"


def digits(ids: dict[str, Any]) -> list[int]:
    return [*ids["uniform"], *ids["mms"], ids["cut"], ids["young"]]


MEANS = """(id => document.getElementById(id).data.filter(t => t.meta === 'mean')
    .map(t => ({name: t.name, x: t.x, y: t.y, n: t.customdata})))"""


def mean_of(page: Any, plot: str, name: str) -> dict[str, Any]:
    means = {m["name"]: m for m in page.evaluate(MEANS, plot)}
    assert name in means, list(means)
    return means[name]


def n_at(mean: dict[str, Any], x: float) -> int:
    return int(mean["n"][mean["x"].index(x)])


def test_a_group_goes_on_over_the_runs_that_have_a_point(recorded: tuple[Server, dict[str, Any]], page: Any) -> None:
    """One seed cancelled at step 106, one still at step 50: the mms mean still reaches step 300,
    over the seeds that got there, and says over how many on hover."""
    srv, ids = recorded
    page.goto(url(srv, digits(ids), group="selector"))
    wait_ready(page)
    page.wait_for_function("document.getElementById('acc-plot').dataset.bands === '2'")
    mms = mean_of(page, "acc-plot", "mms (5 runs)")
    assert max(mms["x"]) == STEPS  # not cut to the shortest run (step 100)
    assert n_at(mms, 100) == 4 and n_at(mms, 200) == 3 and n_at(mms, 300) == 3  # the young run has no evaluation yet
    page.select_option("#key", "train/accuracy")  # every 10 steps: the young run counts up to step 50
    page.wait_for_function("document.getElementById('acc-plot').dataset.bands === '2' && "
                           "document.getElementById('acc-plot').data.some(t => t.meta === 'mean' && t.x.length > 3)")
    mms = mean_of(page, "acc-plot", "mms (5 runs)")
    assert (n_at(mms, 50), n_at(mms, 60), n_at(mms, 100), n_at(mms, 110), n_at(mms, 300)) == (5, 4, 4, 3, 3)
    loss = mean_of(page, "loss-plot", "mms (5 runs)")
    assert max(loss["x"]) == STEPS and n_at(loss, 300) == 3  # the loss plot is drawn the same way
    hover = page.evaluate("document.getElementById('acc-plot').data.find(t => t.meta === 'mean' && t.name.startsWith('mms')).hovertemplate")
    assert "mean of %{customdata} of 5" in hover
    # the group table still lists every run
    assert page.locator("#group-table tbody tr[data-group='mms'] td").nth(1).inner_text() == "5"


def test_the_band_is_over_the_runs_that_have_a_point(recorded: tuple[Server, dict[str, Any]], page: Any) -> None:
    """Where only the three full seeds remain, the band is their mean ± sd, computed here from
    their own curves as the API serves them."""
    srv, ids = recorded
    page.goto(url(srv, digits(ids), group="selector", key="train/accuracy"))
    wait_ready(page)
    page.wait_for_function("document.getElementById('acc-plot').dataset.bands === '2'")
    series = srv.api("GET", "/api/compare", params={"runs": ",".join(map(str, digits(ids))), "key": "train/accuracy",
                                                  "max_points": 1500})["series"]
    at = 250
    values = [series[str(i)]["y"][series[str(i)]["x"].index(at)] for i in ids["mms"]]
    mean = sum(values) / 3
    sd = (sum((v - mean) ** 2 for v in values) / 2) ** 0.5
    band = page.evaluate("""(at => { const t = document.getElementById('acc-plot').data.filter(t => t.meta === 'band')[1];
        const n = t.x.length / 2; const i = t.x.slice(0, n).indexOf(at);
        return [t.y[i], t.y[2 * n - 1 - i]]; })""", at)
    assert band == pytest.approx([mean + sd, mean - sd])


def test_groups_never_pool_datasets_unless_asked(recorded: tuple[Server, dict[str, Any]], page: Any) -> None:
    srv, ids = recorded
    runs = [*ids["uniform"], *ids["mms"], ids["mnist"]]
    page.goto(url(srv, runs, group="selector"))
    wait_ready(page)
    page.wait_for_function("document.getElementById('acc-plot').dataset.bands === '3'")
    names = [m["name"] for m in page.evaluate(MEANS, "acc-plot")]
    assert names == ["uniform · dataset digits (3 runs) — baseline", "mms · dataset digits (3 runs)",
                     "mms · dataset mnist (1 run)"]
    notice = page.locator("#group-notice")
    assert notice.is_visible() and "dataset (digits, mnist)" in notice.inner_text()
    # ratios pair like with like: the MNIST run has no digits baseline to be measured against
    rows = page.locator("#group-table tbody tr")
    assert rows.count() == 3
    mnist = page.locator("#group-table tbody tr[data-group='mms · dataset mnist'] td.ratio-step")
    assert mnist.inner_text() == "–" and mnist.get_attribute("data-unpaired") == "1"
    assert "no baseline run of their dataset" in (mnist.get_attribute("title") or "")
    digits_mms = page.locator("#group-table tbody tr[data-group='mms · dataset digits'] td.ratio-step")
    assert "±" in digits_mms.inner_text()
    # the per-run table says the same of that run
    row = page.locator(f"#ttt-table tbody tr[data-run-id='{ids['mnist']}']")
    assert row.get_attribute("data-unlike") == "dataset"
    assert "other dataset" in row.locator("td").first.inner_text() and row.locator("td").nth(9).inner_text() == "–"
    # asked to pool: one mms group of both datasets, with a warning; its ratios still pair by dataset
    page.check("#pool")
    page.wait_for_function("document.getElementById('acc-plot').dataset.bands === '2'")
    names = [m["name"] for m in page.evaluate(MEANS, "acc-plot")]
    assert names == ["uniform (3 runs) — baseline", "mms (4 runs)"]
    assert "pool runs of different dataset (digits, mnist)" in notice.inner_text()
    pooled = page.locator("#group-table tbody tr[data-group='mms'] td.ratio-step")
    assert pooled.get_attribute("data-unpaired") == "1"
    assert "pool=1" in page.url
    page.reload()
    wait_ready(page)
    assert page.is_checked("#pool")


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_grouped_page_fits_and_is_captured(recorded: tuple[Server, dict[str, Any]], browser: Any,
                                           viewport: dict[str, int], theme: str) -> None:
    """The grouped compare page with its notice at 1440×900 and 390×844, light and dark: nothing
    wider than the screen (screenshots: `keep_screenshot`)."""
    srv, ids = recorded
    phone = viewport is PHONE
    context = browser.new_context(viewport=viewport, is_mobile=phone, has_touch=phone, color_scheme=theme)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(url(srv, [*digits(ids), ids["mnist"]], group="selector"))
        wait_ready(page)
        page.wait_for_timeout(300)  # the plots' responsive resize
        assert page.locator("#group-notice").is_visible()
        width = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert width[0] <= width[1], f"the page is {width[0]} px wide on a {width[1]} px screen"
        keep_screenshot(page, f"compare-groups-{'phone' if phone else 'desktop'}-{theme}")
    finally:
        context.close()
    assert not errors, errors
