"""The compare page's load time with 10 runs of realistic size, in a real Chromium.

Training ten runs would take minutes on 2 CPU cores, so the runs are recorded instead: plausible
engine event streams (2,000 steps; step metrics and MMS histograms of 60 bins every 10 steps,
validation every 100) written through the project's own store before the server starts. The
page then loads exactly what it would after real runs: compare curves for two metrics, 10 runs'
histograms and median-MMS series.
"""

from __future__ import annotations

import bisect
import json
import math
import random
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import Server, shot, wait_ready

from backend.recording import write_events
from engine.config import TrainConfig
from engine.events import ClassSelection, Counters, Evaluation, Histogram, RunFinished, RunStarted, StepMetrics
from engine.monitoring import histogram_edges

pytestmark = pytest.mark.browser

STEPS, EVERY, EVAL_EVERY, BINS, B, b = 2000, 10, 100, 60, 640, 64


def recorded_run(seed: int, selector: str) -> list[Any]:
    """A training run's events: accuracy rises towards ~99%, margins grow by orders of magnitude."""
    rng = random.Random(seed)
    edges = histogram_edges(BINS).tolist()
    pool = b if selector == "uniform" else B
    speed = 350 if selector == "uniform" else 220 + 20 * seed
    events: list[Any] = [RunStarted(
        config={}, dataset={"name": "mnist", "num_train": 45000, "num_classes": 10,
                            "class_names": [str(i) for i in range(10)]},
        model={"name": "small-cnn", "parameters": 151402}, device="cpu", total_steps=STEPS,
        steps_per_epoch=45000 // b, hist_edges=edges)]

    def counters(step: int) -> Counters:
        return Counters(step=step, epoch=step * b / 45000, samples_forwarded=step * (pool + b if pool > b else b),
                        samples_backpropagated=step * b, wall_time=step * (0.01 if pool == b else 0.045))

    for step in range(EVERY, STEPS + 1, EVERY):
        c = counters(step)
        acc = 0.99 - 0.89 * math.exp(-step / speed)
        events.append(StepMetrics(counters=c, lr=0.1 if step < 1500 else 0.01, loss=-math.log(max(acc, 0.05)) + 0.02,
                                  accuracy=min(1.0, acc + rng.uniform(-0.02, 0.02)), samples_per_s=1500.0,
                                  score_time=0.03, step_time=0.045))
        centre = -2.5 + 3 * (1 - math.exp(-step / speed))  # log10 of the typical margin
        for population, shift in (("candidates", 0.0), ("selected", -0.7 if selector != "uniform" else 0.0)):
            n = pool if population == "candidates" else b
            scores = [10 ** rng.gauss(centre + shift, 0.6) for _ in range(n)]
            counts = [0] * BINS
            for s in scores:
                counts[min(BINS - 1, bisect.bisect_right(edges, s) - 1)] += 1
            srt = sorted(scores)
            q = {f"p{p}": srt[min(n - 1, int(p / 100 * n))] for p in (5, 25, 50, 75, 95)}
            events.append(Histogram(counters=c, population=population, counts=counts, quantiles=q,
                                    mean=sum(scores) / n, count=n,
                                    threshold=srt[-1] if population == "selected" and selector != "uniform" else None))
        events.append(ClassSelection(counters=c, candidate_counts=[pool // 10] * 10,
                                     selected_counts=[b // 10] * 10, selected_misclassified=max(0.0, 0.5 - acc / 2)))
        if step % EVAL_EVERY == 0:
            events.append(Evaluation(counters=c, split="val", loss=-math.log(max(acc, 0.05)), accuracy=acc,
                                     per_class_accuracy=[acc] * 10, samples=5000))
    events.append(RunFinished(counters=counters(STEPS), status="finished"))
    return events


@pytest.fixture(scope="module")
def recorded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, list[int]]]:
    from backend.settings import Settings
    from backend.store import open_store

    srv = Server(tmp_path_factory.mktemp("recorded"))
    srv.migrate()
    store = open_store(Settings(data_dir=srv.data_dir, db_url=""))
    ids = []
    try:
        for k in range(10):
            selector = "uniform" if k == 0 else "mms"
            config = TrainConfig(dataset="mnist", selector=selector, candidates=B, batch_size=b, seed=k,
                                 hist_every=EVERY, log_every=EVERY).model_dump(mode="json")
            run = store.create_run(name=f"rec-{k}", config=config, tags=["recorded"])
            store.set_status(run.id, "running")
            events = recorded_run(k, selector)
            for i in range(0, len(events), 500):
                write_events(store, run.id, events[i:i + 500])
            store.set_status(run.id, "finished")
            ids.append(run.id)
    finally:
        store.close()
    srv.start()
    try:
        yield srv, ids
    finally:
        srv.stop()


def test_compare_page_loads_ten_runs(recorded_server: tuple[Server, list[int]], page: Any,
                                             tmp_path: Path) -> None:
    srv, ids = recorded_server
    url = f"{srv.url}/compare?runs={','.join(map(str, ids))}&baseline={ids[0]}&x=step&key=val/accuracy"
    times = []
    for attempt in range(3):  # the first load also fetches and compiles plotly.js
        page.goto(url)
        wait_ready(page)
        times.append(page.evaluate("window.__compareLoadMs"))
        nav = page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")
        if attempt == 0:
            first_nav = nav
    assert page.locator("#ttt-table tbody tr").count() == 10
    assert page.locator("#acc-plot .scatterlayer .trace").count() == 10
    assert page.locator("#median-plot .scatterlayer .trace").count() == 10
    ratios = page.locator(f"#ttt-table tbody tr[data-run-id='{ids[1]}'] td").nth(9).inner_text()
    assert "faster" in ratios  # recorded MMS runs reach the uniform run's best in fewer steps
    shot(page, "compare-10-runs")
    report = {"load_ms_per_attempt": times, "median_ms": statistics.median(times),
              "first_dom_content_loaded_ms": first_nav["domContentLoadedEventEnd"]}
    (tmp_path / "compare_load.json").write_text(json.dumps(report, indent=2))
    print("compare-load", json.dumps(report))  # reported for the note; speed is never asserted
