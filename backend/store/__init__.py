"""Persistence for runs, metrics, histograms, selection statistics and logs.

Routes and the hub use `AbstractStore`; `open_store(settings)` builds the SQLAlchemy one (checking
the schema is at the Alembic head). See abstract_store.py for the contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from backend.store.abstract_store import RUN_SORT_KEYS, AbstractStore
from backend.store.entities import (
    ACTIVE_STATUSES,
    X_AXES,
    Changes,
    HistogramRow,
    HistogramSeries,
    LogLine,
    Run,
    RunStatus,
    ScalarRow,
    SelectionRow,
    SelectionSeries,
    Series,
    TargetReached,
)
from backend.store.exceptions import (
    Conflict,
    InvalidArgument,
    RunNotFound,
    SchemaOutOfDate,
    StoreError,
)

if TYPE_CHECKING:
    from backend.settings import Settings


def open_store(settings: Settings, *, verify: bool = True) -> AbstractStore:
    """The SQLAlchemy store for these settings; raises SchemaOutOfDate unless migrated (verify)."""
    from backend.store.sqlalchemy_store import SqlAlchemyStore

    return SqlAlchemyStore(settings.db_url, data_dir=settings.data_dir, verify=verify)


__all__ = [
    "ACTIVE_STATUSES", "RUN_SORT_KEYS", "X_AXES", "AbstractStore", "Changes", "Conflict",
    "HistogramRow", "HistogramSeries", "InvalidArgument", "LogLine", "Run", "RunNotFound",
    "RunStatus", "ScalarRow", "SchemaOutOfDate", "SelectionRow", "SelectionSeries", "Series",
    "StoreError", "TargetReached", "open_store",
]
