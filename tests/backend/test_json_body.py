"""OnePassJsonRoute answers as FastAPI's own route does, and takes the one pass for a valid body."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field

from marginscope.backend.routes import ingest
from marginscope.backend.routes.json_body import OnePassJsonRoute, _OnePassRequest


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    step: int = Field(ge=0)
    values: dict[str, float]


class Body(BaseModel):
    items: list[Item] = Field(max_length=3)


def _app() -> FastAPI:
    app = FastAPI()
    plain, one_pass = APIRouter(), APIRouter(route_class=OnePassJsonRoute)

    def echo(body: Body) -> dict[str, Any]:
        # ascii(): a lone surrogate cannot be sent back as JSON, and must not become another character
        return {"items": [{"step": i.step, "values": {ascii(k): v for k, v in i.values.items()}}
                          for i in body.items]}

    plain.post("/plain")(echo)
    one_pass.post("/one-pass")(echo)
    app.include_router(plain)
    app.include_router(one_pass)
    return app


BODIES = [
    '{"items": [{"step": 1, "values": {"a": 0.5}}]}',
    '{"items": []}',
    '{"items": [{"step": -1, "values": {}}]}',            # out of bounds
    '{"items": [{"step": 1.5, "values": {}}]}',           # not an integer
    '{"items": [{"step": "1", "values": {}}]}',           # strict: a string is not a number
    '{"items": [{"step": 1, "values": {}, "x": 1}]}',     # unknown field
    '{"items": [' + ",".join(['{"step": 1, "values": {}}'] * 4) + "]}",  # too many
    '{"items": [{"step": 1, "values": {"a": NaN}}]}',     # JSON that only json.loads reads
    '{"items": [{"step": 1, "values": {"\\ud800": 1}}]}',  # a lone surrogate
    '{"items": ',                                          # not JSON
    "[]",
    "",
]


@pytest.mark.parametrize("body", BODIES)
def test_one_pass_route_answers_as_fastapi_does(body: str) -> None:
    with TestClient(_app()) as client:
        headers = {"Content-Type": "application/json"}
        plain = client.post("/plain", content=body, headers=headers)
        one_pass = client.post("/one-pass", content=body, headers=headers)
    assert (one_pass.status_code, one_pass.json()) == (plain.status_code, plain.json())


def test_a_valid_body_is_validated_from_the_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = _OnePassRequest.json

    async def spy(self: _OnePassRequest) -> Any:
        calls.append(await self.body())
        value = await real(self)
        assert isinstance(value, Body), "json() should be the validated model"
        return value

    monkeypatch.setattr(_OnePassRequest, "json", spy)
    with TestClient(_app()) as client:
        answer = client.post("/one-pass", json={"items": [{"step": 2, "values": {"b": 1.0}}]})
    assert answer.status_code == 200 and answer.json()["items"] == [{"step": 2, "values": {"'b'": 1.0}}]
    assert len(calls) == 1


def test_the_ingest_events_route_is_one_pass_and_documented() -> None:
    routes = [r for r in ingest.events_router.routes if getattr(r, "path", "") == "/runs/{run_id}/events"]
    assert len(routes) == 1 and isinstance(routes[0], OnePassJsonRoute)
    app = FastAPI()
    app.include_router(ingest.router)
    body = app.openapi()["paths"]["/api/ingest/runs/{run_id}/events"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/EventBatch"}
