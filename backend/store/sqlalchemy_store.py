"""SqlAlchemyStore: the AbstractStore on SQLAlchemy 2.x (SQLite by default, PostgreSQL by URL).

Kept as one module: it is the one implementation of every AbstractStore operation, as MLflow's is.
It persists what it is given and knows nothing of training: rows and run updates arrive as
entities (`log_batch`), written by marginscope.backend.recording.

Design notes
- Sessions (MLflow `db/utils.py`): `_session(write=...)` commits on success, rolls back on error and
  maps SQLAlchemy errors to StoreError. On SQLite a write session begins with BEGIN IMMEDIATE
  (db.make_engine), so concurrent writers queue on the busy timeout instead of failing.
- seq: a writing transaction first runs `UPDATE runs SET last_seq = last_seq + n WHERE id = :id
  RETURNING last_seq`. That row lock serialises the writers of one run (SQLite: the database lock;
  PostgreSQL: the row lock), so seqs are unique per run and become visible in increasing order.
- Read sessions see one snapshot: SQLite's read transaction does that by itself; on PostgreSQL
  they run at REPEATABLE READ (READ COMMITTED would give each SELECT of `changes_since` its own
  snapshot, and a writer committing between two of them could make the cursor skip rows).
- Portability (SQLite by default, PostgreSQL by URL): ids and integer query bounds are checked or
  clamped to the column ranges (an id past 32 bits is simply not found), text a user gives is
  refused when it holds NUL or is longer than its column (PostgreSQL enforces both; SQLite
  neither), and text a process reports (log lines, errors, tracebacks) has NUL replaced. JSON columns are
  written by a strict serializer (db.json_dumps: NaN/±inf become null; PostgreSQL rejects NaN).
- Private helpers take the session; public methods open it.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from marginscope.backend.store import entities as ent
from marginscope.backend.store.abstract_store import RUN_SORT_KEYS, AbstractStore
from marginscope.backend.store.bulk import BulkInsert
from marginscope.backend.store.db import make_engine, verify_schema
from marginscope.backend.store.dbmodels import (
    MAX_INT32,
    MAX_INT64,
    QUANTILE_KEYS,
    TEXT_LIMITS,
    SqlClassSelection,
    SqlHistogram,
    SqlHistogramEdges,
    SqlLatestMetric,
    SqlMetric,
    SqlRun,
    SqlRunLog,
    SqlRunSample,
    SqlRunTag,
    SqlSampleSnapshot,
    utcnow,
)
from marginscope.backend.store.downsample import downsample_indices, thin_indices
from marginscope.backend.store.exceptions import Conflict, InvalidArgument, RunNotFound, SeqMismatch, StoreError
from marginscope.backend.store.samples_store import SqlSamplesStore, apply_samples, snapshot_values, truncate_samples
from marginscope.backend.store.search import parse_filter, parse_order_by
from marginscope.backend.store.search_sql import filter_sql, order_sql

_STREAM_CHUNK = 1000  # rows per fetch when streaming (export)
POPULATIONS = ("candidates", "selected")  # the histogram populations this schema keeps
# counters kept in latest_metrics only (every scalar row carries them already)
LATEST_ONLY_COUNTERS = tuple(axis for axis in ent.X_AXES if axis != "step")
_IN_CHUNK = 500  # ids per IN (...) list
# a UTF-16 half on its own: JSON may spell one ("\ud800"), but it is no Unicode character, and
# neither SQLite's nor PostgreSQL's driver can encode it
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_OFFSET = 2**62  # beyond any table; keeps OFFSET inside SQLite's and PostgreSQL's 64-bit range


def _clamp(value: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(value)))


def _valid_id(run_id: int) -> bool:
    """runs.id is a 32-bit integer: anything outside 1..2**31-1 cannot be a run."""
    return isinstance(run_id, int) and 1 <= run_id <= MAX_INT32


def check_text(field: str, value: str, *, limit: int | None = None) -> str:
    """`value` if it can be stored portably; InvalidArgument naming `field` otherwise.

    The one check of text a user gives (the API, the CLI and recording all write through the
    store): PostgreSQL refuses NUL and text longer than its column, SQLite neither.
    """
    if "\x00" in value:
        raise InvalidArgument(f"{field} must not contain NUL characters", field=field)
    if (lone := LONE_SURROGATE.search(value)) is not None:
        raise InvalidArgument(f"{field} must be Unicode text: it holds a lone UTF-16 surrogate "
                              f"(\\u{ord(lone.group()):04x} at character {lone.start()})", field=field)
    if limit is not None and len(value) > limit:
        raise InvalidArgument(f"{field} is too long ({len(value)} characters; at most {limit})",
                              field=field)
    return value


def _config_strings(value: Any, field: str = "") -> Iterator[tuple[str, str]]:
    """(top-level field, text) for every string inside a config, keys included."""
    if isinstance(value, str):
        yield field, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _config_strings(k, field or str(k))
            yield from _config_strings(v, field or str(k))
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _config_strings(v, field)


def _reported_text(value: str | None) -> str | None:
    """Text a process reports (log lines, errors, tracebacks, host): NUL, which PostgreSQL text
    refuses, and a lone surrogate, which no driver encodes, become U+FFFD, so the report is kept
    rather than lost."""
    return None if value is None else LONE_SURROGATE.sub("\ufffd", str(value).replace("\x00", "\ufffd"))


def _check_level(level: str) -> str:
    if level not in ent.LOG_LEVELS:
        raise InvalidArgument(f"unknown log level {level!r}; use one of {', '.join(ent.LOG_LEVELS)}")
    return level


def _matchable(value: str | None) -> bool:
    """False for a filter value that no stored text can equal (it holds NUL)."""
    return value is None or "\x00" not in value


def _finite(value: float | None) -> float | None:
    """Non-finite floats are stored as NULL (SQLite turns NaN into NULL anyway)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class SqlAlchemyStore(SqlSamplesStore, AbstractStore):
    def __init__(self, db_url: str, *, data_dir: str | Path, verify: bool = True,
                 check_pages: bool = False, **engine_kwargs: Any) -> None:
        self.db_url = db_url
        self.data_dir = Path(data_dir).resolve()
        self.engine = make_engine(db_url, **engine_kwargs)
        self._write_engine = self.engine.execution_options(marginscope_write=True)
        self._read_engine = self.engine
        if self.engine.dialect.name == "postgresql":  # one snapshot per read session (see above)
            self._read_engine = self.engine.execution_options(isolation_level="REPEATABLE READ")
        if verify:
            verify_schema(self.engine, pages=check_pages)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ sessions

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        session = Session(bind=self._write_engine if write else self._read_engine, expire_on_commit=False,
                          autoflush=False)
        try:
            yield session
            if write:
                session.commit()
        except StoreError:
            session.rollback()
            raise
        except SQLAlchemyError as exc:
            session.rollback()
            raise StoreError(f"database error: {exc}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @staticmethod
    def _get(session: Session, run_id: int, *, lock: bool = False) -> SqlRun:
        """The run row (RunNotFound otherwise); `lock`: SELECT ... FOR UPDATE where supported."""
        if not _valid_id(run_id):
            raise RunNotFound(run_id)
        run = session.get(SqlRun, run_id, with_for_update=lock or None)
        if run is None:
            raise RunNotFound(run_id)
        return run

    @staticmethod
    def _check(session: Session, run_id: int) -> None:
        """RunNotFound unless the run exists. For reads that need only its id: loading the row
        would decode its JSON columns and tags, most of the cost of a short series read."""
        if not _valid_id(run_id) or session.execute(
                select(SqlRun.id).where(SqlRun.id == run_id)).first() is None:
            raise RunNotFound(run_id)

    @staticmethod
    def _take_seqs(session: Session, run_id: int, n: int) -> int:
        """Reserve n seqs for this run; returns the first. Locks the run row until commit."""
        if not _valid_id(run_id):
            raise RunNotFound(run_id)
        last = session.execute(
            update(SqlRun).where(SqlRun.id == run_id).values(last_seq=SqlRun.last_seq + n)
            .returning(SqlRun.last_seq).execution_options(synchronize_session=False)
        ).scalar_one_or_none()
        if last is None:
            raise RunNotFound(run_id)
        return int(last) - n + 1

    @staticmethod
    def _latest_map(session: Session, run_ids: Sequence[int]) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {rid: {} for rid in run_ids}
        for i in range(0, len(run_ids), _IN_CHUNK):
            chunk = list(run_ids[i:i + _IN_CHUNK])
            for rid, key, value in session.execute(
                select(SqlLatestMetric.run_id, SqlLatestMetric.key, SqlLatestMetric.value)
                .where(SqlLatestMetric.run_id.in_(chunk))
            ):
                out[rid][key] = float("nan") if value is None else value
        return out

    def _entity(self, session: Session, run: SqlRun) -> ent.Run:
        return self._entities(session, [run])[0]

    # ------------------------------------------------------------------ runs

    def check_new_runs(self, runs: Sequence[ent.NewRun]) -> None:
        for new in runs:
            _check_new_run(new.name, new.config, new.notes)
            _clean_tags(new.tags)

    def create_runs(self, runs: Sequence[ent.NewRun], *, launcher: str | None = None) -> list[ent.Run]:
        with self._session(write=True) as s:
            rows = []
            for new in runs:
                run = self._insert_run(s, name=new.name, config=new.config, tags=new.tags,
                                       notes=new.notes)
                run.launcher = _reported_text(launcher) if launcher else None
                rows.append(run)
            return self._entities(s, rows)

    def _insert_run(self, s: Session, *, name: str | None, config: dict[str, Any],
                    tags: Sequence[str], notes: str) -> SqlRun:
        """A new queued run, its text checked, with its "run queued" log line."""
        name = _check_new_run(name, config, notes)
        now = utcnow()
        run = SqlRun(
            name=name or "", status=ent.RunStatus.QUEUED.value, config=dict(config),
            dataset=_opt_str(config.get("dataset")), model=_opt_str(config.get("model")),
            selector=_opt_str(config.get("selector")), candidates=_opt_int(config.get("candidates")),
            batch_size=_opt_int(config.get("batch_size")), created_at=now, status_changed_at=now,
            notes=notes or "", step=0, epoch=0.0, last_seq=0, status_seq=0, summary={},
            run_info={}, tags=[SqlRunTag(tag=t) for t in _clean_tags(tags)],
        )
        s.add(run)
        s.flush()
        if not name:
            run.name = f"run-{run.id}"
        seq = self._take_seqs(s, run.id, 1)
        run.status_seq = seq
        s.add(SqlRunLog(run_id=run.id, seq=seq, time=now, level="info", message="run queued"))
        s.flush()
        return run

    def get_run(self, run_id: int) -> ent.Run:
        with self._session() as s:
            return self._entity(s, self._get(s, run_id))

    def list_runs(self, *, status: str | Sequence[str] | None = None, dataset: str | None = None,
                  model: str | None = None, selector: str | None = None, tag: str | None = None,
                  sort: str = "-created_at", limit: int = 50, offset: int = 0,
                  filter_string: str | None = None,
                  order_by: str | None = None) -> tuple[list[ent.Run], int]:
        clauses = parse_filter(filter_string)
        orders = parse_order_by(order_by)
        if limit < 0 or offset < 0:
            raise InvalidArgument("limit and offset must be >= 0")
        limit, offset = min(limit, MAX_OFFSET), min(offset, MAX_OFFSET)
        if not all(_matchable(v) for v in (dataset, model, selector, tag)):
            return [], 0
        desc = sort.startswith("-")
        sort_key = sort.lstrip("-+")
        if sort_key not in RUN_SORT_KEYS:
            raise InvalidArgument(f"unknown sort {sort!r}; use one of {', '.join(RUN_SORT_KEYS)} "
                                  "(prefix - for descending)")
        query: Select[Any] = select(SqlRun)
        if status:
            statuses = [x.strip() for x in status.split(",")] if isinstance(status, str) else list(status)
            bad = [x for x in statuses if x not in set(ent.RunStatus)]
            if bad:
                raise InvalidArgument(f"unknown status {bad[0]!r}; use one of "
                                      f"{', '.join(s.value for s in ent.RunStatus)}")
            query = query.where(SqlRun.status.in_([str(x) for x in statuses]))
        if dataset:
            query = query.where(SqlRun.dataset == dataset)
        if model:
            query = query.where(SqlRun.model == model)
        if selector:
            query = query.where(SqlRun.selector == selector)
        if tag:
            query = query.where(SqlRun.id.in_(select(SqlRunTag.run_id).where(SqlRunTag.tag == tag)))
        dialect = self.engine.dialect.name
        query = query.where(*filter_sql(clauses, dialect))
        if orders:
            order = order_sql(orders, dialect)
        else:
            col = getattr(SqlRun, sort_key)
            order = [col.desc(), SqlRun.id.desc()] if desc else [col.asc(), SqlRun.id.asc()]
        with self._session() as s:
            count = s.execute(select(func.count()).select_from(query.subquery())).scalar_one()
            runs = list(s.execute(query.order_by(*order).limit(limit).offset(offset)).scalars())
            return self._entities(s, runs), int(count)

    def _entities(self, session: Session, runs: Sequence[SqlRun]) -> list[ent.Run]:
        """Runs as entities with their latest values and, for queued ones, their queue position."""
        latest = self._latest_map(session, [r.id for r in runs])
        places = self._queue_positions(session, runs)
        return [r.to_entity(latest[r.id], queue_position=places.get(r.id)) for r in runs]

    @staticmethod
    def _queue_positions(session: Session, runs: Sequence[SqlRun]) -> dict[int, int]:
        """{queued run id: its place (1 = next)} in its launcher's FIFO (`next_queued`'s order:
        by id, among the runs that launcher may start: its own and those nobody claimed)."""
        mine = [r for r in runs if r.status == ent.RunStatus.QUEUED.value]
        if not mine:
            return {}
        queue = session.execute(select(SqlRun.id, SqlRun.launcher)
                                .where(SqlRun.status == ent.RunStatus.QUEUED.value)
                                .order_by(SqlRun.id)).all()
        return {r.id: sum(1 for qid, owner in queue
                          if qid <= r.id and (owner is None or owner == r.launcher))
                for r in mine}

    def update_run(self, run_id: int, *, name: str | None = None, tags: Sequence[str] | None = None,
                   notes: str | None = None) -> ent.Run:
        with self._session(write=True) as s:
            run = self._get(s, run_id)
            if name is not None:
                if not name.strip():
                    raise InvalidArgument("name must not be empty", field="name")
                run.name = check_text("name", name, limit=TEXT_LIMITS["name"])
            if notes is not None:
                run.notes = check_text("notes", notes, limit=TEXT_LIMITS["notes"])
            if tags is not None:
                run.tags = [SqlRunTag(tag=t) for t in _clean_tags(tags)]
            s.flush()
            return self._entity(s, run)

    def delete_run(self, run_id: int) -> None:
        with self._session(write=True) as s:
            run = self._get(s, run_id, lock=True)  # no status change between check and delete
            if run.status == ent.RunStatus.RUNNING:
                raise Conflict(f"run {run_id} is running; cancel it first")
            for table in (SqlMetric, SqlLatestMetric, SqlHistogram, SqlHistogramEdges,
                          SqlClassSelection, SqlSampleSnapshot, SqlRunSample, SqlRunLog, SqlRunTag):
                s.execute(delete(table).where(table.run_id == run_id))
            s.execute(delete(SqlRun).where(SqlRun.id == run_id))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def set_status(self, run_id: int, status: ent.RunStatus | str, *, pid: int | None = None,
                   host: str | None = None, error: str | None = None,
                   traceback: str | None = None, message: str | None = None,
                   expect: Sequence[ent.RunStatus | str] | None = None) -> ent.Run:
        try:
            new = ent.RunStatus(status)
        except ValueError:
            raise InvalidArgument(f"unknown status {status!r}") from None
        now = utcnow()
        with self._session(write=True) as s:
            seq = self._take_seqs(s, run_id, 1)
            run = self._get(s, run_id)
            old = run.status
            if expect is not None and old not in {str(ent.RunStatus(x)) for x in expect}:
                raise Conflict(f"run {run_id} is {old}, expected {', '.join(map(str, expect))}")
            run.status = new.value
            run.status_changed_at = now
            run.status_seq = seq
            if new in (ent.RunStatus.QUEUED, ent.RunStatus.RUNNING):
                run.stop_requested = False
            if new == ent.RunStatus.QUEUED:
                run.executor = None  # whoever starts it next says where it trains
                run.pid = run.host = None
                run.finished_at = None
                run.error = run.traceback = None
            elif new == ent.RunStatus.RUNNING:
                run.started_at = run.started_at or now
                run.finished_at = None
                run.heartbeat_at = now
                run.error = run.traceback = None
            else:
                run.finished_at = now
            if pid is not None:
                run.pid = pid
            if host is not None:
                run.host = _reported_text(host)
            if error is not None:
                run.error = _reported_text(error)
            if traceback is not None:
                run.traceback = _reported_text(traceback)
            text = _reported_text(message) or _status_text(old, new, run, error)
            level = "error" if new in (ent.RunStatus.FAILED, ent.RunStatus.CRASHED) else "info"
            s.add(SqlRunLog(run_id=run_id, seq=seq, time=now, level=level, message=text,
                            step=run.step))
            s.flush()
            return self._entity(s, run)

    def start_remote(self, run_id: int | None, *, host: str, pid: int, name: str | None = None,
                     config: dict[str, Any] | None = None, tags: Sequence[str] = (),
                     notes: str = "", executor: str | None = "remote") -> ent.Run:
        pid = _clamp(int(pid), 0, MAX_INT32)
        with self._session(write=True) as s:
            if run_id is None:
                run = self._insert_run(s, name=name, config=dict(config or {}), tags=tags, notes=notes)
            else:
                run = self._get(s, run_id, lock=True)
            seq = self._take_seqs(s, run.id, 1)
            if run.status != ent.RunStatus.QUEUED.value:
                raise Conflict(f"run {run.id} is {run.status}; only a queued run can be taken over")
            now = utcnow()
            run.status, run.executor, run.stop_requested = ent.RunStatus.RUNNING.value, executor, False
            run.pid, run.host = pid, _reported_text(host)
            run.started_at = run.started_at or now
            run.finished_at, run.error, run.traceback = None, None, None
            run.status_changed_at = run.heartbeat_at = now
            run.status_seq = seq
            s.add(SqlRunLog(run_id=run.id, seq=seq, time=now, level="info", step=run.step,
                            message=f"status queued → running ({'remote: ' if executor else ''}pid {pid} "
                                    f"on {run.host})"))
            s.flush()
            return self._entity(s, run)

    def set_credential(self, run_id: int, digest: str | None) -> None:
        with self._session(write=True) as s:
            self._get(s, run_id).credential_hash = digest

    def credential_digest(self, run_id: int) -> str | None:
        with self._session() as s:
            return self._get(s, run_id).credential_hash

    def request_stop(self, run_id: int) -> ent.Run:
        with self._session(write=True) as s:
            seq = self._take_seqs(s, run_id, 1)
            run = self._get(s, run_id)
            if run.status != ent.RunStatus.RUNNING.value or run.executor != "remote":
                raise Conflict(f"run {run_id} is {run.status}"
                               f"{'' if run.executor == 'remote' else ' and trains here'}: only a "
                               "running remote run is asked to stop")
            run.stop_requested = True
            s.add(SqlRunLog(run_id=run_id, seq=seq, time=utcnow(), level="info", step=run.step,
                            message=f"cancel requested: {run.host} stops the run at its next report"))
            s.flush()
            return self._entity(s, run)

    def heartbeat(self, run_id: int) -> ent.RunStatus:
        if not _valid_id(run_id):
            raise RunNotFound(run_id)
        with self._session(write=True) as s:
            status = s.execute(update(SqlRun).where(SqlRun.id == run_id).values(heartbeat_at=utcnow())
                               .returning(SqlRun.status)
                               .execution_options(synchronize_session=False)).scalar_one_or_none()
            if status is None:
                raise RunNotFound(run_id)
            return ent.RunStatus(status)

    def claim_queued(self, run_id: int, launcher: str, *, take: bool = False) -> bool:
        with self._session(write=True) as s:
            if s.get(SqlRun, run_id) is None:
                raise RunNotFound(run_id)
            query = update(SqlRun).where(SqlRun.id == run_id,
                                         SqlRun.status == ent.RunStatus.QUEUED.value)
            if not take:
                query = query.where(or_(SqlRun.launcher.is_(None), SqlRun.launcher == launcher))
            # one conditional UPDATE: of two launchers claiming at once, one matches the row
            return s.execute(query.values(launcher=launcher)).rowcount == 1

    def next_queued(self, limit: int = 1, *, launcher: str | None = None) -> list[ent.Run]:
        query = select(SqlRun).where(SqlRun.status == ent.RunStatus.QUEUED.value)
        if launcher is not None:
            query = query.where(or_(SqlRun.launcher.is_(None), SqlRun.launcher == launcher))
        with self._session() as s:
            runs = list(s.execute(query.order_by(SqlRun.id).limit(limit)).scalars())
            return self._entities(s, runs)

    def runs_changed_since(self, since: datetime | None) -> list[ent.Run]:
        query = select(SqlRun)
        if since is not None:
            query = query.where(SqlRun.status_changed_at >= _naive_utc(since))
        with self._session() as s:
            runs = list(s.execute(query.order_by(SqlRun.status_changed_at, SqlRun.id)).scalars())
            return self._entities(s, runs)

    def last_seq(self, run_id: int) -> int:
        if not _valid_id(run_id):
            raise RunNotFound(run_id)
        with self._session() as s:
            value = s.execute(select(SqlRun.last_seq).where(SqlRun.id == run_id)).scalar_one_or_none()
            if value is None:
                raise RunNotFound(run_id)
            return int(value)

    def last_seqs(self, run_ids: Sequence[int]) -> dict[int, int]:
        ids = sorted({i for i in run_ids if _valid_id(i)})
        out: dict[int, int] = {}
        if not ids:
            return out
        with self._session() as s:
            for i in range(0, len(ids), _IN_CHUNK):
                for rid, seq in s.execute(select(SqlRun.id, SqlRun.last_seq)
                                          .where(SqlRun.id.in_(ids[i:i + _IN_CHUNK]))):
                    out[int(rid)] = int(seq)
        return out

    # ------------------------------------------------------------------ writing

    def log_batch(self, run_id: int, batch: ent.RunBatch, *, expect_seq: int | None = None,
                  next_seq: int | None = None) -> int:
        ingest = expect_seq is not None
        if batch.empty and not ingest:
            return self.last_seq(run_id)
        with self._session(write=True) as s:
            if batch.resume_from_step is not None:  # before this batch's rows: they stay
                self._truncate(s, run_id, batch.resume_from_step)
            first = self._take_seqs(s, run_id, max(len(batch.rows), 1))
            run = self._get(s, run_id)
            now = utcnow()
            if ingest:  # the run row is locked (by _take_seqs) until commit
                if (run.ingest_seq or 0) != expect_seq:  # rolls the truncation back too
                    raise SeqMismatch(run_id, int(run.ingest_seq or 0), int(expect_seq))
                run.ingest_seq = int(next_seq if next_seq is not None else expect_seq)
                run.heartbeat_at = now
            rows: dict[BulkInsert, list[tuple[Any, ...]]] = {}
            for seq, row in enumerate(batch.rows, start=first):
                writer = _ROW_WRITERS.get(type(row))
                if writer is None:
                    raise InvalidArgument(f"a RunBatch row cannot be a {type(row).__name__}")
                inserter, values = writer
                rows.setdefault(inserter, []).append((run_id, seq, *values(row, now)))
            connection = s.connection()
            for inserter, table_rows in rows.items():  # one executemany of tuples per table
                inserter.execute(connection, table_rows)
            if batch.edges:
                have = set(s.execute(select(SqlHistogramEdges.population)
                                     .where(SqlHistogramEdges.run_id == run_id)).scalars())
                for pop, edges in batch.edges.items():
                    if pop not in have:
                        s.add(SqlHistogramEdges(run_id=run_id, population=pop,
                                                edges=[float(x) for x in edges]))
            apply_samples(s, run_id, [r for r in batch.rows if isinstance(r, ent.SamplePoint)])
            update = batch.update
            self._upsert_latest(s, run_id, rows.get(_METRICS, []), update.progress,
                                first + len(batch.rows) - 1)
            _apply_update(run, update)
            s.flush()
            return int(run.last_seq)

    @staticmethod
    def _upsert_latest(s: Session, run_id: int, metric_rows: list[tuple[Any, ...]],
                       progress: ent.Position | None, last_seq: int) -> None:
        """Each key's newest value (by step, then seq) becomes its latest unless a later step is
        stored: one INSERT ... ON CONFLICT DO UPDATE for the batch."""
        newest: dict[str, tuple[float | None, int, int]] = {}
        for _, seq, key, value, step, *_rest in metric_rows:  # _METRICS' column order
            cur = newest.get(key)
            if cur is None or (step, seq) >= (cur[1], cur[2]):
                newest[key] = (value, step, seq)
        if progress is not None:
            for key in LATEST_ONLY_COUNTERS:
                newest[key] = (_finite(getattr(progress, key)), progress.step, last_seq)
        if not newest:
            return
        insert = _DIALECT_INSERT[s.get_bind().dialect.name](SqlLatestMetric)
        s.execute(insert.on_conflict_do_update(  # one statement, compiled once (executemany)
            index_elements=[SqlLatestMetric.run_id, SqlLatestMetric.key],
            set_={"value": insert.excluded.value, "step": insert.excluded.step, "seq": insert.excluded.seq},
            where=insert.excluded.step >= SqlLatestMetric.step),
            [{"run_id": run_id, "key": key, "value": value, "step": step, "seq": seq}
             for key, (value, step, seq) in newest.items()])

    def append_log(self, run_id: int, level: str, message: str, *, step: int | None = None) -> int:
        _check_level(level)
        with self._session(write=True) as s:
            seq = self._take_seqs(s, run_id, 1)
            s.add(SqlRunLog(run_id=run_id, seq=seq, time=utcnow(), level=level,
                            message=_reported_text(message), step=step))
            return seq

    def truncate_after_step(self, run_id: int, step: int) -> int:
        with self._session(write=True) as s:
            return self._truncate(s, run_id, step)

    def _truncate(self, s: Session, run_id: int, step: int) -> int:
        step = _clamp(step, -MAX_INT32, MAX_INT32)
        seq = self._take_seqs(s, run_id, 1)  # also locks the run row against a concurrent writer
        run = self._get(s, run_id)
        deleted = 0
        for table in (SqlMetric, SqlHistogram, SqlClassSelection):
            res = s.execute(delete(table).where(table.run_id == run_id, table.step > step))
            deleted += int(res.rowcount or 0)  # type: ignore[attr-defined]
        deleted += truncate_samples(s, run_id, step)
        # rebuild latest values from what remains
        s.execute(delete(SqlLatestMetric).where(SqlLatestMetric.run_id == run_id))
        keys = list(s.execute(select(SqlMetric.key).where(SqlMetric.run_id == run_id).distinct())
                    .scalars())
        for key in keys:
            m = s.execute(select(SqlMetric).where(SqlMetric.run_id == run_id, SqlMetric.key == key)
                          .order_by(SqlMetric.step.desc(), SqlMetric.seq.desc()).limit(1)).scalar_one()
            s.add(SqlLatestMetric(run_id=run_id, key=key, value=m.value, step=m.step, seq=m.seq))
        last = s.execute(select(SqlMetric).where(SqlMetric.run_id == run_id,
                                                 SqlMetric.key == "train/loss")
                         .order_by(SqlMetric.step.desc(), SqlMetric.seq.desc()).limit(1)).scalar_one_or_none()
        if last is not None:
            for key in LATEST_ONLY_COUNTERS:
                s.add(SqlLatestMetric(run_id=run_id, key=key, value=getattr(last, key),
                                      step=last.step, seq=last.seq))
        run.step = min(run.step or 0, step)
        run.epoch = last.epoch if last is not None else 0.0
        run.attempt = (run.attempt or 0) + 1
        run.resumed_at_seq = seq
        s.add(SqlRunLog(run_id=run_id, seq=seq, time=utcnow(), level="info", step=step,
                        message=f"resuming from the checkpoint at step {step} (attempt "
                                f"{run.attempt + 1}; {deleted} rows after it dropped)"))
        s.flush()  # the rebuilt latest values: a batch written next in this session reads them
        return deleted

    # ------------------------------------------------------------------ reading

    def latest(self, run_id: int) -> dict[str, float]:
        with self._session() as s:
            self._check(s, run_id)
            return self._latest_map(s, [run_id])[run_id]

    def metric_keys(self, run_id: int) -> list[str]:
        with self._session() as s:
            self._check(s, run_id)
            return sorted(s.execute(select(SqlLatestMetric.key).where(
                SqlLatestMetric.run_id == run_id, SqlLatestMetric.key.not_in(LATEST_ONLY_COUNTERS))).scalars())

    def get_series(self, run_id: int, keys: Sequence[str], *, x: str = "step",
                   max_points: int = 2000) -> dict[str, ent.Series]:
        if x not in ent.X_AXES:
            raise InvalidArgument(f"unknown x axis {x!r}; use one of {', '.join(ent.X_AXES)}")
        if max_points < 1:
            raise InvalidArgument("max_points must be >= 1")
        xcol = getattr(SqlMetric, x)
        out: dict[str, ent.Series] = {}
        with self._session() as s:
            self._check(s, run_id)
            for key in dict.fromkeys(keys):
                if not _matchable(key):
                    out[key] = ent.Series(x=[], y=[], step=[])
                    continue
                rows = s.execute(select(xcol, SqlMetric.value, SqlMetric.step).where(
                    SqlMetric.run_id == run_id, SqlMetric.key == key)
                    .order_by(SqlMetric.step, SqlMetric.seq)).all()
                ys = [float("nan") if r[1] is None else r[1] for r in rows]
                idx = downsample_indices(ys, max_points)
                out[key] = ent.Series(x=[rows[i][0] for i in idx], y=[ys[i] for i in idx],
                                      step=[rows[i][2] for i in idx])
        return out

    def get_scalars(self, run_id: int, *, keys: Sequence[str] | None = None,
                    max_points: int | None = None) -> list[ent.ScalarRow]:
        if max_points is not None and max_points < 1:
            raise InvalidArgument("max_points must be >= 1")
        columns = [getattr(SqlMetric, name) for name in ("seq", "key", *ent.X_AXES, "value")]
        with self._session() as s:
            self._check(s, run_id)
            query = select(*columns).where(SqlMetric.run_id == run_id)
            if keys:
                query = query.where(SqlMetric.key.in_([k for k in keys if _matchable(k)]))
            rows = s.execute(query.order_by(SqlMetric.key, SqlMetric.step, SqlMetric.seq)).all()
        values = [float("nan") if r.value is None else r.value for r in rows]  # NULL = not finite
        kept: Sequence[int] = range(len(rows))
        if max_points is not None:  # pick on plain tuples; build entities only for what is kept
            kept = [i + k for i, j in _runs_of_one_key([r.key for r in rows])
                    for k in downsample_indices(values[i:j], max_points)]
        return [ent.ScalarRow(**{**rows[i]._mapping, "value": values[i]}) for i in kept]

    def iter_scalars(self, run_id: int, *, until_seq: int) -> Iterator[ent.ScalarRow]:
        return self._iter_rows(run_id, select(SqlMetric).where(
            SqlMetric.run_id == run_id, SqlMetric.seq <= _clamp(until_seq, -MAX_INT64, MAX_INT64))
            .order_by(SqlMetric.key, SqlMetric.step, SqlMetric.seq))

    def iter_histograms(self, run_id: int, population: str, *,
                        until_seq: int) -> Iterator[ent.HistogramRow]:
        return self._iter_rows(run_id, select(SqlHistogram).where(
            SqlHistogram.run_id == run_id, SqlHistogram.population == population,
            SqlHistogram.seq <= _clamp(until_seq, -MAX_INT64, MAX_INT64))
            .order_by(SqlHistogram.step, SqlHistogram.seq))

    def iter_selection(self, run_id: int, *, until_seq: int) -> Iterator[ent.SelectionRow]:
        return self._iter_rows(run_id, select(SqlClassSelection).where(
            SqlClassSelection.run_id == run_id,
            SqlClassSelection.seq <= _clamp(until_seq, -MAX_INT64, MAX_INT64))
            .order_by(SqlClassSelection.step, SqlClassSelection.seq))

    def _iter_rows(self, run_id: int, query: Select[Any]) -> Iterator[Any]:
        """The entities of `query`'s rows, fetched `_STREAM_CHUNK` at a time (a server-side cursor
        on PostgreSQL) within one read session, closed when the iterator is."""
        with self._session() as s:
            self._check(s, run_id)
            for row in s.execute(query.execution_options(yield_per=_STREAM_CHUNK)).scalars():
                yield row.to_entity()

    def get_edges(self, run_id: int) -> dict[str, list[float]]:
        with self._session() as s:
            self._check(s, run_id)
            return {e.population: list(e.edges) for e in s.execute(
                select(SqlHistogramEdges).where(SqlHistogramEdges.run_id == run_id)).scalars()}

    def get_histograms(self, run_id: int, population: str, *, start: int | None = None,
                       end: int | None = None, stride: int = 1,
                       max_rows: int = 500) -> ent.HistogramSeries:
        if population not in POPULATIONS:
            raise InvalidArgument(f"unknown population {population!r}; use one of "
                                  f"{', '.join(POPULATIONS)}")
        if stride < 1 or max_rows < 1:
            raise InvalidArgument("stride and max_rows must be >= 1")
        with self._session() as s:
            self._check(s, run_id)
            query = select(SqlHistogram.id).where(SqlHistogram.run_id == run_id,
                                                  SqlHistogram.population == population)
            if start is not None:
                query = query.where(SqlHistogram.step >= _clamp(start, -MAX_INT32, MAX_INT32))
            if end is not None:
                query = query.where(SqlHistogram.step <= _clamp(end, -MAX_INT32, MAX_INT32))
            ids = list(s.execute(query.order_by(SqlHistogram.step, SqlHistogram.seq)).scalars())
            if stride > 1 and ids:
                last = ids[-1]
                ids = ids[::stride]
                if ids[-1] != last:
                    ids.append(last)
            ids = [ids[i] for i in thin_indices(len(ids), max_rows)]
            rows = self._rows_by_id(s, SqlHistogram, ids)
            edges = s.execute(select(SqlHistogramEdges.edges).where(
                SqlHistogramEdges.run_id == run_id, SqlHistogramEdges.population == population)
            ).scalar_one_or_none()
            return _histogram_series(population, list(edges or []), [r.to_entity() for r in rows])

    def latest_histograms(self, run_id: int) -> dict[str, ent.HistogramSeries]:
        out = {}
        with self._session() as s:
            self._check(s, run_id)
            edges = {e.population: list(e.edges) for e in s.execute(
                select(SqlHistogramEdges).where(SqlHistogramEdges.run_id == run_id)).scalars()}
            for pop in POPULATIONS:
                row = s.execute(select(SqlHistogram).where(
                    SqlHistogram.run_id == run_id, SqlHistogram.population == pop)
                    .order_by(SqlHistogram.step.desc(), SqlHistogram.seq.desc()).limit(1)).scalar_one_or_none()
                if row is not None or pop in edges:
                    out[pop] = _histogram_series(pop, edges.get(pop, []),
                                                 [row.to_entity()] if row is not None else [])
        return out

    def get_selection(self, run_id: int, *, max_points: int = 500) -> ent.SelectionSeries:
        if max_points < 1:
            raise InvalidArgument("max_points must be >= 1")
        with self._session() as s:
            run = self._get(s, run_id)
            ids = list(s.execute(select(SqlClassSelection.id).where(SqlClassSelection.run_id == run_id)
                                 .order_by(SqlClassSelection.step, SqlClassSelection.seq)).scalars())
            ids = [ids[i] for i in thin_indices(len(ids), max_points)]
            rows = [r.to_entity() for r in self._rows_by_id(s, SqlClassSelection, ids)]
            return ent.SelectionSeries(
                steps=[r.step for r in rows], candidate_counts=[r.candidate_counts for r in rows],
                selected_counts=[r.selected_counts for r in rows],
                misclassified_share=[r.misclassified_share for r in rows],
                class_names=run.to_entity().class_names)

    def get_logs(self, run_id: int, *, after: int = 0, limit: int = 500) -> list[ent.LogLine]:
        if limit < 0:
            raise InvalidArgument("limit must be >= 0")
        after, limit = _clamp(after, -MAX_INT64, MAX_INT64), min(limit, MAX_OFFSET)
        with self._session() as s:
            self._check(s, run_id)
            return [r.to_entity() for r in s.execute(
                select(SqlRunLog).where(SqlRunLog.run_id == run_id, SqlRunLog.seq > after)
                .order_by(SqlRunLog.seq).limit(limit)).scalars()]

    def changes_since(self, run_id: int, seq: int, *, limit: int = 5000) -> ent.Changes:
        if limit < 1:
            raise InvalidArgument("limit must be >= 1")
        seq, limit = _clamp(seq, -MAX_INT64, MAX_INT64), min(limit, MAX_OFFSET)
        with self._session() as s:
            run = self._get(s, run_id)
            found: list[tuple[int, Any]] = []
            full = False
            tables: tuple[Any, ...] = (SqlMetric, SqlHistogram, SqlClassSelection, SqlRunLog)
            for table in tables:
                rows = list(s.execute(select(table).where(table.run_id == run_id, table.seq > seq)
                                      .order_by(table.seq).limit(limit)).scalars())
                full = full or len(rows) == limit
                found.extend((r.seq, r) for r in rows)
            found.sort(key=lambda t: t[0])
            more = len(found) > limit or full
            found = found[:limit]
            new_seq = found[-1][0] if found else seq
            if more and found and new_seq >= run.last_seq:
                more = False
            changed = seq < run.status_seq <= new_seq
            resumed = run.resumed_at_seq is not None and seq < run.resumed_at_seq <= new_seq
            return ent.Changes(
                since=seq, seq=new_seq,
                scalars=[r.to_entity() for _, r in found if isinstance(r, SqlMetric)],
                histograms=[r.to_entity() for _, r in found if isinstance(r, SqlHistogram)],
                selection=[r.to_entity() for _, r in found if isinstance(r, SqlClassSelection)],
                logs=[r.to_entity() for _, r in found if isinstance(r, SqlRunLog)],
                run=self._entity(s, run) if changed else None, more=more, resumed=resumed)

    def time_to_target(self, run_id: int, key: str, target: float, *,
                       higher_is_better: bool = True) -> ent.TargetReached:
        cond = SqlMetric.value >= target if higher_is_better else SqlMetric.value <= target
        agg = func.max(SqlMetric.value) if higher_is_better else func.min(SqlMetric.value)
        with self._session() as s:
            self._check(s, run_id)
            if not _matchable(key):
                return ent.TargetReached(run_id=run_id, reached=False, step=None, epoch=None,
                                         samples_forwarded=None, samples_backpropagated=None,
                                         wall_time=None, best=None)
            base = (SqlMetric.run_id == run_id, SqlMetric.key == key)
            hit = s.execute(select(SqlMetric).where(*base, cond)
                            .order_by(SqlMetric.step, SqlMetric.seq).limit(1)).scalar_one_or_none()
            best = s.execute(select(agg).where(*base)).scalar_one_or_none()
            if hit is None:
                return ent.TargetReached(run_id=run_id, reached=False, step=None, epoch=None,
                                         samples_forwarded=None, samples_backpropagated=None,
                                         wall_time=None, best=best)
            return ent.TargetReached(run_id=run_id, reached=True, step=hit.step, epoch=hit.epoch,
                                     samples_forwarded=hit.samples_forwarded,
                                     samples_backpropagated=hit.samples_backpropagated,
                                     wall_time=hit.wall_time, best=best)

    # ------------------------------------------------------------------ housekeeping

    def run_dir(self, run_id: int) -> str:
        return str(self.data_dir / "runs" / str(int(run_id)))

    @staticmethod
    def _rows_by_id(s: Session, table: Any, ids: list[int]) -> list[Any]:
        rows: list[Any] = []
        for i in range(0, len(ids), _IN_CHUNK):
            rows.extend(s.execute(select(table).where(table.id.in_(ids[i:i + _IN_CHUNK]))).scalars())
        order = {id_: k for k, id_ in enumerate(ids)}
        return sorted(rows, key=lambda r: order[r.id])


# ---------------------------------------------------------------------- writing rows

# each RunBatch row type: its table's BulkInsert (run_id and seq first) and its other column values
_METRICS = BulkInsert(SqlMetric.__table__, ("run_id", "seq", "key", "value", "step", "epoch", "samples_forwarded",
                                            "samples_backpropagated", "wall_time"))
_HISTOGRAMS = BulkInsert(SqlHistogram.__table__, ("run_id", "seq", "population", "step", "epoch", "wall_time",
                                                  "counts", *QUANTILE_KEYS, "mean", "count", "threshold"))
_SELECTIONS = BulkInsert(SqlClassSelection.__table__, ("run_id", "seq", "step", "epoch", "candidate_counts",
                                                       "selected_counts", "misclassified_share"))
_SNAPSHOTS = BulkInsert(SqlSampleSnapshot.__table__, ("run_id", "seq", "step", "epoch", "scored", "lowest",
                                                      "selected"))
_LOGS = BulkInsert(SqlRunLog.__table__, ("run_id", "seq", "time", "level", "message", "step"))


def _metric(row: ent.MetricPoint, now: datetime) -> tuple[Any, ...]:
    at = row.at
    return (row.key, _finite(row.value), int(at.step), float(at.epoch), int(at.samples_forwarded),
            int(at.samples_backpropagated), float(at.wall_time))


def _histogram(row: ent.HistogramPoint, now: datetime) -> tuple[Any, ...]:
    at, quantiles = row.at, row.quantiles
    return (row.population, int(at.step), float(at.epoch), float(at.wall_time), [int(x) for x in row.counts],
            *[_finite(quantiles.get(k)) for k in QUANTILE_KEYS], _finite(row.mean), int(row.count),
            _finite(row.threshold))


def _selection(row: ent.SelectionPoint, now: datetime) -> tuple[Any, ...]:
    return (int(row.at.step), float(row.at.epoch), [int(x) for x in row.candidate_counts],
            [int(x) for x in row.selected_counts], _finite(row.misclassified_share))


def _snapshot(row: ent.SamplePoint, now: datetime) -> tuple[Any, ...]:
    values = snapshot_values(row)
    return tuple(values[c] for c in _SNAPSHOTS.columns[2:])


def _log(row: ent.LogEntry, now: datetime) -> tuple[Any, ...]:
    return (now, _check_level(row.level), _reported_text(row.message), row.step)


_ROW_WRITERS: dict[type, tuple[BulkInsert, Callable[[Any, datetime], tuple[Any, ...]]]] = {
    ent.MetricPoint: (_METRICS, _metric), ent.HistogramPoint: (_HISTOGRAMS, _histogram),
    ent.SelectionPoint: (_SELECTIONS, _selection), ent.SamplePoint: (_SNAPSHOTS, _snapshot),
    ent.LogEntry: (_LOGS, _log),
}
_DIALECT_INSERT = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}  # INSERT ... ON CONFLICT


# RunUpdate fields copied onto the run when given, each with how its value is stored
_UPDATED_FIELDS: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("total_steps", int), ("model", _reported_text), ("checkpoint_path", _reported_text), ("checkpoint_step", int),
    ("summary", dict), ("error", _reported_text), ("traceback", _reported_text),
)


def _apply_update(run: SqlRun, update: ent.RunUpdate) -> None:
    for name, stored in _UPDATED_FIELDS:
        value = getattr(update, name)
        if value is not None:
            setattr(run, name, stored(value))
    if update.progress is not None and update.progress.step >= (run.step or 0):
        run.step = int(update.progress.step)
        run.epoch = float(update.progress.epoch)
    if update.run_info:
        info = dict(run.run_info or {})
        for key, value in update.run_info.items():
            old = info.get(key)
            info[key] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
        run.run_info = info


def _histogram_series(population: str, edges: list[float],
                      rows: list[ent.HistogramRow]) -> ent.HistogramSeries:
    return ent.HistogramSeries(
        edges=edges, population=population, steps=[r.step for r in rows],
        epochs=[r.epoch for r in rows], wall_time=[r.wall_time for r in rows],
        counts=[r.counts for r in rows],
        quantiles={k: [r.quantiles.get(k, float("nan")) for r in rows] for k in QUANTILE_KEYS},
        thresholds=[r.threshold for r in rows])


def _status_text(old: str, new: ent.RunStatus, run: SqlRun, error: str | None) -> str:
    """The log line of a status change (when the caller gives no message)."""
    if new.ended:  # the run's last word, e.g. "run finished at step 160 (was running)"
        text = f"run {new.value} at step {run.step or 0} (was {old})"
    else:
        text = f"status {old} → {new.value}"
        if new == ent.RunStatus.RUNNING and run.pid:
            text += f" (pid {run.pid} on {run.host})"
    if error:
        text += f": {_reported_text(error)}"
    return text


def _check_new_run(name: str | None, config: dict[str, Any], notes: str) -> str | None:
    """The name a new run gets (None: "run-<id>"); InvalidArgument for text no backend keeps."""
    name = (name or "").strip() or None
    if name:
        check_text("name", name, limit=TEXT_LIMITS["name"])
    check_text("notes", notes or "", limit=TEXT_LIMITS["notes"])
    for field in ("dataset", "model", "selector"):
        if config.get(field) is not None:
            check_text(f"config.{field}", str(config[field]), limit=TEXT_LIMITS[field])
    for field, text in _config_strings(config):
        check_text(f"config.{field}", text)
    return name


def _clean_tags(tags: Sequence[str]) -> list[str]:
    out = []
    for i, t in enumerate(tags):
        t = str(t).strip()
        if t:
            out.append(check_text(f"tags.{i}", t, limit=TEXT_LIMITS["tag"]))
    return list(dict.fromkeys(out))


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _naive_utc(value: datetime) -> datetime:
    from datetime import UTC

    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _runs_of_one_key(keys: Sequence[str]) -> Iterator[tuple[int, int]]:
    """(start, end) of each stretch of `keys` (sorted) that holds one key."""
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            yield start, i
            start = i
