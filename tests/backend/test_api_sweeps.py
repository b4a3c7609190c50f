"""REST tests of /api/sweeps: a grid expands into validated runs queued all or none, the preview
shows the same plan and queues nothing, and every refusal is a 422 naming the bad field and value."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import TINY, TOKEN
from fastapi.testclient import TestClient

from marginscope.backend.store import InvalidArgument, NewRun
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore
from marginscope.backend.sweeps import MAX_SWEEP_RUNS

pytest_plugins = ["api_fixtures"]

GRID: dict[str, list[Any]] = {"lr": [0.05, 0.1], "seed": [0, 1, 2]}


def sweep(client: TestClient, path: str = "/api/sweeps", **body: Any) -> Any:
    return client.post(path, json={"name": "lr-sweep", "config": TINY, "tags": ["mine"], **body})


def run_count(client: TestClient) -> int:
    return int(client.get("/api/runs").json()["count"])


def test_a_grid_queues_one_run_per_combination_tagged_together(client: TestClient) -> None:
    r = sweep(client, grid=GRID)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["count"] == 6 and body["varying"] == ["lr", "seed"]
    assert body["tag"] == f"sweep:{body['id']}"
    runs = body["data"]
    assert [(x["config"]["lr"], x["config"]["seed"]) for x in runs] == [
        (lr, seed) for lr in GRID["lr"] for seed in GRID["seed"]]
    assert runs[0]["name"] == "lr-sweep lr=0.05 seed=0"
    assert all(x["status"] == "queued" and x["tags"] == ["mine", body["tag"]] for x in runs)
    # everything but the grid's fields is the base config's
    base = {k: v for k, v in runs[0]["config"].items() if k not in GRID}
    assert all({k: v for k, v in x["config"].items() if k not in GRID} == base for x in runs)
    assert base["candidates"] == TINY["candidates"] and base["steps"] == TINY["steps"]
    # findable together: the tag filter and the search syntax select exactly the sweep
    found = client.get("/api/runs", params={"tag": body["tag"]}).json()
    assert found["count"] == 6
    assert client.get("/api/runs", params={"filter": f"tags.`{body['tag']}`"}).json()["count"] == 6


def test_the_preview_is_the_plan_and_queues_nothing(client: TestClient) -> None:
    r = sweep(client, "/api/sweeps/preview", grid={**GRID, "selector": ["uniform"]})
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["count"] == 6 and plan["varying"] == ["lr", "seed"]  # one value does not vary
    assert plan["runs"][5] == {"name": "lr-sweep lr=0.1 seed=2", "values": {"lr": 0.1, "seed": 2},
                               "config": plan["runs"][5]["config"]}
    assert plan["runs"][5]["config"]["selector"] == "uniform"
    assert run_count(client) == 0
    launched = sweep(client, grid={**GRID, "selector": ["uniform"]}).json()["data"]
    assert [x["config"] for x in launched] == [p["config"] for p in plan["runs"]]


def test_no_grid_is_one_run_with_the_plain_name(client: TestClient) -> None:
    body = sweep(client).json()
    assert body["count"] == 1 and body["varying"] == [] and body["data"][0]["name"] == "lr-sweep"


@pytest.mark.parametrize(("grid", "loc", "words"), [
    ({"lr": [0.1, -1]}, ["body", "grid", "lr", 1], "lr = -1: Input should be greater than 0"),
    ({"selector": ["mms", "nope"]}, ["body", "grid", "selector", 1], "selector = nope"),
    ({"seed": [0, "1"]}, ["body", "grid", "seed", 1], "valid integer"),
    ({"lr_typo": [0.1]}, ["body", "grid", "lr_typo"], "not a config field"),
    ({"out_dir": ["x"]}, ["body", "grid", "out_dir"], "server sets out_dir"),
    ({"seed": [0, 1, 0]}, ["body", "grid", "seed", 2], "listed twice"),
    ({"seed": []}, ["body", "grid", "seed"], "at least 1 item"),
])
def test_a_bad_value_is_a_422_naming_the_field_and_value_and_queues_nothing(
        client: TestClient, grid: dict[str, list[Any]], loc: list[Any], words: str) -> None:
    for path in ("/api/sweeps/preview", "/api/sweeps"):
        r = sweep(client, path, grid=grid)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert [d["loc"] for d in detail] == [loc], detail
        assert words in detail[0]["msg"]
    assert run_count(client) == 0


def test_too_many_runs_is_a_422_saying_how_many(client: TestClient) -> None:
    grid = {"seed": list(range(MAX_SWEEP_RUNS // 2 + 1)), "lr": [0.05, 0.1]}
    r = sweep(client, grid=grid)
    assert r.status_code == 422
    [detail] = r.json()["detail"]
    assert detail["loc"] == ["body", "grid"]
    assert f"makes {2 * len(grid['seed'])} runs" in detail["msg"] and f"at most {MAX_SWEEP_RUNS}" in detail["msg"]
    assert run_count(client) == 0
    assert sweep(client, grid={"seed": list(range(MAX_SWEEP_RUNS))}).status_code == 201  # the cap itself


def test_one_bad_combination_refuses_the_whole_sweep(client: TestClient) -> None:
    """batch_size 128 breaks candidates >= batch_size (64) only in its own runs: none is queued."""
    r = sweep(client, grid={"batch_size": [16, 128], "seed": [0, 1]})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert [d["loc"] for d in detail] == [["body", "grid"]]  # the same rule broken twice: said once
    assert "candidates (B=64) must be at least batch_size (b=128)" in detail[0]["msg"]
    assert "in the run with batch_size=128 seed=0" in detail[0]["msg"]
    assert run_count(client) == 0


def test_text_the_store_refuses_leaves_no_run_behind(client: TestClient) -> None:
    r = sweep(client, grid=GRID, tags=["ok", "bad\x00tag"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "tags", 1]
    assert run_count(client) == 0


def test_create_runs_is_one_transaction(store: SqlAlchemyStore) -> None:
    runs = [NewRun(name="fine", config=TINY), NewRun(name="x" * 500, config=TINY)]
    with pytest.raises(InvalidArgument):
        store.create_runs(runs)
    assert store.list_runs()[1] == 0


def test_a_sweep_needs_the_token(token_client: TestClient) -> None:
    for path in ("/api/sweeps/preview", "/api/sweeps"):
        assert token_client.post(path, json={"config": TINY, "grid": GRID}).status_code == 401
    r = token_client.post("/api/sweeps", json={"config": TINY, "grid": GRID},
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 201 and r.json()["count"] == 6
