"""Persistence for runs, metrics, histograms, selection statistics and logs.

Routes and the hub use `AbstractStore`; `open_store(settings)` builds the SQLAlchemy one (checking
the schema is at the Alembic head). See abstract_store.py for the contract. Writers hand in
entities (`RunBatch`, statuses); the store imports nothing from the engine: marginscope.backend.recording turns
engine events into those entities.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from marginscope.backend.store.abstract_store import RUN_SORT_KEYS, AbstractStore
from marginscope.backend.store.entities import (
    ACTIVE_STATUSES,
    LOG_LEVELS,
    X_AXES,
    Changes,
    HistogramPoint,
    HistogramRow,
    HistogramSeries,
    LogEntry,
    LogLine,
    MetricPoint,
    NewRun,
    Position,
    Run,
    RunBatch,
    RunStatus,
    RunUpdate,
    SampleHistory,
    SamplePoint,
    SampleRecord,
    SampleSnapshotRow,
    ScalarRow,
    SelectionPoint,
    SelectionRow,
    SelectionSeries,
    Series,
    TargetReached,
)
from marginscope.backend.store.dbmodels import MAX_INT32, TEXT_LIMITS
from marginscope.backend.store.exceptions import (
    Conflict,
    InvalidArgument,
    RunNotFound,
    SchemaOutOfDate,
    SeqMismatch,
    StoreError,
)

if TYPE_CHECKING:
    from marginscope.backend.settings import Settings


def open_store(settings: Settings, *, verify: bool = True, check_pages: bool = False) -> AbstractStore:
    """The SQLAlchemy store for these settings; raises SchemaOutOfDate unless migrated (verify),
    DatabaseDamaged when `check_pages` finds a damaged SQLite page (the server's start-up)."""
    from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore

    return SqlAlchemyStore(settings.db_url, data_dir=settings.data_dir, verify=verify,
                           check_pages=check_pages)


__all__ = [
    "ACTIVE_STATUSES", "LOG_LEVELS", "MAX_INT32", "RUN_SORT_KEYS", "TEXT_LIMITS", "X_AXES", "AbstractStore", "Changes", "Conflict",
    "HistogramPoint", "HistogramRow", "HistogramSeries", "InvalidArgument", "LogEntry", "LogLine",
    "MetricPoint", "NewRun", "Position", "Run", "RunBatch", "RunNotFound", "RunStatus", "RunUpdate", "SampleHistory",
    "SamplePoint", "SampleRecord", "SampleSnapshotRow", "ScalarRow", "SchemaOutOfDate", "SelectionPoint",
    "SeqMismatch", "SelectionRow", "SelectionSeries", "Series", "StoreError",
    "TargetReached", "open_store",
]
