"""Alembic environment for MarginScope.

Run programmatically by `marginscope.backend.store.db.upgrade` (which hands over a connection and the URL in
`config.attributes`) or by the `alembic` command from the repository root (URL from the settings:
MARGINSCOPE_DB_URL or the default SQLite file). `render_as_batch=True` so that ALTERs work on
SQLite (MLflow `db_migrations/env.py`).
"""

from __future__ import annotations

import logging.config

from alembic import context
from marginscope.backend.store.db import migration_engine
from marginscope.backend.store.dbmodels import Base

config = context.config
if config.config_file_name is not None and not config.attributes.get("connection"):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _db_url() -> str:
    url = config.attributes.get("db_url")
    if url:
        return str(url)
    from marginscope.backend.settings import Settings

    return Settings().db_url


def _configure(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(url=_db_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    with migration_engine(_db_url()) as engine, engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
