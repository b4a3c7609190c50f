"""Database engine creation, the schema check, and programmatic Alembic upgrades.

- SQLite (the default, a file under the data dir) runs in WAL mode with a 30 s busy timeout (the
  `timeout` of `connect_args` when given) and foreign keys on, set on every new connection. Write
  sessions start with `BEGIN IMMEDIATE` so a writer waits for the write lock up front (honouring
  the busy timeout) instead of failing with "database is locked" when it upgrades a read snapshot
  that another process has moved past.
- Opening a store checks the database first, each refusal one line: not at this code's revision
  (older: run `marginscope db upgrade`; newer: upgrade MarginScope), not a database, or, on SQLite,
  damaged pages (`PRAGMA quick_check`, a read of every page: about 7 s per GB, once per open).
  A damaged file is refused rather than served, since its reads would fail one by one later.
- PostgreSQL (or any other URL) gets a plain engine; nothing here or in the store is SQLite-only.
  The driver is an optional extra: `pip install 'marginscope[postgres]'` (psycopg 3), URL
  `postgresql+psycopg://user:password@host/dbname`. Tested by running tests/backend and tests/db
  with MARGINSCOPE_TEST_DB_URL set to such a URL (tests/conftest.py).
- JSON columns are written with `json_dumps`: strict JSON, non-finite floats as null (PostgreSQL's
  json type rejects NaN; a diverged run's summary or per-class accuracy may hold one).
- Migrations are package data (`marginscope/migrations`, the repository's alembic/ folder), found
  with importlib.resources from a checkout and from an installed wheel alike
  (backend/package_data.py). `MARGINSCOPE_ALEMBIC_DIR` overrides the location.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from marginscope.backend.package_data import migrations_dir
from marginscope.backend.store.exceptions import DatabaseDamaged, SchemaOutOfDate, SchemaTooNew, StoreError

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 30.0
UPGRADE_COMMAND = "marginscope db upgrade"


def alembic_dir() -> Path:
    """The folder holding env.py and versions/ (see the module docstring)."""
    override = os.environ.get("MARGINSCOPE_ALEMBIC_DIR")
    if override:
        return Path(override).resolve()
    return migrations_dir()


def is_sqlite(db_url: str) -> bool:
    return make_url(db_url).get_backend_name() == "sqlite"


def sqlite_path(db_url: str) -> Path | None:
    """The file of a file-backed SQLite URL, else None (memory DBs, other backends)."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def json_safe(value: Any) -> Any:
    """`value` with NaN and ±inf replaced by None, recursively: strict JSON for the database's JSON
    columns and for browsers, whose JSON.parse rejects the `NaN` Python's json module writes (a
    diverged loss must not break the store or the live page)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def json_dumps(value: Any) -> str:
    """The JSON columns' serializer: strict JSON (NaN and ±inf become null), on every backend."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:  # rare: only values holding a non-finite float pay for the copy
        return json.dumps(json_safe(value), allow_nan=False)


def _with_driver(db_url: str) -> str:
    """`postgresql://` means psycopg2 to SQLAlchemy; the extra installs psycopg 3, so use it when
    psycopg2 is absent (an explicit `postgresql+driver://` is left alone)."""
    url = make_url(db_url)
    if url.drivername != "postgresql":
        return db_url
    import importlib.util

    if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is not None:
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return db_url


def make_engine(db_url: str, **kwargs: Any) -> Engine:
    """An Engine for `db_url`; SQLite gets WAL, busy timeout, foreign keys and BEGIN IMMEDIATE writes.

    Use `engine.execution_options(marginscope_write=True)` for a writing connection."""
    kwargs.setdefault("json_serializer", json_dumps)
    if not is_sqlite(db_url):
        try:
            return create_engine(_with_driver(db_url), pool_pre_ping=True, **kwargs)
        except ImportError as exc:
            raise StoreError(f"no database driver for {make_url(db_url).drivername!r} ({exc}); for "
                             "PostgreSQL install the extra: pip install 'marginscope[postgres]' and use "
                             "postgresql+psycopg://user:password@host/dbname") from exc

    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    connect_args.update(kwargs.pop("connect_args", {}))
    busy_timeout_ms = int(float(connect_args["timeout"]) * 1000)
    engine = create_engine(db_url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # take transaction control from pysqlite so that `begin` below decides how to BEGIN
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")  # durable across app crashes in WAL mode
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("marginscope_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _alembic_config(db_url: str, connection: Any = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(alembic_dir()))
    # the URL goes through attributes, not the ini (ConfigParser would choke on '%' in passwords)
    cfg.attributes["db_url"] = db_url
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _script() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config("sqlite://"))


def head_revision() -> str | None:
    heads = _script().get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"expected one Alembic head in {alembic_dir()}, found {heads}")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    return heads[0] if len(heads) == 1 else (None if not heads else ",".join(heads))


def describe_error(exc: Exception) -> str:
    """A database error in one line: the driver's own words, without SQLAlchemy's SQL and links."""
    orig = getattr(exc, "orig", None)
    return (str(orig) if orig is not None else str(exc)).strip().splitlines()[0]


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def refuse_newer(engine: Engine, current: str | None) -> None:
    """Raise SchemaTooNew when `current` is a revision this code does not know (a newer release
    migrated the database: `db upgrade` cannot help, and a downgrade is that release's job)."""
    known = {script.revision for script in _script().walk_revisions()}
    if current is not None and not set(current.split(",")) <= known:
        raise SchemaTooNew(f"the database {_shown(engine)} was written by a newer MarginScope "
                           f"(revision {current}); upgrade MarginScope")


def check_integrity(engine: Engine) -> None:
    """Raise DatabaseDamaged unless SQLite's `quick_check` finds every page sound (other
    databases check themselves: a no-op)."""
    path = sqlite_path(_shown(engine))
    if path is None or not path.exists():
        return
    try:
        with engine.connect() as conn:
            found = [str(row[0]) for row in conn.exec_driver_sql("PRAGMA quick_check(1)")]
    except SQLAlchemyError as exc:
        found = [describe_error(exc)]
    if found != ["ok"]:
        # the first finding, without SQLite's "*** in database main ***" heading
        first = next((line for line in found[0].splitlines() if line.strip() and not line.startswith("***")),
                     found[0].strip() or "no answer")
        raise DatabaseDamaged(f"the database {path} is damaged (SQLite quick_check: {first}); "
                              "restore it from a backup")


def verify_schema(engine: Engine, *, pages: bool = False) -> None:
    """Refuse a database this code cannot serve, in one line: older (naming `marginscope db
    upgrade`, SchemaOutOfDate), newer (SchemaTooNew), unreadable (StoreError) or, with `pages`,
    with damaged pages (DatabaseDamaged). `pages` reads the whole file (about 7 s per GB), so the
    server and `db upgrade` check it at start-up, not every worker and CLI command."""
    head = head_revision()
    where = _shown(engine)
    path = sqlite_path(where)
    if path is not None and not path.exists():
        current, state = None, "does not exist"
    else:
        try:
            current = current_revision(engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the schema version of {where}: {describe_error(exc)}") from exc
        state = "has no MarginScope schema" if current is None else f"is at revision {current}"
    refuse_newer(engine, current)
    if current != head:
        raise SchemaOutOfDate(
            f"the database {where} {state}, but this version needs revision {head}; "
            f"run `{UPGRADE_COMMAND}` (with the same MARGINSCOPE_DB_URL / --db-url) to migrate it"
        )
    if pages:
        check_integrity(engine)


@contextmanager
def migration_engine(db_url: str) -> Iterator[Engine]:
    """An engine to migrate with, disposed after; a SQLite file's folder is created first."""
    path = sqlite_path(db_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


def upgrade(db_url: str, revision: str = "head") -> None:
    """Migrate the database to `revision` (creating the SQLite file and its folder if needed).
    A damaged file or one from a newer MarginScope is refused (DatabaseDamaged, SchemaTooNew)
    before anything is written to it."""
    from alembic import command

    with migration_engine(db_url) as engine:
        check_integrity(engine)
        try:
            current = current_revision(engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the schema version of {_shown(engine)}: "
                             f"{describe_error(exc)}") from exc
        refuse_newer(engine, current)
        with engine.begin() as conn:
            command.upgrade(_alembic_config(db_url, conn), revision)
    log.info("database %s upgraded to %s", make_url(db_url).render_as_string(hide_password=True),
             revision)
