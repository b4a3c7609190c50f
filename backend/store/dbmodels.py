"""SQLAlchemy 2.x ORM rows of the store (MLflow's `dbmodels/models.py` pattern).

Rows are prefixed `Sql`, every constraint and index is named (the naming convention below, so
Alembic can alter them on SQLite's batch mode), and rows leave the store only through
`to_entity()`. The schema itself is owned by Alembic: `alembic/versions/` must create exactly
these tables (tests/db/ checks that autogenerate finds no difference).

Every data row (scalar, histogram, selection, log) carries a per-run `seq` taken from
`runs.last_seq` in the writing transaction; (run_id, seq) is unique per table.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from marginscope.backend.store import entities as ent

# the histogram quantile columns below (the engine's QUANTILE_KEYS; tests/backend/test_store.py ties them)
QUANTILE_KEYS = ("p5", "p25", "p50", "p75", "p95")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MAX_INT32 = 2**31 - 1  # Integer columns (run ids, steps) on PostgreSQL
MAX_INT64 = 2**63 - 1  # BigInteger columns (seqs)

# A 64-bit primary key that is still SQLite's auto-incrementing rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC (portable across SQLite and PostgreSQL), returns aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


def _num(value: float | None) -> float:
    """NULL floats come back as NaN (SQLite cannot store NaN; the engine may report one)."""
    return float("nan") if value is None else float(value)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _run_fk() -> ForeignKey:
    return ForeignKey("runs.id", ondelete="CASCADE")


class SqlRun(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    # denormalised from config for filtering and sorting
    dataset: Mapped[str | None] = mapped_column(String(300), index=True)
    model: Mapped[str | None] = mapped_column(String(100))
    selector: Mapped[str | None] = mapped_column(String(100))
    candidates: Mapped[int | None] = mapped_column(Integer)
    batch_size: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str] = mapped_column(Text, nullable=False, default="")
    step: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    epoch: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    last_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    status_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    checkpoint_path: Mapped[str | None] = mapped_column(Text)
    checkpoint_step: Mapped[int | None] = mapped_column(Integer)
    # resumes (migration 0002): attempt 0 is the first run; every resume from a checkpoint
    # (truncate_after_step) adds one and records the seq of its log line, so the hub can tell a
    # client that rows it holds were deleted without parsing log text
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    resumed_at_seq: Mapped[int | None] = mapped_column(BigInteger)
    # runs that train elsewhere and report over HTTP (migration 0003): `executor` "remote" (None:
    # a worker of the launcher's), the sequence number the run's next reported event must carry
    # (the ingest API's idempotency), and a stop asked by the dashboard that the trainer reads in
    # its heartbeat's answer (a remote process cannot be signalled)
    executor: Mapped[str | None] = mapped_column(String(16))
    ingest_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")
    stop_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False,
                                                 server_default=false())
    # the launcher (a dashboard, "host:port") that starts this queued run or started it (migration
    # 0005): with several dashboards on one database, each starts and supervises only its own runs
    launcher: Mapped[str | None] = mapped_column(String(255))
    # the run's own credential (migration 0006): SHA-256 (hex) of the secret its launcher minted
    # for the current attempt; the ingest routes of this run alone take it (backend/security.py)
    credential_hash: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    run_info: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)

    tags: Mapped[list[SqlRunTag]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin", order_by="SqlRunTag.tag"
    )

    def to_entity(self, latest: dict[str, float] | None = None, *,
                  queue_position: int | None = None) -> ent.Run:
        return ent.Run(
            id=self.id, name=self.name, status=ent.RunStatus(self.status), config=dict(self.config),
            dataset=self.dataset, model=self.model, selector=self.selector,
            candidates=self.candidates, batch_size=self.batch_size, created_at=self.created_at,
            started_at=self.started_at, finished_at=self.finished_at,
            status_changed_at=self.status_changed_at, heartbeat_at=self.heartbeat_at,
            pid=self.pid, host=self.host, error=self.error, traceback=self.traceback,
            tags=[t.tag for t in self.tags], notes=self.notes or "", step=self.step or 0,
            epoch=self.epoch or 0.0, total_steps=self.total_steps, last_seq=self.last_seq or 0,
            status_seq=self.status_seq or 0, checkpoint_path=self.checkpoint_path,
            checkpoint_step=self.checkpoint_step, attempt=self.attempt or 0,
            resumed_at_seq=self.resumed_at_seq, executor=self.executor,
            ingest_seq=self.ingest_seq or 0, stop_requested=bool(self.stop_requested), launcher=self.launcher,
            summary=dict(self.summary or {}),
            run_info=dict(self.run_info or {}), latest=dict(latest or {}),
            queue_position=queue_position,
        )


class SqlRunTag(Base):
    """Tags as rows (not JSON) so `tag=` filters with a portable indexed join."""

    __tablename__ = "run_tags"

    run_id: Mapped[int] = mapped_column(_run_fk(), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)

    __table_args__ = (Index("ix_run_tags_tag", "tag"),)


class SqlMetric(Base):
    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(_run_fk(), nullable=False)
    key: Mapped[str] = mapped_column(String(100), nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    epoch: Mapped[float] = mapped_column(Float, nullable=False)
    samples_forwarded: Mapped[int] = mapped_column(BigInteger, nullable=False)
    samples_backpropagated: Mapped[int] = mapped_column(BigInteger, nullable=False)
    wall_time: Mapped[float] = mapped_column(Float, nullable=False)
    value: Mapped[float | None] = mapped_column(Float)  # NULL = not finite (SQLite stores NaN as NULL)

    __table_args__ = (
        Index("ix_metrics_run_id_key_step", "run_id", "key", "step"),
        Index("ix_metrics_run_id_seq", "run_id", "seq", unique=True),
    )

    def to_entity(self) -> ent.ScalarRow:
        return ent.ScalarRow(seq=self.seq, key=self.key, step=self.step, epoch=self.epoch,
                             samples_forwarded=self.samples_forwarded,
                             samples_backpropagated=self.samples_backpropagated,
                             wall_time=self.wall_time, value=_num(self.value))


class SqlLatestMetric(Base):
    """The latest value per (run, key), upserted with every scalar: list views read only this."""

    __tablename__ = "latest_metrics"

    run_id: Mapped[int] = mapped_column(_run_fk(), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)  # NULL = not finite
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)


class SqlHistogramEdges(Base):
    """The fixed bin edges of one run and population, stored once."""

    __tablename__ = "histogram_edges"

    run_id: Mapped[int] = mapped_column(_run_fk(), primary_key=True)
    population: Mapped[str] = mapped_column(String(16), primary_key=True)
    edges: Mapped[list[float]] = mapped_column(JSON, nullable=False)


class SqlHistogram(Base):
    __tablename__ = "histograms"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(_run_fk(), nullable=False)
    population: Mapped[str] = mapped_column(String(16), nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    epoch: Mapped[float] = mapped_column(Float, nullable=False)
    wall_time: Mapped[float] = mapped_column(Float, nullable=False)
    counts: Mapped[list[int]] = mapped_column(JSON, nullable=False)
    p5: Mapped[float | None] = mapped_column(Float)
    p25: Mapped[float | None] = mapped_column(Float)
    p50: Mapped[float | None] = mapped_column(Float)
    p75: Mapped[float | None] = mapped_column(Float)
    p95: Mapped[float | None] = mapped_column(Float)
    mean: Mapped[float | None] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer, nullable=False)
    threshold: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        Index("ix_histograms_run_id_population_step", "run_id", "population", "step"),
        Index("ix_histograms_run_id_seq", "run_id", "seq", unique=True),
    )

    def to_entity(self) -> ent.HistogramRow:
        q = {k: getattr(self, k) for k in QUANTILE_KEYS if getattr(self, k) is not None}
        return ent.HistogramRow(seq=self.seq, population=self.population, step=self.step,
                                epoch=self.epoch, wall_time=self.wall_time, counts=list(self.counts),
                                quantiles=q, mean=self.mean if self.mean is not None else float("nan"),
                                count=self.count, threshold=self.threshold)


class SqlClassSelection(Base):
    __tablename__ = "class_selection"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(_run_fk(), nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    epoch: Mapped[float] = mapped_column(Float, nullable=False)
    candidate_counts: Mapped[list[int]] = mapped_column(JSON, nullable=False)
    selected_counts: Mapped[list[int]] = mapped_column(JSON, nullable=False)
    misclassified_share: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        Index("ix_class_selection_run_id_step", "run_id", "step"),
        Index("ix_class_selection_run_id_seq", "run_id", "seq", unique=True),
    )

    def to_entity(self) -> ent.SelectionRow:
        return ent.SelectionRow(seq=self.seq, step=self.step, epoch=self.epoch,
                                candidate_counts=list(self.candidate_counts),
                                selected_counts=list(self.selected_counts),
                                misclassified_share=_num(self.misclassified_share))


class SqlRunLog(Base):
    __tablename__ = "run_logs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(_run_fk(), nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    level: Mapped[str] = mapped_column(String(16), nullable=False)
    step: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text, nullable=False)

    __table_args__ = (Index("ix_run_logs_run_id_seq", "run_id", "seq", unique=True),)

    def to_entity(self) -> ent.LogLine:
        return ent.LogLine(seq=self.seq, time=self.time, level=self.level, message=self.message,
                           step=self.step)


class SqlSampleSnapshot(Base):
    """One sample snapshot: the k lowest-margin samples of its step, and the selection counts
    since the previous snapshot (columnar JSON, so a snapshot is one row whatever k is)."""

    __tablename__ = "sample_snapshots"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(_run_fk(), nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    epoch: Mapped[float] = mapped_column(Float, nullable=False)
    scored: Mapped[str] = mapped_column(String(16), nullable=False)
    lowest: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    selected: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)

    __table_args__ = (
        Index("ix_sample_snapshots_run_id_step", "run_id", "step"),
        Index("ix_sample_snapshots_run_id_seq", "run_id", "seq", unique=True),
    )

    def to_entity(self) -> ent.SampleSnapshotRow:
        return ent.SampleSnapshotRow(seq=self.seq, step=self.step, epoch=self.epoch, scored=self.scored,
                                     lowest=dict(self.lowest))


class SqlRunSample(Base):
    """One training sample of a run, updated in place by every snapshot that names it (at most one
    row per sample of the training split, whatever the run's length)."""

    __tablename__ = "run_samples"

    run_id: Mapped[int] = mapped_column(_run_fk(), primary_key=True)
    sample: Mapped[int] = mapped_column(Integer, primary_key=True)  # dataset index (training split)
    label: Mapped[int | None] = mapped_column(Integer)
    flipped: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    selected: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    misclassified: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_mms: Mapped[float | None] = mapped_column(Float)
    last_prediction: Mapped[int | None] = mapped_column(Integer)
    last_step: Mapped[int | None] = mapped_column(Integer)
    observed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    mean_mms: Mapped[float | None] = mapped_column(Float)
    suspect_score: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        Index("ix_run_samples_run_id_selected", "run_id", "selected"),
        Index("ix_run_samples_run_id_suspect_score", "run_id", "suspect_score"),
    )

    def to_entity(self) -> ent.SampleRecord:
        return ent.SampleRecord(
            index=self.sample, label=self.label, flipped=bool(self.flipped), selected=self.selected or 0,
            misclassified=self.misclassified or 0, last_mms=self.last_mms,
            last_prediction=self.last_prediction, last_step=self.last_step,
            observed=self.observed or 0, mean_mms=self.mean_mms, suspect_score=self.suspect_score)


DATA_TABLES = (SqlMetric, SqlHistogram, SqlClassSelection, SqlRunLog)

# The most characters each text a user gives may hold, checked by the store (check_text): the
# lengths of the String columns it lands in (PostgreSQL enforces them, SQLite does not), and a cap
# on free-form notes.
TEXT_LIMITS: dict[str, int] = {
    **{field: SqlRun.__table__.c[field].type.length
       for field in ("name", "dataset", "model", "selector")},
    "tag": SqlRunTag.__table__.c.tag.type.length,
    "notes": 20_000,
}
