"""A fresh, empty database per test, on SQLite and, for the store's suites, on PostgreSQL too.

The store, API, live-hub, recording and migration suites (`BOTH_BACKENDS`) run every test twice:
`test_x[sqlite]` and `test_x[postgresql]` (the latter also marked `postgres`, so
`pytest -m postgres` runs the PostgreSQL half alone). Other suites run on SQLite.

- `db_backend`: "sqlite" or "postgresql" for this test.
- `fresh_db_url`: the SQLAlchemy URL of a database nobody else uses, not yet migrated: a SQLite file
  `<tmp_path>/data/marginscope.db` (not created yet), or a new PostgreSQL database.
- `migrated_db_url`: the same, already at the Alembic head (on PostgreSQL a copy of a database
  migrated once per session: `CREATE DATABASE ... TEMPLATE`, milliseconds instead of a migration).
- `postgres_url`: a fresh PostgreSQL database for tests that only make sense there.
- `postgres_server`: the server, once per session: a throwaway cluster on 127.0.0.1
  (tests/postgres_cluster.py), or the server MARGINSCOPE_TEST_DB_URL names (a superuser URL of an
  existing server; each test still gets its own database there).

Without PostgreSQL installed, its tests skip saying so; in CI (CI=true) they fail instead: the
PostgreSQL half of the suite must never go missing unnoticed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_cluster import PostgresMissing, ThrowawayCluster, create_database, drop_database

TEST_DB_ENV = "MARGINSCOPE_TEST_DB_URL"
# test modules (file names without .py) that run on both backends
BOTH_BACKENDS = frozenset({
    "test_store", "test_store_hardening", "test_recording", "test_writer", "test_downsample",
    "test_live", "test_live_fanout", "test_migrations", "test_launcher_ownership",
})
BOTH_BACKENDS_PREFIXES = ("test_api_",)
POSTGRES = "postgresql"


def runs_on_both_backends(module_name: str) -> bool:
    name = module_name.rsplit(".", 1)[-1]
    return name in BOTH_BACKENDS or name.startswith(BOTH_BACKENDS_PREFIXES)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_backend" in metafunc.fixturenames and runs_on_both_backends(metafunc.module.__name__):
        metafunc.parametrize("db_backend", ["sqlite", pytest.param(POSTGRES, marks=pytest.mark.postgres)],
                             indirect=True)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The superuser URL of a PostgreSQL server for this session (see the module docstring)."""
    external = os.environ.get(TEST_DB_ENV, "").strip()
    if external:
        yield external
        return
    try:
        cluster = ThrowawayCluster()
    except PostgresMissing as exc:
        if _in_ci():
            pytest.fail(f"CI must run the PostgreSQL tests: {exc}", pytrace=False)
        pytest.skip(str(exc))
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_migrated_template(postgres_server: str) -> Iterator[str]:
    """The name of a database at the Alembic head that nobody connects to: a template."""
    from sqlalchemy.engine import make_url

    from marginscope.backend.store.db import upgrade

    url = create_database(postgres_server, prefix="migrated")
    upgrade(url)  # its engine is disposed after: the template has no connection left
    yield str(make_url(url).database)
    drop_database(postgres_server, url)


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    """The database engine this test runs on (parametrized for the `BOTH_BACKENDS` suites)."""
    return str(getattr(request, "param", "sqlite"))


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'marginscope.db'}"


@pytest.fixture
def fresh_db_url(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if db_backend != POSTGRES:
        yield _sqlite_url(tmp_path)
        return
    server = request.getfixturevalue("postgres_server")
    url = create_database(server)
    yield url
    drop_database(server, url)


@pytest.fixture
def migrated_db_url(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if db_backend != POSTGRES:
        from marginscope.backend.store.db import upgrade

        url = _sqlite_url(tmp_path)
        upgrade(url)
        yield url
        return
    server = request.getfixturevalue("postgres_server")
    url = create_database(server, template=request.getfixturevalue("postgres_migrated_template"))
    yield url
    drop_database(server, url)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, unmigrated PostgreSQL database's URL."""
    url = create_database(postgres_server)
    yield url
    drop_database(postgres_server, url)
