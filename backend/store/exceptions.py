"""The store's own exceptions: callers never see SQLAlchemy's.

The API maps them to HTTP: RunNotFound → 404, InvalidArgument → 422, Conflict → 409; anything
else is a StoreError (a bug or a database problem → 500 / logged).
"""

from __future__ import annotations


class StoreError(Exception):
    """A database error, wrapped (the original is `__cause__`)."""


class RunNotFound(StoreError):
    def __init__(self, run_id: int) -> None:
        super().__init__(f"run {run_id} not found")
        self.run_id = run_id


class InvalidArgument(StoreError, ValueError):
    """A caller passed a value the store cannot use (unknown sort key, x axis, population...).

    `field` names the refused field of a run ("name", "tags.1", "config.dataset") when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Conflict(StoreError):
    """The action conflicts with the run's state (e.g. deleting a running run)."""


class SeqMismatch(Conflict):
    """An ingest batch does not start where the run's reported events end (`expected`: the
    sequence number the run expects next). A retried batch is trimmed to what is new before it is
    written; what still mismatches in the writing transaction is a concurrent writer or a gap."""

    def __init__(self, run_id: int, expected: int, given: int) -> None:
        super().__init__(f"run {run_id} expects event sequence number {expected}, not {given}")
        self.run_id, self.expected, self.given = run_id, expected, given


class SchemaOutOfDate(StoreError):
    """The database is not at the Alembic head; the message names `marginscope db upgrade`."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer MarginScope (a revision this code does not know)."""


class DatabaseDamaged(StoreError):
    """SQLite's quick_check found damaged pages: the file is refused rather than served."""
