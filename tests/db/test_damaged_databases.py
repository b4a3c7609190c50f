"""Databases this code must not serve are refused at start-up and by `db upgrade`, in one line.

Real files: a database migrated by a newer MarginScope (an Alembic revision this code does not
know), and a copy of a real store's database with garbage written over the pages of one table
(what a failing disk or a torn copy leaves): its schema still reads, so only SQLite's
`quick_check` can tell, before the damaged reads fail one request at a time.
"""

from __future__ import annotations

import random
import shutil
import socket
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marginscope.backend.cli import app
from marginscope.backend.store import StoreError
from marginscope.backend.store.db import upgrade, verify_schema
from marginscope.backend.store.exceptions import DatabaseDamaged, SchemaTooNew
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore

runner = CliRunner()
FUTURE = "0099_from_a_newer_release"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MARGINSCOPE_TOKEN", "MARGINSCOPE_DB_URL", "MARGINSCOPE_DATA_DIR", "MARGINSCOPE_HOST"):
        monkeypatch.delenv(name, raising=False)


def _refusal(args: list[str]) -> str:
    """The command's output, which must be one `error:` line and exit code 1. `serve` gets a port
    that is taken, so that a database wrongly accepted ends in a bind error, never in a server."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        if args[0] == "serve":
            args = [*args, "--host", "127.0.0.1", "--port", str(taken.getsockname()[1])]
        result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1, result.output
    assert result.output.startswith("error: ")
    return result.output.strip()


def _database(data_dir: Path) -> Path:
    """A real store's database with one run and enough log lines to fill many pages."""
    url = f"sqlite:///{data_dir / 'marginscope.db'}"
    upgrade(url)
    store = SqlAlchemyStore(url, data_dir=data_dir)
    run = store.create_run(name="kept", config={"dataset": "digits"})
    for i in range(200):
        store.append_log(run.id, "info", f"line {i} " + "x" * 900)
    store.close()
    path = data_dir / "marginscope.db"
    with sqlite3.connect(path) as conn:  # everything in the main file, no WAL left
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def test_a_database_from_a_newer_release_is_refused_in_one_line(tmp_path: Path) -> None:
    path = _database(tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (FUTURE,))
    expected = (f"error: the database sqlite:///{path} was written by a newer MarginScope "
                f"(revision {FUTURE}); upgrade MarginScope")
    assert _refusal(["serve", "--data-dir", str(tmp_path)]) == expected
    assert _refusal(["db", "upgrade", "--data-dir", str(tmp_path)]) == expected
    with pytest.raises(SchemaTooNew):
        SqlAlchemyStore(f"sqlite:///{path}", data_dir=tmp_path)
    with sqlite3.connect(path) as conn:  # db upgrade wrote nothing
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(FUTURE,)]


def test_a_database_with_damaged_pages_is_refused_in_one_line(tmp_path: Path) -> None:
    original = _database(tmp_path / "original")
    data = tmp_path / "damaged"
    data.mkdir()
    path = data / "marginscope.db"
    shutil.copyfile(original, path)
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'run_logs'").fetchone()
    with path.open("r+b") as fh:  # garbage over the log table's root page
        fh.seek((root - 1) * page_size)
        fh.write(random.Random(7).randbytes(page_size))

    url = f"sqlite:///{path}"
    unchecked = SqlAlchemyStore(url, data_dir=data, verify=False)
    try:
        assert unchecked.get_run(1).name == "kept"  # the schema and the runs still read...
        with pytest.raises(StoreError, match="malformed"):
            unchecked.get_logs(1)  # ...the damaged table does not
    finally:
        unchecked.close()

    line = _refusal(["serve", "--data-dir", str(data)])
    assert line.startswith(f"error: the database {path} is damaged (SQLite quick_check: ")
    assert line.endswith("); restore it from a backup")
    assert f"Page {root}: " in line  # SQLite's finding names the damaged page
    assert _refusal(["db", "upgrade", "--data-dir", str(data)]) == line
    verify_schema(unchecked.engine)  # pages are read only where asked: the server's start-up, db upgrade
    with pytest.raises(DatabaseDamaged):
        verify_schema(unchecked.engine, pages=True)
    verify_schema(SqlAlchemyStore(f"sqlite:///{original}", data_dir=tmp_path).engine, pages=True)  # sound
