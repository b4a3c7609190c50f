"""Pydantic request and response models of the REST API (docs/api.md is the contract).

Separate create / update / public models, lists as `data` + `count` (full-stack-fastapi-template
`models.py`). `RunCreate.config` *is* the engine's `TrainConfig`, so a bad config is rejected by
the very rules the CLI uses, and FastAPI's 422 names the field (`["body", "config", "<field>"]`).

A public model that shows a store entity is derived from it (`entity_model`), never copied: its
fields are the entity's, in the entity's order, minus what the API hides. RunPublic states the
API's differences from `entities.Run` in one place (`RUN_HIDDEN`, `Progress`).

Text limits (NUL characters, lengths) are not checked here: the store owns them, since every
writer (API, CLI, recording) passes through it; `routes/runs.py` turns its refusal into a 422
naming the field. The descriptions and JSON Schema keywords below only quote the store's limits.
Request bodies refuse unknown fields (a typo is a 422 naming it, never a default run).

`errors(...)` declares the error answers a route really gives, for the OpenAPI document: every
error is `{"detail": "..."}` except 422, whose `detail` is always a list naming each bad field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Annotated, Any, Literal, Self, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model

from marginscope.backend.store import (
    HistogramRow,
    HistogramSeries,
    LogLine,
    Run,
    SelectionRow,
    SelectionSeries,
    Series,
    TEXT_LIMITS,
    X_AXES,
    RunStatus,
)
from marginscope.engine.config import TrainConfig
from marginscope.engine.events import POPULATIONS

XAxis = Literal[X_AXES]  # type: ignore[valid-type]
Population = Literal[POPULATIONS]  # type: ignore[valid-type]


class EntityModel(BaseModel):
    """A public model read from a store entity's attributes (`Model.from_entity(entity)`)."""

    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def from_entity(cls, entity: Any) -> Self:
        return cls.model_validate(entity)


def entity_model(entity: type, *, hide: Collection[str] = (),
                 group: Mapping[str, type[BaseModel]] | None = None) -> type[EntityModel]:
    """A base model with the fields of the dataclass `entity`, in order, minus `hide`.

    `group` nests fields: {"progress": Progress} shows the entity's step, total_steps and epoch
    (Progress's fields) as one `progress` object, where the first of them stands; the entity
    provides `progress` as an attribute. Every field is required: a response always has them.
    """
    group = group or {}
    hints = get_type_hints(entity)
    nested = {name: outer for outer, model in group.items() for name in model.model_fields}
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(entity):
        if f.name in hide:
            continue
        if f.name in nested:
            fields.setdefault(nested[f.name], (group[nested[f.name]], ...))
        else:
            fields[f.name] = (hints[f.name], ...)
    return create_model(f"{entity.__name__}Fields", __base__=EntityModel, **fields)


def row_json(row: Any, *, hide: Collection[str] = ("seq",)) -> dict[str, Any]:
    """A store row as a websocket message shows it: its fields minus the store's bookkeeping."""
    return {k: v for k, v in dataclasses.asdict(row).items() if k not in hide}


# --------------------------------------------------------------------------- runs


class Progress(BaseModel):
    """How far a run got: the last step reported, of total_steps (null until it starts), in epochs."""

    step: int
    total_steps: int | None
    epoch: float


# What the API shows of a run is the store's entity, except: these fields stay inside (the hub's
# cursors, the launcher's checkpoint bookkeeping, what the engine reported at start), and step,
# total_steps and epoch are grouped as `progress`.
RUN_HIDDEN = ("status_changed_at", "last_seq", "status_seq", "checkpoint_path", "resumed_at_seq",
              "run_info", "ingest_seq")


class RunPublic(entity_model(Run, hide=RUN_HIDDEN, group={"progress": Progress})):  # type: ignore[misc]
    """A run as every endpoint and websocket shows it."""


def run_json(run: Run) -> dict[str, Any]:
    """RunPublic as plain JSON (for websocket messages and the CLI)."""
    return RunPublic.from_entity(run).model_dump(mode="json")


class QueueState(BaseModel):
    """Why queued runs wait: this dashboard's runs that take a place, and how many places there
    are (null: the executor is a cluster that queues its tasks itself). With a run's
    `queue_position` it reads "2nd in queue: 1 run running, limit 1"."""

    running: int
    limit: int | None


class RunsPublic(BaseModel):
    data: list[RunPublic]
    count: int
    queue: QueueState


class ResumePublic(BaseModel):
    """GET /api/runs/{id}/resume: whether POST /api/runs/{id}/resume would be accepted now."""

    can_resume: bool
    reason: str | None = Field(description="why not, in the words of the 409 it would get")
    wait: bool = Field(description="the refusal ends by itself (the run's previous worker is still "
                       "stopping): ask again in a second")


def _limit(field: str) -> str:
    return f"at most {TEXT_LIMITS[field]} characters, no NUL"


# what str.strip() removes (the store strips names and tags): a schema's "not blank"
_SPACE = "\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _text(field: str, *, not_blank: bool = False) -> dict[str, Any]:
    """The store's limit on a text field, as JSON Schema keywords (documented, not checked here)."""
    pattern = f"^[^\\x00]*[^{_SPACE}\\x00][^\\x00]*$" if not_blank else "^[^\\x00]*$"
    return {"maxLength": TEXT_LIMITS[field], "pattern": pattern}


Tag = Annotated[str, Field(json_schema_extra=_text("tag"))]


class RunCreate(BaseModel):
    """POST /api/runs: a name, the training config, tags and notes."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description=f"blank: run-<id>; {_limit('name')}",
                             json_schema_extra=_text("name"))
    config: TrainConfig = Field(default_factory=lambda: TrainConfig.model_validate({}))
    tags: list[Tag] = Field(default_factory=list, max_length=50, description=f"each {_limit('tag')}")
    notes: str = Field("", description=_limit("notes"), json_schema_extra=_text("notes"))


class RunUpdate(BaseModel):
    """PATCH /api/runs/{id}: only the given fields change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description=f"not blank; {_limit('name')}",
                             json_schema_extra=_text("name", not_blank=True))
    tags: list[Tag] | None = Field(None, max_length=50, description=f"each {_limit('tag')}")
    notes: str | None = Field(None, description=_limit("notes"), json_schema_extra=_text("notes"))


class SweepCreate(RunCreate):
    """POST /api/sweeps (and /preview): a run's fields, and a grid of values that makes it many."""

    grid: dict[Annotated[str, Field(max_length=100)], Annotated[list[Any], Field(min_length=1)]] = Field(
        default_factory=dict, max_length=50,
        description="config field -> the values it takes (each once), e.g. {\"seed\": [0, 1, 2], "
                    "\"lr\": [0.05, 0.1]}: one run per combination, each value replacing the config's")


class SweepRun(BaseModel):
    """One run of a sweep's plan: its name, its grid values (the varying fields), its config."""

    name: str | None
    values: dict[str, Any]
    config: dict[str, Any]


class SweepPlanPublic(BaseModel):
    """POST /api/sweeps/preview: what POST /api/sweeps would queue; nothing is queued."""

    count: int
    varying: list[str] = Field(description="the grid's fields with more than one value")
    runs: list[SweepRun]


class SweepPublic(BaseModel):
    """POST /api/sweeps: the queued runs, all tagged `tag` ("sweep:<id>")."""

    id: str
    tag: str
    count: int
    varying: list[str]
    data: list[RunPublic]


class LogPublic(entity_model(LogLine, hide=("step",))):  # type: ignore[misc]
    """One line of a run's log."""


def log_json(line: LogLine) -> dict[str, Any]:
    return LogPublic.from_entity(line).model_dump(mode="json")


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
    uses_candidates: bool  # False: the selector trains on b drawn samples, B does not apply
    options: dict[str, Any] = Field(default_factory=dict)  # {option: {default, help}}


class PresetRun(BaseModel):
    name: str
    config: dict[str, Any]


class Preset(BaseModel):
    name: str
    help: str
    runs: list[PresetRun]


class Vocabulary(BaseModel):
    """Names defined once in the engine (marginscope.engine.events) and the store, for the pages to use."""

    counters: list[str]
    x_axes: list[str]
    populations: list[str]
    quantiles: list[str]
    statuses: list[str]


class OptionsPublic(BaseModel):
    datasets: list[DatasetOption]
    models: list[str]
    selectors: list[SelectorOption]
    regimes: list[str]
    fields: list[dict[str, Any]]
    presets: list[Preset]
    vocabulary: Vocabulary


# --------------------------------------------------------------------------- metrics


class SeriesPublic(entity_model(Series)):  # type: ignore[misc]
    """One metric on an x axis, downsampled: x, the value y, and the step of each point."""


class MetricsPublic(BaseModel):
    x: str
    series: dict[str, SeriesPublic]


class HistogramsPublic(entity_model(HistogramSeries)):  # type: ignore[misc]
    """Margin histograms of one population: the edges once, then one row per kept step."""


class SelectionPublic(entity_model(SelectionSeries)):  # type: ignore[misc]
    """Per-class candidate and selected counts over steps, with the dataset's class names."""


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
    unlike_baseline: list[str] = Field(default_factory=list, description=(
        "what the run does not share with the baseline run (dataset, model): then no ratios"))


class ComparePublic(BaseModel):
    runs: list[RunPublic]
    key: str
    x: str
    baseline: int
    target: float | None
    series: dict[str, SeriesPublic]
    table: list[CompareRow]
    # asked for with `also` / `histograms`: the page draws from one answer instead of two per run
    also: dict[str, dict[str, SeriesPublic]] = {}  # metric key → run id → series
    histograms: dict[str, HistogramsPublic] = {}  # run id → margin histograms (runs with none left out)


# --------------------------------------------------------------------------- errors


class Message(BaseModel):
    """An error answer: what went wrong and what to change, in words."""

    detail: str


class FieldError(BaseModel):
    """One refused field: where (`["body", "config", "steps"]`), why, and an excerpt of the value."""

    type: str
    loc: list[str | int]
    msg: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ValidationMessage(BaseModel):
    """A 422: the refused fields, always a list."""

    detail: list[FieldError]


_ERRORS: dict[int, tuple[type[BaseModel], str]] = {
    400: (Message, "The body is not JSON text (undecodable bytes)."),
    401: (Message, "The server has a token and the request did not carry it."),
    404: (Message, "No run with this id."),
    409: (Message, "The run's status does not allow this action."),
    413: (Message, "The body is larger than the server's limit (MARGINSCOPE_MAX_BODY_BYTES)."),
    422: (ValidationMessage, "A field is invalid: each item names one and says why."),
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route that can answer these error codes (and always 422)."""
    return {code: {"model": _ERRORS[code][0], "description": _ERRORS[code][1]}
            for code in sorted({*codes, 422})}


# what a route with a JSON body can refuse before it runs, and what a token-guarded one adds
BODY_ERRORS = (400, 413)
TOKEN_ERRORS = (401,)

# `GET /api/runs?status=queued,running`: a comma list of run statuses
STATUS_LIST = "^ *({s}) *(, *({s}) *)*$".format(s="|".join(s.value for s in RunStatus))


# --------------------------------------------------------------------------- websocket rows


def histogram_json(row: HistogramRow) -> dict[str, Any]:
    return row_json(row)


def selection_json(row: SelectionRow) -> dict[str, Any]:
    return row_json(row)
