"""User input never produces a 500: random configs and query strings against the real app."""

from __future__ import annotations

from typing import Any

from api_helpers import TINY
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marginscope.engine.config import TrainConfig

pytest_plugins = ["api_fixtures"]

FIELDS = list(TrainConfig.model_fields)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
                    st.sampled_from(["mnist", "digits", "imagefolder:x", "imagefolder:/etc", "../..",
                                     "normal", "aggressive", "mms", "uniform", "auto", "nan", "inf"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=5), inner,
                                                                       max_size=3)), max_leaves=6)
configs = st.dictionaries(st.sampled_from(FIELDS + ["bogus"]), values, max_size=6)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(config=configs, name=st.one_of(st.none(), st.text(max_size=300), st.integers()))
def test_create_run_is_201_or_422(client: TestClient, config: dict[str, Any], name: Any) -> None:
    r = client.post("/api/runs", json={"name": name, "config": {**TINY, **config}})
    assert r.status_code in (201, 422), (r.status_code, r.text)
    if r.status_code == 422:
        assert r.json()["detail"]


def test_non_finite_numbers_in_a_config_are_422(client: TestClient) -> None:
    body = '{"config": {"dataset": "digits", "lr": NaN, "epochs": Infinity}}'
    r = client.post("/api/runs", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert {tuple(e["loc"]) for e in r.json()["detail"]} >= {("body", "config", "lr")}


# beyond 2**31 and 2**63 too: ids and bounds past the columns' range must not reach the database
query_values = st.one_of(st.text(max_size=12), st.integers(-5, 10**22).map(str),
                         st.sampled_from(["", "1", "-1", "1,2", "nan", "inf", "1e309", "0x10"]))
paths = st.sampled_from([
    "/api/runs", "/api/runs/1", "/api/runs/1/metrics", "/api/runs/1/histograms", "/api/runs/1/selection",
    "/api/runs/1/logs", "/api/runs/1/export", "/api/compare", "/api/options",
    "/api/runs/2147483648", "/api/runs/99999999999999999999/metrics",
])
params = st.dictionaries(st.sampled_from(["status", "sort", "limit", "offset", "keys", "x", "max_points",
                                          "population", "start", "end", "stride", "max_rows", "after",
                                          "format", "runs", "key", "baseline", "target", "tag"]),
                         query_values, max_size=4)


@FUZZ
@given(path=paths, query=params)
def test_reads_never_fail_on_bad_queries(client: TestClient, path: str, query: dict[str, str]) -> None:
    if not client.get("/api/runs").json()["count"]:
        client.post("/api/runs", json={"config": TINY})
    r = client.get(path, params=query)
    assert r.status_code in (200, 404, 422), (path, query, r.status_code, r.text)


@FUZZ
@given(body=st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.none(), st.text(max_size=250)),
    "notes": st.one_of(st.none(), st.text(max_size=30)),
    "tags": st.one_of(st.none(), st.lists(st.text(max_size=110), max_size=4)),
}))
def test_patch_is_200_or_422(client: TestClient, body: dict[str, Any]) -> None:
    """Text with NUL or past a column's length is refused the same way on SQLite and PostgreSQL."""
    if not client.get("/api/runs").json()["count"]:
        client.post("/api/runs", json={"config": TINY})
    r = client.patch("/api/runs/1", json=body)
    assert r.status_code in (200, 422), (body, r.status_code, r.text)
