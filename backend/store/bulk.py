"""Bulk inserts: a batch's rows of one table in one executemany of plain tuples.

`log_batch` writes tens of thousands of rows a second when runs report over the ingest API. A
Core `insert()` executed with a list of dicts spends most of its time per row in SQLAlchemy
(parameter dicts matched to the compiled statement, each value through its type's processor
lookup), more than SQLite or PostgreSQL spend storing the row. A `BulkInsert` builds its INSERT
once per dialect, in the driver's own parameter style, with the bind processors of the columns
that have one (JSON, datetimes on SQLite), and hands the driver tuples in column order: the
columns' types still decide how each value is stored, as the ORM's would. Integers and floats
are given as Python ints and floats (the row builders convert them), so their columns' processors
are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection, Dialect

_PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s", "numeric": None, "named": None}


class BulkInsert:
    """INSERT INTO `table` (`columns`) for rows given as tuples in that order."""

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        self.table, self.columns = table, tuple(columns)
        self._compiled: dict[str, tuple[str, list[tuple[int, Callable[[Any], Any]]]]] = {}

    def _for(self, dialect: Dialect) -> tuple[str, list[tuple[int, Callable[[Any], Any]]]]:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            mark = _PLACEHOLDER.get(dialect.paramstyle)
            if mark is None:
                raise NotImplementedError(f"bulk inserts need a positional parameter style, not {dialect.paramstyle}")
            quote = dialect.identifier_preparer.quote
            sql = (f"INSERT INTO {quote(self.table.name)} ({', '.join(quote(c) for c in self.columns)}) "
                   f"VALUES ({', '.join([mark] * len(self.columns))})")
            processors = []
            for i, name in enumerate(self.columns):
                column_type = self.table.c[name].type
                if column_type.python_type in (int, float):  # given as such (a float() per value otherwise)
                    continue
                process = column_type.dialect_impl(dialect).bind_processor(dialect)
                if process is not None:
                    processors.append((i, process))
            compiled = self._compiled[dialect.name] = (sql, processors)
        return compiled

    def execute(self, connection: Connection, rows: list[tuple[Any, ...]]) -> None:
        """Insert `rows` (tuples in `columns` order) with one executemany."""
        if not rows:
            return
        sql, processors = self._for(connection.dialect)
        if processors:
            processed = []
            for row in rows:
                values = list(row)
                for i, process in processors:
                    values[i] = process(values[i])
                processed.append(tuple(values))
            rows = processed
        connection.exec_driver_sql(sql, rows)
