"""Pydantic request and response models of the REST API (docs/api.md is the contract).

Separate create / update / public models, lists as `data` + `count` (full-stack-fastapi-template
`models.py`). `RunCreate.config` *is* the engine's `TrainConfig`, so a bad config is rejected by
the very rules the CLI uses, and FastAPI's 422 names the field (`["body", "config", "<field>"]`).
Store entities become public models only through the `from_*` constructors here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from backend.store import HistogramRow, LogLine, Run, ScalarRow, SelectionRow
from engine.config import TrainConfig


def _no_nul(value: str) -> str:
    """PostgreSQL text cannot hold NUL; refuse it everywhere so both backends behave alike."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
# a tag: at most 100 characters (the store's column)
Tag = Annotated[str, Field(max_length=100), AfterValidator(_no_nul)]

XAxis = Literal["step", "epoch", "samples_forwarded", "samples_backpropagated", "wall_time"]
Population = Literal["candidates", "selected"]


# --------------------------------------------------------------------------- runs


class Progress(BaseModel):
    step: int
    total_steps: int | None
    epoch: float


class RunPublic(BaseModel):
    """A run as every endpoint and websocket shows it."""

    id: int
    name: str
    status: str
    config: dict[str, Any]
    dataset: str | None
    model: str | None
    selector: str | None
    candidates: int | None
    batch_size: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    pid: int | None
    host: str | None
    error: str | None
    traceback: str | None
    tags: list[str]
    notes: str
    progress: Progress
    latest: dict[str, float]
    checkpoint_step: int | None = None
    attempt: int = 0  # 0 for the first attempt, +1 per resume from a checkpoint
    summary: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_run(cls, run: Run) -> RunPublic:
        return cls(
            id=run.id, name=run.name, status=str(run.status), config=run.config,
            dataset=run.dataset, model=run.model, selector=run.selector,
            candidates=run.candidates, batch_size=run.batch_size, created_at=run.created_at,
            started_at=run.started_at, finished_at=run.finished_at, heartbeat_at=run.heartbeat_at,
            pid=run.pid, host=run.host, error=run.error, traceback=run.traceback,
            tags=list(run.tags), notes=run.notes,
            progress=Progress(step=run.step, total_steps=run.total_steps, epoch=run.epoch),
            latest=dict(run.latest), checkpoint_step=run.checkpoint_step, attempt=run.attempt,
            summary=run.summary,
        )


def run_json(run: Run) -> dict[str, Any]:
    """RunPublic as plain JSON (for websocket messages)."""
    return RunPublic.from_run(run).model_dump(mode="json")


class RunsPublic(BaseModel):
    data: list[RunPublic]
    count: int


class RunCreate(BaseModel):
    """POST /api/runs: a name, the training config, tags and notes."""

    name: Text | None = Field(None, max_length=200)
    config: TrainConfig = Field(default_factory=lambda: TrainConfig.model_validate({}))
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    notes: Text = Field("", max_length=20000)


class RunUpdate(BaseModel):
    """PATCH /api/runs/{id}: only the given fields change."""

    name: Text | None = Field(None, min_length=1, max_length=200)
    tags: list[Tag] | None = Field(None, max_length=50)
    notes: Text | None = Field(None, max_length=20000)


class LogPublic(BaseModel):
    seq: int
    time: datetime
    level: str
    message: str

    @classmethod
    def from_line(cls, line: LogLine) -> LogPublic:
        return cls(seq=line.seq, time=line.time, level=line.level, message=line.message)


class LogsPublic(BaseModel):
    data: list[LogPublic]
    count: int


# --------------------------------------------------------------------------- options


class DatasetOption(BaseModel):
    name: str
    help: str
    available: bool


class SelectorOption(BaseModel):
    name: str
    help: str
    options: dict[str, Any] = Field(default_factory=dict)  # {option: {default, help}}


class PresetRun(BaseModel):
    name: str
    config: dict[str, Any]


class Preset(BaseModel):
    name: str
    help: str
    runs: list[PresetRun]


class OptionsPublic(BaseModel):
    datasets: list[DatasetOption]
    models: list[str]
    selectors: list[SelectorOption]
    regimes: list[str]
    fields: list[dict[str, Any]]
    presets: list[Preset]
    vocabulary: dict[str, list[str]]  # counters, x_axes, populations, quantiles, statuses


# --------------------------------------------------------------------------- metrics


class SeriesPublic(BaseModel):
    x: list[float]
    y: list[float]
    step: list[int]


class MetricsPublic(BaseModel):
    x: str
    series: dict[str, SeriesPublic]


class HistogramsPublic(BaseModel):
    edges: list[float]
    population: str
    steps: list[int]
    epochs: list[float]
    wall_time: list[float]
    counts: list[list[int]]
    quantiles: dict[str, list[float]]
    thresholds: list[float | None]


class SelectionPublic(BaseModel):
    steps: list[int]
    candidate_counts: list[list[int]]
    selected_counts: list[list[int]]
    misclassified_share: list[float]
    class_names: list[str]


# --------------------------------------------------------------------------- compare


class Ratios(BaseModel):
    """run / baseline for each axis (lower is faster); null where the baseline value is 0."""

    step: float | None
    samples_backpropagated: float | None
    samples_forwarded: float | None
    wall_time: float | None


class CompareRow(BaseModel):
    run_id: int
    name: str
    selector: str | None
    reached: bool
    step: int | None
    samples_backpropagated: int | None
    samples_forwarded: int | None
    wall_time: float | None
    best: float | None
    final_test: float | None
    ratios: Ratios | None


class CompareSeries(BaseModel):
    x: list[float]
    y: list[float]
    step: list[int]


class ComparePublic(BaseModel):
    runs: list[RunPublic]
    key: str
    x: str
    baseline: int
    target: float | None
    series: dict[str, CompareSeries]
    table: list[CompareRow]


# --------------------------------------------------------------------------- websocket rows


def scalar_json(row: ScalarRow) -> dict[str, Any]:
    return {"key": row.key, "step": row.step, "epoch": row.epoch,
            "samples_forwarded": row.samples_forwarded,
            "samples_backpropagated": row.samples_backpropagated,
            "wall_time": row.wall_time, "value": row.value}


def histogram_json(row: HistogramRow) -> dict[str, Any]:
    return {"population": row.population, "step": row.step, "epoch": row.epoch,
            "wall_time": row.wall_time, "counts": row.counts, "quantiles": row.quantiles,
            "mean": row.mean, "count": row.count, "threshold": row.threshold}


def selection_json(row: SelectionRow) -> dict[str, Any]:
    return {"step": row.step, "epoch": row.epoch, "candidate_counts": row.candidate_counts,
            "selected_counts": row.selected_counts,
            "misclassified_share": row.misclassified_share}


def log_json(line: LogLine) -> dict[str, Any]:
    return LogPublic.from_line(line).model_dump(mode="json")
