"""Run search compiled to SQLAlchemy: the AST of `search.py` as WHERE and ORDER BY expressions.

The database filters and sorts, on SQLite and PostgreSQL alike; the semantics are the same on
both:
- `metrics.k` is the run's latest value of k (the `latest_metrics` row: the last step, the last
  written on a tie). A run without k, or whose latest k is not finite (stored NULL), matches no
  comparison, not even !=; orders put it last, ascending or descending.
- `config.k` compares a number with numbers and a quoted string with strings: each clause reads
  the JSON value only where its type fits (a CASE on the JSON type, so PostgreSQL never casts
  text to a number), and a run whose k is missing or of the other type does not match.
- numbers are compared as floating point (an integer column is cast), so any finite literal is
  safe whatever the column's width.
- LIKE follows the database: PostgreSQL's is case-sensitive, SQLite's ignores ASCII case; ILIKE
  ignores case on both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, String, and_, case, cast, exists, func, literal, not_, select

from marginscope.backend.store.dbmodels import SqlLatestMetric, SqlRun, SqlRunTag
from marginscope.backend.store.search import ATTRIBUTE_KINDS, Clause, Ident, Order, Value


def _compare(col: Any, op: str, value: Any) -> ColumnElement[bool]:
    """`col op value` for the operators every kind shares."""
    if op == "=":
        return col == value  # type: ignore[no-any-return]
    if op == "!=":
        return col != value  # type: ignore[no-any-return]
    if op == "<":
        return col < value  # type: ignore[no-any-return]
    if op == "<=":
        return col <= value  # type: ignore[no-any-return]
    if op == ">":
        return col > value  # type: ignore[no-any-return]
    if op == ">=":
        return col >= value  # type: ignore[no-any-return]
    if op == "LIKE":
        return col.like(value)  # type: ignore[no-any-return]
    if op == "ILIKE":
        return col.ilike(value)  # type: ignore[no-any-return]
    if op == "IN":
        return col.in_(list(value))  # type: ignore[no-any-return]
    if op == "NOT IN":
        return col.not_in(list(value))  # type: ignore[no-any-return]
    raise AssertionError(f"unknown operator {op}")


def _metric(key: str) -> Any:
    return (select(SqlLatestMetric.value).where(SqlLatestMetric.run_id == SqlRun.id,
                                                SqlLatestMetric.key == key)
            .correlate(SqlRun).scalar_subquery())


def _json_path(key: str) -> str:
    return "$." + json.dumps(key)  # SQLite's path to a top-level member, quoted


def _config_value(key: str, dialect: str, want: str) -> Any:
    """config[key] as a float (want="number") or text ("string"), NULL where its type differs."""
    if dialect == "postgresql":
        member = SqlRun.config.op("->")(literal(key, String))
        kind = func.json_typeof(member)
        text = SqlRun.config.op("->>", return_type=String)(literal(key, String))
        json_kind = {"number": "number", "string": "string"}[want]
        value = cast(text, Float) if want == "number" else text
        return case((kind == json_kind, value), else_=None)
    path = _json_path(key)
    kind = func.json_type(SqlRun.config, path)
    value = func.json_extract(SqlRun.config, path, type_=String)
    kinds = ("integer", "real") if want == "number" else ("text",)
    return case((kind.in_(kinds), cast(value, Float) if want == "number" else value), else_=None)


def _attribute(name: str) -> Any:
    col = getattr(SqlRun, name)
    return cast(col, Float) if ATTRIBUTE_KINDS[name] == "number" else col


def _naive(value: Value) -> Value:
    """Times as the store keeps them (naive UTC, see dbmodels.UTCDateTime)."""
    return value.replace(tzinfo=None) if isinstance(value, datetime) else value


def clause_sql(clause: Clause, dialect: str) -> ColumnElement[bool]:
    """One clause as a WHERE condition on `runs`."""
    ident, op, value = clause.ident, clause.op, clause.value
    if ident.kind == "tag":  # HAS: the run carries this tag
        return exists().where(SqlRunTag.run_id == SqlRun.id, SqlRunTag.tag == ident.key)
    if ident.kind == "tags":
        if op in ("!=", "NOT IN"):  # no tag of the run equals it (one of them)
            positive = "=" if op == "!=" else "IN"
            return not_(exists().where(SqlRunTag.run_id == SqlRun.id, _compare(SqlRunTag.tag, positive, value)))
        return exists().where(SqlRunTag.run_id == SqlRun.id, _compare(SqlRunTag.tag, op, value))
    first = value[0] if isinstance(value, tuple) else value
    if ident.kind == "metric":
        col = _metric(ident.key)
    elif ident.kind == "config":
        col = _config_value(ident.key, dialect, "number" if isinstance(first, float) else "string")
    else:
        col = _attribute(ident.key)
        value = tuple(_naive(v) for v in value) if isinstance(value, tuple) else _naive(value)  # type: ignore[arg-type]
    condition = _compare(col, op, value)
    # NULL (absent, other type, not finite) never matches, not even `!=` / NOT IN
    return and_(col.is_not(None), condition) if op in ("!=", "NOT IN") else condition


def filter_sql(clauses: Sequence[Clause], dialect: str) -> list[ColumnElement[bool]]:
    return [clause_sql(c, dialect) for c in clauses]


def _order_values(ident: Ident, dialect: str) -> list[Any]:
    """What one order sorts on: a metric's value; a config value's number, then its text."""
    if ident.kind == "metric":
        return [_metric(ident.key)]
    if ident.kind == "config":
        return [_config_value(ident.key, dialect, "number"), _config_value(ident.key, dialect, "string")]
    return [getattr(SqlRun, ident.key)]


def order_sql(orders: Sequence[Order], dialect: str) -> list[Any]:
    """ORDER BY terms: each order's values, missing ones last in either direction; then id (in
    the last order's direction, as `sort` breaks its ties)."""
    terms: list[Any] = []
    for order in orders:
        for value in _order_values(order.ident, dialect):
            # NULL last on both databases (SQLite sorts it first, PostgreSQL last)
            terms.append(case((value.is_(None), 1), else_=0))
            terms.append(value.desc() if order.descending else value.asc())
    last_desc = bool(orders) and orders[-1].descending
    terms.append(SqlRun.id.desc() if last_desc else SqlRun.id.asc())
    return terms

