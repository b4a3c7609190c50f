"""GET /api/compare: time-to-target table math on runs with hand-written evaluation events."""

from __future__ import annotations

import dataclasses

import pytest
from api_helpers import create
from fastapi.testclient import TestClient
from store_events import full_run, run_started

from marginscope.backend.recording import write_events
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore
from marginscope.engine.events import Counters, Evaluation

pytest_plugins = ["api_fixtures"]


def _evals(store: SqlAlchemyStore, rid: int, accs: list[float], *, fwd_per_step: int,
           secs_per_step: float, test: float | None = None, model: str = "small-cnn") -> None:
    """Validation every 10 steps with the given accuracies (b = 16 samples per step), after a
    RunStarted that says `model` was built."""
    started = run_started(10 * len(accs))
    events: list = [dataclasses.replace(started, model={**started.model, "name": model})]
    for i, acc in enumerate(accs, start=1):
        step = 10 * i
        c = Counters(step=step, epoch=step / 10, samples_forwarded=step * fwd_per_step,
                     samples_backpropagated=step * 16, wall_time=step * secs_per_step)
        events.append(Evaluation(counters=c, split="val", loss=1 - acc, accuracy=acc,
                                 per_class_accuracy=[acc] * 10, samples=100))
    if test is not None:
        events.append(Evaluation(counters=c, split="test", loss=1 - test, accuracy=test,
                                 per_class_accuracy=[test] * 10, samples=100))
    write_events(store, rid, events)


@pytest.fixture
def three(client: TestClient, store: SqlAlchemyStore) -> tuple[int, int, int]:
    base = create(client, selector="uniform", candidates=16)["id"]
    fast = create(client, selector="mms")["id"]
    slow = create(client, selector="entropy")["id"]
    _evals(store, base, [0.5, 0.7, 0.8], fwd_per_step=16, secs_per_step=0.1, test=0.79)
    _evals(store, fast, [0.6, 0.8, 0.85], fwd_per_step=64, secs_per_step=0.2, test=0.84)
    _evals(store, slow, [0.4, 0.5, 0.6], fwd_per_step=64, secs_per_step=0.2)
    return base, fast, slow


def test_default_target_is_the_baseline_best(client: TestClient, three: tuple[int, int, int]) -> None:
    base, fast, slow = three
    r = client.get(f"/api/compare?runs={base},{fast},{slow}&baseline={base}")
    assert r.status_code == 200
    body = r.json()
    assert body["target"] == pytest.approx(0.8) and body["baseline"] == base
    rows = {row["run_id"]: row for row in body["table"]}
    assert [row["run_id"] for row in body["table"]] == [base, fast, slow]  # never dropped
    b, f, s = rows[base], rows[fast], rows[slow]
    assert b["reached"] and b["step"] == 30 and b["samples_backpropagated"] == 480
    assert b["ratios"] == {"step": 1.0, "samples_backpropagated": 1.0, "samples_forwarded": 1.0,
                           "wall_time": 1.0}
    assert f["reached"] and f["step"] == 20 and f["samples_forwarded"] == 20 * 64
    assert f["ratios"]["step"] == pytest.approx(20 / 30)
    assert f["ratios"]["samples_backpropagated"] == pytest.approx(320 / 480)
    assert f["ratios"]["samples_forwarded"] == pytest.approx((20 * 64) / (30 * 16))
    assert f["ratios"]["wall_time"] == pytest.approx((20 * 0.2) / (30 * 0.1))
    assert f["best"] == pytest.approx(0.85) and f["final_test"] == pytest.approx(0.84)
    assert s["reached"] is False and s["ratios"] is None and s["step"] is None
    assert s["best"] == pytest.approx(0.6) and s["final_test"] is None
    assert set(body["series"]) == {str(base), str(fast), str(slow)}
    assert body["series"][str(fast)]["y"] == pytest.approx([0.6, 0.8, 0.85])
    assert [run["id"] for run in body["runs"]] == [base, fast, slow]


def test_given_target_and_other_baseline(client: TestClient, three: tuple[int, int, int]) -> None:
    base, fast, slow = three
    body = client.get(f"/api/compare?runs={base},{fast},{slow}&baseline={fast}&target=0.6&x=wall_time").json()
    rows = {row["run_id"]: row for row in body["table"]}
    assert body["target"] == 0.6 and body["x"] == "wall_time"
    assert rows[fast]["step"] == 10 and rows[base]["step"] == 20 and rows[slow]["step"] == 30
    assert rows[base]["ratios"]["step"] == pytest.approx(2.0)
    assert rows[slow]["ratios"]["step"] == pytest.approx(3.0)
    assert body["series"][str(base)]["x"] == pytest.approx([1.0, 2.0, 3.0])


def test_baseline_defaults_to_the_first_run(client: TestClient, three: tuple[int, int, int]) -> None:
    base, fast, _ = three
    body = client.get(f"/api/compare?runs={fast},{base}").json()
    assert body["baseline"] == fast and body["target"] == pytest.approx(0.85)
    rows = {row["run_id"]: row for row in body["table"]}
    assert rows[base]["reached"] is False and rows[base]["ratios"] is None


def test_a_baseline_without_values_gives_no_target(client: TestClient, three: tuple[int, int, int]) -> None:
    base, fast, _ = three
    empty = create(client)["id"]
    body = client.get(f"/api/compare?runs={empty},{base},{fast}").json()
    assert body["target"] is None
    assert all(row["reached"] is False and row["ratios"] is None for row in body["table"])
    assert {row["run_id"]: row["best"] for row in body["table"]}[fast] == pytest.approx(0.85)


def test_loss_keys_count_lower_as_better(client: TestClient, three: tuple[int, int, int]) -> None:
    base, fast, _ = three
    body = client.get(f"/api/compare?runs={base},{fast}&key=val/loss").json()
    assert body["target"] == pytest.approx(0.2)  # the baseline's lowest loss
    rows = {row["run_id"]: row for row in body["table"]}
    assert rows[base]["step"] == 30 and rows[fast]["step"] == 20


@pytest.mark.parametrize("query", ["runs=abc", "runs=", "runs=1,x", "runs=1&baseline=2",
                                   "runs=1&x=bogus", "runs=1&target=nan", ""])
def test_compare_bad_input_is_422(client: TestClient, query: str) -> None:
    create(client)
    assert client.get(f"/api/compare?{query}").status_code == 422


def test_compare_unknown_run_is_404(client: TestClient) -> None:
    rid = create(client)["id"]
    assert client.get(f"/api/compare?runs={rid},999").status_code == 404


def test_one_answer_carries_what_the_compare_page_draws(client: TestClient, store: SqlAlchemyStore) -> None:
    """`also` and `histograms` give every run's extra series and margin histograms, the same as
    the per-run endpoints would, so the page needs one request however many runs it shows."""
    full, bare = create(client)["id"], create(client)["id"]
    write_events(store, full, full_run(30))
    write_events(store, bare, [run_started(30)])
    body = client.get("/api/compare", params={
        "runs": f"{full},{bare}", "also": "train/loss, mms/candidates/p50,val/accuracy",
        "histograms": "selected", "hist_rows": 3}).json()
    assert set(body["also"]) == {"train/loss", "mms/candidates/p50"}  # the main key is not repeated
    for key, series in body["also"].items():
        one = client.get(f"/api/runs/{full}/metrics", params={"keys": key}).json()["series"][key]
        assert series[str(full)] == one and series[str(full)]["x"]
        assert series[str(bare)]["x"] == []
    assert list(body["histograms"]) == [str(full)]  # a run without histograms is left out
    one = client.get(f"/api/runs/{full}/histograms", params={"population": "selected", "max_rows": 3}).json()
    assert body["histograms"][str(full)] == one and len(one["steps"]) <= 3
    plain = client.get("/api/compare", params={"runs": full}).json()
    assert plain["also"] == {} and plain["histograms"] == {}  # asked for only
    bad = client.get("/api/compare", params={"runs": full, "histograms": "everyone"})
    assert bad.status_code == 422 and "histograms" in bad.text


def test_ratios_pair_only_like_with_like(client: TestClient, store: SqlAlchemyStore) -> None:
    """A run of another dataset or model than the baseline's reached the target too, but steps to a
    digits accuracy say nothing about MNIST: no ratios, and the row says what differs."""
    base = create(client, selector="uniform", candidates=16)["id"]
    same = create(client, selector="mms")["id"]
    other_data = create(client, selector="mms", dataset="mnist")["id"]
    other_both = create(client, selector="mms", dataset="mnist", model="resnet20")["id"]
    for rid in (base, same, other_data, other_both):
        _evals(store, rid, [0.5, 0.7, 0.8], fwd_per_step=16, secs_per_step=0.1,
               model="resnet20" if rid == other_both else "small-cnn")
    r = client.get(f"/api/compare?runs={base},{same},{other_data},{other_both}&baseline={base}")
    rows = {row["run_id"]: row for row in r.json()["table"]}
    assert rows[base]["unlike_baseline"] == [] and rows[same]["unlike_baseline"] == []
    assert rows[same]["ratios"]["step"] == pytest.approx(1.0)
    assert rows[other_data]["unlike_baseline"] == ["dataset"] and rows[other_data]["ratios"] is None
    assert rows[other_both]["unlike_baseline"] == ["dataset", "model"] and rows[other_both]["ratios"] is None
    assert all(row["reached"] for row in rows.values())  # kept in the table, just not paired
