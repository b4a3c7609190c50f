"""Fixtures for API tests: the real app on the conftest's temporary SQLite database.

`client` runs the app's lifespan (store, hub) with the launcher's thread off, so creating a run
spawns nothing; tests that need the supervisor build a `Launcher` themselves. Import the fixtures
into a test module with `pytest_plugins = ["api_fixtures"]`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import TOKEN
from fastapi import FastAPI
from fastapi.testclient import TestClient

from marginscope.backend.main import create_app
from marginscope.backend.settings import Settings


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
