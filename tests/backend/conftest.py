"""Shared backend fixtures: a temporary database migrated to the Alembic head.

- `settings`: a `Settings` whose data_dir is a fresh temp folder and db_url a fresh database at the
  head (`migrated_db_url` in tests/conftest.py: a SQLite file, or a PostgreSQL database for the
  suites that run on both). Function-scoped, so every test starts empty.
- `store`: a `SqlAlchemyStore` on those settings (schema verified); closed after the test.
- `make_run(name=None, tags=(), **config)`: fixture; creates a queued run in `store` with the tiny
  digits config TINY_CONFIG (overridden by **config).
- Hand-made engine events for store tests: `tests/backend/store_events.py` (import it as
  `store_events`: tests/ is not a package, pytest puts this folder on sys.path).

"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from marginscope.backend.settings import Settings
from marginscope.backend.store import Run
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore

TINY_CONFIG: dict[str, Any] = {
    "dataset": "digits", "selector": "mms", "candidates": 64, "batch_size": 16, "steps": 30,
    "eval_every": 10, "hist_every": 5,
}


@pytest.fixture
def settings(tmp_path: Path, migrated_db_url: str) -> Settings:
    # the test client calls itself "testserver": a name the server must be told to answer
    return Settings(data_dir=tmp_path / "data", db_url=migrated_db_url, allowed_hosts=["testserver"])


@pytest.fixture
def store(settings: Settings) -> Iterator[SqlAlchemyStore]:
    s = SqlAlchemyStore(settings.db_url, data_dir=settings.data_dir)
    yield s
    s.close()


@pytest.fixture
def make_run(store: SqlAlchemyStore) -> Callable[..., Run]:
    def _make(name: str | None = None, tags: tuple[str, ...] = (), **config: Any) -> Run:
        return store.create_run(name=name, config={**TINY_CONFIG, **config}, tags=list(tags))

    return _make

