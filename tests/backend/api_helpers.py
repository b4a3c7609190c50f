"""Constants and helpers shared by the API tests (fixtures are in api_fixtures.py)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

TINY: dict[str, Any] = {"dataset": "digits", "selector": "mms", "candidates": 64, "batch_size": 16,
                        "steps": 60, "eval_every": 20, "hist_every": 5, "log_every": 5}
TOKEN = "s3cret-token-for-tests"


def create(client: TestClient, **config: Any) -> dict[str, Any]:
    r = client.post("/api/runs", json={"config": {**TINY, **config}})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]
