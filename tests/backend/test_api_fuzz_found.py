"""Server errors that fuzzing the API found, each kept as the request that showed it.

A sample snapshot naming an index outside 0..2**31-1 (schemathesis, seeds 7 and 18 from the command
line) hit a KeyError in the store: a 500. The store now refuses it by name (a 422; no row written).

A JSON body may spell a lone UTF-16 surrogate as an escape ("\\ud800"): valid JSON, but no Unicode
character. Python decodes it into a str that neither the database drivers nor the UTF-8 encoder of
an answer can encode, so it was a 500 in two places:
- a 422 quoting the refused value (or a field named with one) failed while its body was encoded;
- a name, tag or notes holding one reached the database driver (SQLite and PostgreSQL alike).
Now the 422 shows the surrogate as its escape, the store refuses such text as it refuses NUL (a 422
naming the field), and text a process reports (a log line) keeps the report with U+FFFD instead.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_helpers import TINY, create
from fastapi.testclient import TestClient

from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore

pytest_plugins = ["api_fixtures"]


def send(client: TestClient, method: str, path: str, body: Any) -> Any:
    """`body` as JSON text with every non-ASCII character escaped, as a client may send it."""
    return client.request(method, path, content=json.dumps(body, ensure_ascii=True),
                          headers={"content-type": "application/json"})


@pytest.mark.parametrize(("body", "loc"), [
    ({"name": "run \ud800"}, ["body", "name"]),
    ({"notes": "see \udfff"}, ["body", "notes"]),
    ({"tags": ["fine", "\ud83d"]}, ["body", "tags", 1]),
])
def test_text_with_a_lone_surrogate_is_a_422_naming_the_field(client: TestClient, body: dict[str, Any],
                                                              loc: list[Any]) -> None:
    rid = create(client)["id"]
    for r in (send(client, "PATCH", f"/api/runs/{rid}", body),
              send(client, "POST", "/api/runs", {**body, "config": TINY})):
        assert r.status_code == 422, r.text
        (error,) = r.json()["detail"]
        assert error["loc"] == loc and "surrogate" in error["msg"]
    assert client.get(f"/api/runs/{rid}").json()["name"] != body.get("name")


def test_a_422_quoting_a_lone_surrogate_is_still_json(client: TestClient) -> None:
    r = send(client, "POST", "/api/runs", {"config": {**TINY, "dataset": "digits\ud800"}})
    assert r.status_code == 422
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "config", "dataset"] and error["input"] == "digits\\ud800"
    r = send(client, "PATCH", f"/api/runs/{create(client)['id']}", {"nam\udc00e": "x"})  # a field named with one
    assert r.status_code == 422
    assert r.json()["detail"][0]["input"] == "nam\\udc00e"


def test_a_reported_lone_surrogate_is_kept_as_a_replacement_character(client: TestClient,
                                                                       store: SqlAlchemyStore) -> None:
    rid = create(client)["id"]
    store.append_log(rid, "warning", "loss \ud800 rose")
    lines = client.get(f"/api/runs/{rid}/logs").json()["data"]
    assert lines[-1]["message"] == "loss \ufffd rose"


def test_a_sample_index_out_of_range_is_a_4xx_and_the_run_keeps_its_rows(client: TestClient,
                                                                         store: SqlAlchemyStore) -> None:
    """A snapshot naming sample -5 (or one past the 32-bit column) was a KeyError deep in the
    store: a 500. Now the store refuses it by name and the batch is not written."""
    from store_events import counters, run_started, step_metrics

    from marginscope.engine.events import SampleSnapshot

    r = client.post("/api/ingest/runs", json={"config": TINY, "host": "h", "pid": 1})
    rid = r.json()["run"]["id"]
    good = [run_started().to_dict(), step_metrics(1).to_dict()]
    assert client.post(f"/api/ingest/runs/{rid}/events", json={"seq": 0, "events": good}).status_code == 200
    for index in (-5, 2**31):
        snap = SampleSnapshot(counters=counters(2), scored="candidates", lowest={}, selected={},
                              suspects={}, flipped=[index]).to_dict()
        r = client.post(f"/api/ingest/runs/{rid}/events", json={"seq": 2, "events": [snap]})
        assert 400 <= r.status_code < 500, r.text
        assert "out of range" in r.text
    assert client.get(f"/api/runs/{rid}/metrics").json()["series"]["train/loss"]["step"] == [1]
