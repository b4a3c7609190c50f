"""A fresh, empty database per test: a SQLite file by default, a PostgreSQL schema on request.

`fresh_db_url` (fixture) is the SQLAlchemy URL of a database nobody else uses, not yet migrated:

- default: `sqlite:///<tmp_path>/data/marginscope.db` (the file does not exist yet);
- with MARGINSCOPE_TEST_DB_URL=postgresql+psycopg://user:pw@host/db: a new schema `t_<random>` in
  that database, selected through the URL's `options=-csearch_path=...`, so the test's own store,
  its migrations and any worker process it spawns (which get the URL) all see only that schema.
  The schema is dropped after the test. A test may break its database (drop a table) without
  touching the next one.

Tests that only make sense on PostgreSQL use the `postgres_url` fixture (skipped otherwise).
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

TEST_DB_ENV = "MARGINSCOPE_TEST_DB_URL"


def _server_url() -> str | None:
    url = os.environ.get(TEST_DB_ENV, "").strip()
    return url or None


def _is_postgres(url: str) -> bool:
    from sqlalchemy.engine import make_url

    return make_url(url).get_backend_name() == "postgresql"


@pytest.fixture
def fresh_db_url(tmp_path: Path) -> Iterator[str]:
    server = _server_url()
    if server is None:
        yield f"sqlite:///{tmp_path / 'data' / 'marginscope.db'}"
        return
    if not _is_postgres(server):
        raise pytest.UsageError(f"{TEST_DB_ENV} must be a postgresql URL, got {server!r}")
    yield from _postgres_schema(server)


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    """A fresh PostgreSQL schema's URL; skips unless MARGINSCOPE_TEST_DB_URL names a server."""
    server = _server_url()
    if server is None or not _is_postgres(server):
        pytest.skip(f"set {TEST_DB_ENV}=postgresql+psycopg://... to run PostgreSQL tests")
    yield from _postgres_schema(server)


def _postgres_schema(server: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        try:
            with admin.begin() as conn:
                # a worker the test left behind must not hang the session: give up after 10 s
                conn.execute(text("SET LOCAL lock_timeout = '10s'"))
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        except Exception as exc:  # noqa: BLE001 - a leftover schema is harmless; say so
            warnings.warn(f"could not drop test schema {schema}: {exc}", stacklevel=1)
        admin.dispose()
