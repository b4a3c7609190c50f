"""Plain values the store hands to its callers (routes, hub, worker, CLI).

ORM rows never leave the store: `dbmodels.Sql*.to_entity()` converts them into these frozen-ish
dataclasses (MLflow's `to_mlflow_entity()` pattern), so callers cannot lazy-load or mutate rows.
Times are timezone-aware UTC datetimes; the API formats them as ISO 8601.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from collections.abc import Sequence
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    """queued → running → finished | failed | cancelled | crashed (crashed/cancelled may resume)."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CRASHED = "crashed"

    @property
    def ended(self) -> bool:
        return self in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.CRASHED)


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)


@dataclass
class Run:
    """One run. The API shows it as schemas.RunPublic, derived from these fields (minus a few)."""

    id: int
    name: str
    status: RunStatus
    config: dict[str, Any]
    dataset: str | None
    model: str | None
    selector: str | None
    candidates: int | None
    batch_size: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    status_changed_at: datetime
    heartbeat_at: datetime | None
    pid: int | None
    host: str | None
    error: str | None
    traceback: str | None
    tags: list[str]
    notes: str
    step: int  # progress: last optimizer step reported
    epoch: float
    total_steps: int | None
    # latest value per scalar key (get/list fill it); keyword-only so it can sit where the API shows it
    latest: dict[str, float] = field(default_factory=dict, kw_only=True)
    # a queued run's place in its launcher's queue (1 = next to start); None unless queued
    queue_position: int | None = field(default=None, kw_only=True)
    last_seq: int  # highest seq of any data row of this run (the hub's cursor)
    status_seq: int  # seq of the log line written with the last status change
    checkpoint_path: str | None
    checkpoint_step: int | None
    attempt: int  # 0 for the first attempt; +1 per resume from a checkpoint
    resumed_at_seq: int | None  # seq of the log line of the latest resume (rows after its step deleted)
    executor: str | None  # "remote": trains elsewhere and reports over HTTP; None: a local worker
    ingest_seq: int  # the sequence number the next reported event of a remote run must carry
    stop_requested: bool  # the dashboard asked a remote run to stop (its heartbeat answer says so)
    launcher: str | None  # the dashboard ("host:port") that starts and supervises it; None: any
    summary: dict[str, Any]  # RunFinished.summary, {} until then
    run_info: dict[str, Any]  # from RunStarted: dataset facts (class_names...), model facts, device

    @property
    def progress(self) -> dict[str, Any]:
        return {"step": self.step, "total_steps": self.total_steps, "epoch": self.epoch}

    @property
    def class_names(self) -> list[str]:
        return list(self.run_info.get("dataset", {}).get("class_names") or [])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"progress": self.progress}


@dataclass
class ScalarRow:
    """One scalar metric value with every counter, so it can be placed on any x axis."""

    seq: int
    key: str
    step: int
    epoch: float
    samples_forwarded: int
    samples_backpropagated: int
    wall_time: float
    value: float


@dataclass
class Series:
    """One downsampled metric series: x on the requested axis, the value, and the step of each point."""

    x: list[float]
    y: list[float]
    step: list[int]


@dataclass
class HistogramRow:
    seq: int
    population: str  # candidates | selected
    step: int
    epoch: float
    wall_time: float
    counts: list[int]
    quantiles: dict[str, float]  # p5, p25, p50, p75, p95
    mean: float
    count: int
    threshold: float | None


@dataclass
class HistogramSeries:
    """What GET /api/runs/{id}/histograms returns: edges once, then one counts row per kept step."""

    edges: list[float]
    population: str
    steps: list[int]
    epochs: list[float]
    wall_time: list[float]
    counts: list[list[int]]
    quantiles: dict[str, list[float]]  # p5, p25, p50, p75, p95 → one value per kept step
    thresholds: list[float | None]


@dataclass
class SelectionRow:
    seq: int
    step: int
    epoch: float
    candidate_counts: list[int]
    selected_counts: list[int]
    misclassified_share: float


@dataclass
class SelectionSeries:
    steps: list[int]
    candidate_counts: list[list[int]]
    selected_counts: list[list[int]]
    misclassified_share: list[float]
    class_names: list[str]


@dataclass(frozen=True)
class NewRun:
    """A run to queue: what `create_runs` inserts (a sweep queues several in one transaction)."""

    name: str | None
    config: dict[str, Any]
    tags: Sequence[str] = ()
    notes: str = ""


@dataclass
class LogLine:
    seq: int
    time: datetime
    level: str  # info | warning | error
    message: str
    step: int | None = None


@dataclass
class Changes:
    """Every row of one run with seq > the cursor, for the live hub (in seq order per kind).

    `seq` is the new cursor (the largest seq returned, or the given cursor when nothing is new);
    `more` is true when `limit` cut the answer short (ask again from `seq`). `run` is the run when
    its status changed within the returned range (status_seq in (since, seq]) — otherwise None;
    progress (step) changes arrive with the scalars. `resumed` is true when the run's latest resume
    (`resumed_at_seq`) lies in that range: rows the caller holds past the checkpoint are gone.
    """

    since: int
    seq: int
    scalars: list[ScalarRow]
    histograms: list[HistogramRow]
    selection: list[SelectionRow]
    logs: list[LogLine]
    run: Run | None
    more: bool
    resumed: bool = False  # a resume deleted rows after its checkpoint within (since, seq]: re-read

    @property
    def empty(self) -> bool:
        return not (self.scalars or self.histograms or self.selection or self.logs or self.run)


@dataclass
class SampleRecord:
    """What the store knows of one training sample of a run (kept in place: one row per sample)."""

    index: int  # dataset index in the run's training split
    label: int | None  # the label the run trained on (flipped when `flipped`)
    flipped: bool  # label_noise flipped this sample's label
    selected: int  # times selected for training
    misclassified: int  # of those, times the model's prediction differed from the label
    last_mms: float | None  # margin and prediction at the latest scoring the store heard of
    last_prediction: int | None
    last_step: int | None
    observed: int  # times scored (from the latest suspects list; 0 when not a suspect)
    mean_mms: float | None
    suspect_score: float | None  # set while the sample is in the run's current suspects list


@dataclass
class SampleSnapshotRow:
    """One stored SampleSnapshot: its k lowest-margin samples (columns index/label/prediction/mms)."""

    seq: int
    step: int
    epoch: float
    scored: str  # candidates | batch
    lowest: dict[str, list[Any]]


@dataclass
class SampleHistory:
    """One sample over a run: (step, mms, prediction) wherever a snapshot saw it, and when it was
    selected (count per snapshot interval, at the snapshot's step)."""

    record: SampleRecord | None  # None: no snapshot mentions it
    history: list[dict[str, Any]]
    selected: list[dict[str, int]]


@dataclass
class TargetReached:
    """When a run first reached a value of a metric (for compare's time-to-target table)."""

    run_id: int
    reached: bool
    step: int | None
    epoch: float | None
    samples_forwarded: int | None
    samples_backpropagated: int | None
    wall_time: float | None
    best: float | None  # best value of the metric over the run (None: never logged)


# ---------------------------------------------------------------------- what a writer hands in
# `AbstractStore.log_batch` takes a RunBatch: rows without their seq (the store assigns seqs in the
# writing transaction, in `rows` order) and the changes to the run itself. Values may be NaN/inf;
# the store keeps those as NULL. Each *Point is the *Row the store later reads back, without its seq
# and with its counters gathered in `at` (a Position), since a writer knows them per event, not per row.

LOG_LEVELS = ("info", "warning", "error")


@dataclass(slots=True)
class Position:
    """Where in training a row belongs: the counters every x axis (X_AXES) is read from."""

    step: int
    epoch: float
    samples_forwarded: int
    samples_backpropagated: int
    wall_time: float


# Every scalar row carries every counter, so each counter is an x axis (docs/api.md). They are the
# engine's Counters, which the store may not import; tests/backend/test_store.py ties the two.
X_AXES: tuple[str, ...] = tuple(f.name for f in fields(Position))


@dataclass(slots=True)
class MetricPoint:
    key: str
    value: float | None
    at: Position


@dataclass(slots=True)
class HistogramPoint:
    population: str  # candidates | selected
    at: Position
    counts: list[int]
    quantiles: dict[str, float]  # p5, p25, p50, p75, p95
    mean: float
    count: int
    threshold: float | None


@dataclass(slots=True)
class SelectionPoint:
    at: Position
    candidate_counts: list[int]
    selected_counts: list[int]
    misclassified_share: float


@dataclass(slots=True)
class SamplePoint:
    """One sample snapshot (the engine's SampleSnapshot columns): a snapshot row, and in-place
    updates of the samples it names (selection counts, latest margins, suspects, flipped flags)."""

    at: Position
    scored: str  # candidates | batch
    lowest: dict[str, list[Any]]  # index, label, prediction, mms
    selected: dict[str, list[Any]]  # index, label, count, misclassified, mms, prediction
    suspects: dict[str, list[Any]]  # index, label, prediction, score, mean_mms, observed
    flipped: list[int] = field(default_factory=list)


@dataclass(slots=True)
class LogEntry:
    level: str  # one of LOG_LEVELS
    message: str
    step: int | None = None


@dataclass
class RunUpdate:
    """Changes to the run row; None (or empty) leaves a field as it is.

    `progress` moves the run's step/epoch forward (never back) and becomes the latest value of each
    counter. `run_info` is merged into the stored one key by key (a dict value one level deeper,
    so per-split entries accumulate across batches)."""

    total_steps: int | None = None
    model: str | None = None  # the model the engine built (a config's "auto" resolved to its choice)
    checkpoint_path: str | None = None
    checkpoint_step: int | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = None
    run_info: dict[str, Any] = field(default_factory=dict)
    progress: Position | None = None

    @property
    def empty(self) -> bool:
        return self == RunUpdate()


@dataclass
class RunBatch:
    """One transaction's worth of a run's data (MLflow's `log_batch` argument, for our rows)."""

    rows: list[MetricPoint | HistogramPoint | SelectionPoint | SamplePoint | LogEntry] = field(
        default_factory=list)
    edges: dict[str, list[float]] = field(default_factory=dict)  # population → bin edges (kept once)
    update: RunUpdate = field(default_factory=RunUpdate)
    # a resumed attempt's first batch (its RunStarted): the rows after this step, the earlier
    # attempt's, are dropped (`truncate_after_step`) in the transaction that writes this batch
    resume_from_step: int | None = None

    @property
    def empty(self) -> bool:
        return not self.rows and not self.edges and self.update.empty and self.resume_from_step is None
