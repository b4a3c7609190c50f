"""Sweeps, "Run again" and the checkpoint download in a real Chromium against the real server.

The launch form's sweep box (several seeds, a grid row per varied field) shows how many runs the
server's plan makes, a summary of them before anything launches, and a 422 beside the row it is
about; a confirmed sweep queues every run, tagged together, and opens the runs list filtered on
that tag. "Run again" fills the form with every setting of a run: launched unchanged but for one
field, the new run's stored config is the old one's but for that field. The run page offers the
checkpoint file once the server holds it, and says why not before. Tiny `digits` runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import Server, keep_screenshot, shot, wait_ready

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}
TINY = {"dataset": "digits", "candidates": 64, "batch_size": 16, "steps": 10, "hist_every": 5, "log_every": 5}


def fill_tiny(page: Any, name: str) -> None:
    page.fill("#f-name", name)
    page.select_option("#f-dataset", "digits")
    page.fill("#f-steps", "10")
    page.fill("#f-candidates", "64")
    page.fill("#f-batch_size", "16")


def vary(page: Any, row: int, field: str, values: str) -> None:
    """Fill grid row `row` (adding it when it is not there yet)."""
    rows = page.locator("#grid-rows .grid-row")
    if rows.count() <= row:
        page.click("#grid-add")
    page.locator("#grid-rows .grid-row").nth(row).locator("select").select_option(field)
    page.locator("#grid-rows .grid-row").nth(row).locator(".grid-values").fill(values)


def wait_count(page: Any, count: int) -> str:
    page.locator(f"#sweep-count[data-count='{count}']").wait_for()
    return str(page.inner_text("#sweep-count"))


def fits(page: Any, what: str) -> None:
    width = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert width[0] <= width[1], f"{what}: {width[0]} px wide on a {width[1]} px screen"


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_sweep_form_and_its_summary_fit(server: Server, browser: Any, viewport: dict[str, int],
                                            theme: str) -> None:
    """A grid of 3 seeds × 2 learning rates × 2 selectors at 1440×900 and 390×844, light and dark:
    the count, then the summary of 12 runs in the confirmation, nothing wider than the screen;
    keeping the form launches nothing (screenshots: `keep_screenshot`)."""
    phone = viewport is PHONE
    context = browser.new_context(viewport=viewport, is_mobile=phone, has_touch=phone, color_scheme=theme)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{server.url}/launch")
        wait_ready(page)
        fill_tiny(page, "a-rather-long-sweep-name-for-the-layout")
        page.fill("#f-seeds", "0, 1, 2")
        vary(page, 0, "lr", "0.05, 0.1")
        vary(page, 1, "selector", "uniform, mms")
        assert wait_count(page, 12) == "12 runs: 3 seed × 2 lr × 2 selector"
        assert page.inner_text("#submit-btn") == "Launch 12 runs…"
        fits(page, "the form")
        page.locator("#sweep").scroll_into_view_if_needed()
        keep_screenshot(page, f"launch-sweep-{'phone' if phone else 'desktop'}-{theme}")
        page.click("#submit-btn")
        dialog = page.locator("dialog[data-testid='confirm-dialog']")
        dialog.wait_for()
        rows = dialog.locator("tbody tr")
        assert rows.count() == 12
        heads = dialog.locator("thead th").all_inner_texts()
        assert heads == ["#", "name", "seed", "lr", "selector"]
        assert rows.nth(11).locator("td").all_inner_texts()[2:] == ["2", "0.1", "mms"]
        box = dialog.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], box
        fits(page, "the summary")
        keep_screenshot(page, f"launch-sweep-summary-{'phone' if phone else 'desktop'}-{theme}")
        dialog.get_by_role("button", name="Keep").click()
        dialog.wait_for(state="detached")
        assert page.url.endswith("/launch")
    finally:
        context.close()
    assert not errors, errors
    assert server.api("GET", "/api/runs", params={"filter": "name LIKE 'a-rather-long%'"})["count"] == 0


def test_a_bad_value_is_shown_beside_its_row_and_nothing_launches(server: Server, page: Any) -> None:
    page.errors.expected_http.add(422)  # the server's answers; Chromium logs them as console errors
    page.goto(f"{server.url}/launch")
    wait_ready(page)
    fill_tiny(page, "bad-grid")
    vary(page, 0, "lr", "0.1, -1")
    row = page.locator("#grid-rows .grid-row").first
    row.locator(".error").filter(has_text="lr = -1").wait_for()
    assert "greater than 0" in row.locator(".error").inner_text()
    assert "cannot launch" in page.inner_text("#sweep-count")
    vary(page, 0, "lr", "0.1, x")  # read by the page: not a number
    row.locator(".error").filter(has_text="“x” is not a number").wait_for()
    vary(page, 0, "lr", "0.05, 0.1")
    page.fill("#f-seeds", ", ".join(map(str, range(51))))  # 102 runs: over the cap
    page.locator("#error-grid").filter(has_text="makes 102 runs").wait_for()
    page.click("#submit-btn")  # refused again, before any dialog
    page.locator("#error-grid").filter(has_text="at most 100").wait_for()
    assert page.locator("dialog").count() == 0
    page.fill("#f-seeds", "0, 1")
    assert wait_count(page, 4) == "4 runs: 2 seed × 2 lr"
    assert page.inner_text("#error-grid") == "" and row.locator(".error").inner_text() == ""
    assert server.api("GET", "/api/runs", params={"filter": "name LIKE 'bad-grid%'"})["count"] == 0


def test_a_sweep_launches_every_run_tagged_together(server: Server, page: Any) -> None:
    page.goto(f"{server.url}/launch")
    wait_ready(page)
    fill_tiny(page, "seeds-lr")
    page.fill("#f-seeds", "0, 1")
    vary(page, 0, "lr", "0.05, 0.1")
    wait_count(page, 4)
    page.click("#submit-btn")
    page.locator("dialog").get_by_role("button", name="Launch 4 runs").click()
    page.wait_for_url("**/?q=*")
    wait_ready(page)
    runs = server.api("GET", "/api/runs", params={"filter": "name LIKE 'seeds-lr%'"})["data"]
    assert len(runs) == 4
    [tag] = {t for r in runs for t in r["tags"]}
    assert tag.startswith("sweep:")
    assert sorted((r["config"]["seed"], r["config"]["lr"]) for r in runs) == [(0, 0.05), (0, 0.1), (1, 0.05), (1, 0.1)]
    assert {r["config"]["steps"] for r in runs} == {10}
    # the list opens filtered on the sweep's tag: its four runs and nothing else
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length === 4")
    assert sorted(int(i) for i in page.eval_on_selector_all(
        "#runs-table tbody tr", "rows => rows.map(r => r.dataset.runId)")) == sorted(r["id"] for r in runs)
    assert tag in page.input_value("#filter-text")
    shot(page, "sweep-launched")


# every field a run can set that the form shows, each away from its default
COPIED: dict[str, Any] = {
    **TINY, "name": None, "steps": 12, "epochs": 3.0, "eval_every": 6, "eval_samples": 200, "log_every": 3,
    "hist_every": 4, "hist_bins": 30, "checkpoint_every": 6, "samples_every": 4, "samples_k": 8,
    "lr": 0.07, "momentum": 0.8, "weight_decay": 0.0005, "regime": [[0.5, 0.1]], "warmup_epochs": 0.1,
    "train_subset": 300, "val_fraction": 0.2, "augment": False, "label_noise": 0.1, "selector": "mms",
    "selector_options": {"mix": 0.25, "chunk": 32, "late_after": 0.5}, "bn_stats": "batch", "amp": False,
    "channels_last": False, "threads": 1, "score_chunk": 32, "seed": 5, "model": "small-cnn",
}


def test_run_again_copies_every_setting(server: Server, page: Any) -> None:
    config = {k: v for k, v in COPIED.items() if k != "name"}
    old = server.api("POST", "/api/runs", json={"name": "original", "config": config, "tags": ["keep", "sweep:abc123"]})
    page.goto(f"{server.url}/runs/{old['id']}")
    wait_ready(page)
    page.click("#run-again")
    page.wait_for_url(f"**/launch?from={old['id']}")
    wait_ready(page)
    assert f"run #{old['id']} original" in page.inner_text("[data-testid=copied-from]")
    assert page.input_value("#f-name") == "original" and page.input_value("#f-tags") == "keep"
    page.fill("#f-seed", "6")  # the one change
    page.click("#submit-btn")
    page.wait_for_url("**/runs/*")
    new = server.api("GET", f"/api/runs/{int(page.url.rstrip('/').split('/')[-1])}")
    assert new["id"] != old["id"] and new["name"] == "original" and new["tags"] == ["keep"]
    differ = {k for k in old["config"] if old["config"][k] != new["config"].get(k)}
    assert differ == {"seed"} and new["config"]["seed"] == 6
    assert set(new["config"]) == set(old["config"])
    # the runs table offers it too
    page.goto(f"{server.url}/")
    wait_ready(page)
    again = page.locator(f"tr[data-run-id='{old['id']}'] [data-action='again']")
    assert again.get_attribute("href") == f"/launch?from={old['id']}"


def test_the_checkpoint_downloads_from_the_run_page(server: Server, page: Any, tmp_path: Path) -> None:
    failed = server.launch("no-checkpoint", **{**TINY, "dataset": "imagefolder:missing-folder"})
    server.wait_status(failed["id"], {"failed"})
    page.goto(f"{server.url}/runs/{failed['id']}")
    wait_ready(page)
    link = page.locator("#checkpoint-link")
    assert link.get_attribute("aria-disabled") == "true" and link.get_attribute("href") is None
    assert "this run saved none" in page.inner_text("[data-testid=checkpoint-note]")

    run = server.launch("with-checkpoint", **TINY)
    done = server.wait_status(run["id"], {"finished"})
    assert done["checkpoint_step"] == 10
    page.goto(f"{server.url}/runs/{run['id']}")
    wait_ready(page)
    page.wait_for_function("document.getElementById('checkpoint-link').getAttribute('aria-disabled') === 'false'")
    assert page.locator("[data-testid=checkpoint-note]").is_hidden()
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == f"run-{run['id']}-checkpoint.pt"
    saved = tmp_path / "downloaded.pt"
    download.save_as(saved)
    assert saved.read_bytes() == (server.data_dir / "runs" / str(run["id"]) / "checkpoint.pt").read_bytes()
