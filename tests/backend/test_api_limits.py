"""What the API refuses, and how: body size (413), bad input (422, never a 500, never the whole
input echoed back), unknown fields, names the engine cannot build, loose types."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from api_helpers import TINY, create
from fastapi.testclient import TestClient

from marginscope.backend.limits import EXCERPT_CHARS, MESSAGE_CHARS
from marginscope.backend.main import create_app
from marginscope.backend.settings import Settings

pytest_plugins = ["api_fixtures"]

LIMIT = 4096


@pytest.fixture
def small_client(settings: Settings) -> Iterator[TestClient]:
    """The app with a 4 KiB body limit."""
    app = create_app(settings.model_copy(update={"max_body_bytes": LIMIT}), supervise=False)
    with TestClient(app) as c:
        yield c


def _body(size: int) -> bytes:
    """A valid run-creation body of exactly `size` bytes (padded in the notes)."""
    empty = json.dumps({"config": TINY, "notes": ""}).encode()
    return json.dumps({"config": TINY, "notes": "n" * (size - len(empty))}).encode()


def test_a_body_over_the_limit_is_413_naming_it_before_the_route_runs(small_client: TestClient) -> None:
    r = small_client.post("/api/runs", content=_body(LIMIT + 1),
                          headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert str(LIMIT) in r.json()["detail"]
    assert small_client.get("/api/runs").json()["count"] == 0  # nothing was created
    ok = small_client.post("/api/runs", content=_body(LIMIT), headers={"content-type": "application/json"})
    assert ok.status_code == 201, ok.text


def test_a_chunked_body_without_content_length_is_counted(small_client: TestClient) -> None:
    body = _body(LIMIT * 4)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    r = small_client.post("/api/runs", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert r.status_code == 413
    assert str(LIMIT) in r.json()["detail"]
    assert small_client.get("/api/runs").json()["count"] == 0


def test_a_declared_oversize_body_is_refused_even_where_no_body_is_read(small_client: TestClient) -> None:
    run = create(small_client)
    r = small_client.post(f"/api/runs/{run['id']}/cancel", content=b"x" * (LIMIT + 1))
    assert r.status_code == 413
    assert small_client.get(f"/api/runs/{run['id']}").json()["status"] == "queued"  # not cancelled


def test_a_422_shows_only_an_excerpt_of_the_input(client: TestClient) -> None:
    huge = "x" * 200_000
    r = client.post("/api/runs", json={"config": {**TINY, "dataset": huge, "lr": huge}})
    assert r.status_code == 422
    assert len(r.content) < 4 * (EXCERPT_CHARS + MESSAGE_CHARS)
    detail = r.json()["detail"]
    assert {tuple(e["loc"]) for e in detail} >= {("body", "config", "dataset"), ("body", "config", "lr")}
    assert all(len(str(e.get("input", ""))) <= EXCERPT_CHARS + 1 for e in detail)


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def test_deeply_nested_json_is_422_without_an_error_log(client: TestClient,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        r = client.post("/api/runs", json={"config": {**TINY, "selector_options": _nested(600)}})
        deeper = client.post("/api/runs", json={"config": {**TINY, "regime": [_nested(900)]}})
    assert r.status_code == 422, r.text
    assert deeper.status_code == 422, deeper.text
    assert r.json()["detail"][0]["loc"][:2] == ["body", "config"]
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


@pytest.mark.parametrize("runs", ["²", "1,²", "١", "1,,2", " "])
def test_compare_refuses_run_ids_that_are_not_ascii_integers(client: TestClient, runs: str) -> None:
    create(client)
    r = client.get("/api/compare", params={"runs": runs})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["query", "runs"]


def test_unknown_top_level_fields_are_422_naming_them(client: TestClient) -> None:
    r = client.post("/api/runs", json={"nmae": "typo", "config": TINY})
    assert r.status_code == 422
    assert ["body", "nmae"] in [e["loc"] for e in r.json()["detail"]]
    assert client.get("/api/runs").json()["count"] == 0  # no default run launched
    run = create(client)
    r = client.patch(f"/api/runs/{run['id']}", json={"notes": "ok", "tag": ["x"]})
    assert r.status_code == 422
    assert ["body", "tag"] in [e["loc"] for e in r.json()["detail"]]
    assert client.get(f"/api/runs/{run['id']}").json()["notes"] == ""  # nothing applied


@pytest.mark.parametrize(("field", "value"), [
    ("dataset", "../../../etc/passwd"), ("dataset", "mnist2"), ("dataset", "imagefolder:"),
    ("model", "wrn-11-2"), ("model", "wrn-28-10000"), ("model", "wrn-9999-1"), ("model", "resnet21"),
    ("model", "wrn-28-10\n"), ("steps", True), ("steps", "5"), ("steps", 5.5), ("epochs", True),
    ("amp", 1), ("candidates", "640"),
])
def test_a_launch_refuses_what_the_engine_cannot_build(client: TestClient, field: str, value: Any) -> None:
    r = client.post("/api/runs", json={"config": {**TINY, field: value}})
    assert r.status_code == 422, r.text
    assert ["body", "config", field] in [e["loc"][:3] for e in r.json()["detail"]]


@pytest.mark.parametrize(("field", "value"), [
    ("dataset", "digits"), ("model", "wrn-28-10"), ("model", "wrn-64-16"), ("model", "wrn-10-1"),
    ("model", "auto"), ("epochs", 2), ("regime", [[0.5, 0.1]]),
])
def test_a_launch_takes_what_the_engine_builds(client: TestClient, field: str, value: Any) -> None:
    r = client.post("/api/runs", json={"config": {**TINY, field: value}})
    assert r.status_code == 201, r.text


def test_every_422_detail_is_a_list(client: TestClient) -> None:
    run = create(client)
    for r in (client.get("/api/runs?status=bogus"), client.get("/api/runs?sort=bogus"),
              client.patch(f"/api/runs/{run['id']}", json={"name": "  "}),
              client.patch(f"/api/runs/{run['id']}", json={"tags": ["a\x00"]})):
        assert r.status_code == 422, r.text
        assert isinstance(r.json()["detail"], list) and r.json()["detail"][0]["msg"]


def test_405_names_every_method_of_the_path(client: TestClient) -> None:
    r = client.request("PUT", "/api/runs")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST"
    r = client.request("PUT", "/api/runs/1")
    assert r.headers["allow"] == "DELETE, GET, PATCH"
