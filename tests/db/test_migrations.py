"""Alembic owns the schema: the migrated schema equals the models, and the check names the command.

Tests taking `fresh_db_url` run on SQLite and on PostgreSQL (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from marginscope.backend.store.db import (
    current_revision,
    head_revision,
    make_engine,
    migration_engine,
    upgrade,
    verify_schema,
)
from marginscope.backend.store.dbmodels import Base
from marginscope.backend.store.exceptions import SchemaOutOfDate
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore


def test_migrated_schema_equals_models(fresh_db_url: str) -> None:
    url = fresh_db_url
    upgrade(url)  # creates a SQLite file's folder too
    assert _schema_diff(url) == []
    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revision()
        assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
        verify_schema(engine)  # at head: no error
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(fresh_db_url: str, tmp_path: Path) -> None:
    url = fresh_db_url
    upgrade(url)
    upgrade(url)
    SqlAlchemyStore(url, data_dir=tmp_path).close()


def test_empty_database_is_refused_naming_the_command(fresh_db_url: str) -> None:
    with migration_engine(fresh_db_url) as engine:  # (a SQLite file's folder made first)
        with engine.begin() as conn:  # an existing database without our schema
            conn.exec_driver_sql("CREATE TABLE unrelated (x INTEGER)")
        with pytest.raises(SchemaOutOfDate, match="marginscope db upgrade"):
            verify_schema(engine)


def test_missing_database_is_refused_naming_the_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nowhere' / 'ms.db'}"
    with pytest.raises(SchemaOutOfDate, match="marginscope db upgrade"):
        SqlAlchemyStore(url, data_dir=tmp_path)
    assert not (tmp_path / "nowhere").exists()


def test_old_revision_is_refused(fresh_db_url: str) -> None:
    """A revision of this code's history before the head (an unknown one is a newer release's:
    tests/db/test_damaged_databases.py)."""
    url = fresh_db_url
    upgrade(url, "0001_initial")
    engine = make_engine(url)
    with pytest.raises(SchemaOutOfDate, match="0001_initial.*marginscope db upgrade"):
        verify_schema(engine)
    engine.dispose()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ms.db'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    engine.dispose()


def _schema_diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "compare_server_default": True})
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def test_runs_written_before_0002_survive_it(fresh_db_url: str, tmp_path: Path) -> None:
    """A database with runs at 0001 upgrades to the head; the runs read back as first attempts."""
    upgrade(fresh_db_url, "0001_initial")
    engine = make_engine(fresh_db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO runs (name, status, config, created_at, status_changed_at, notes, step, "
            "epoch, last_seq, status_seq, summary, run_info) VALUES ('old', 'finished', '{}', "
            "'2026-01-01 00:00:00', '2026-01-01 00:00:00', '', 7, 0.5, 3, 3, '{}', '{}')")
    engine.dispose()
    upgrade(fresh_db_url)
    store = SqlAlchemyStore(fresh_db_url, data_dir=tmp_path)
    try:
        (run,), _ = store.list_runs()
        assert (run.name, run.step, run.attempt, run.resumed_at_seq) == ("old", 7, 0, None)
        assert store.truncate_after_step(run.id, 5) == 0 and store.get_run(run.id).attempt == 1
    finally:
        store.close()
