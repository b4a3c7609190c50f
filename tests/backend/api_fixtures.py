"""Fixtures for API tests: the real app on the conftest's temporary SQLite database.

`client` runs the app's lifespan (store, hub) with the launcher's thread off, so creating a run
spawns nothing; tests that need the supervisor build a `Launcher` themselves. Import the fixtures
into a test module (`from api_fixtures import client`) to use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from backend.main import create_app
from backend.settings import Settings

TINY: dict[str, Any] = {"dataset": "digits", "selector": "mms", "candidates": 64, "batch_size": 16,
                        "steps": 60, "eval_every": 20, "hist_every": 5, "log_every": 5}
TOKEN = "s3cret-token"


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings, supervise=False)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def token_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"token": TOKEN}), supervise=False)) as c:
        yield c


def create(client: TestClient, **config: Any) -> dict[str, Any]:
    r = client.post("/api/runs", json={"config": {**TINY, **config}})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]
