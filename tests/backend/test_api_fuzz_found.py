"""Server errors that fuzzing the API found, each kept as the request that showed it.

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
