"""Events reported over HTTP by a run that trains elsewhere, written exactly once.

    trainer (marginscope.engine.remote.HttpReporter) → POST /api/ingest/runs/{id}/events {seq, events}
        → `EventIn` (each event checked by the pydantic model of its class, which the OpenAPI
          document shows) → `parse_events` → `ingest_events` → store

A remote run numbers its events 0, 1, 2, ... (the client's per-run sequence number). The store
keeps the number the run's next event must carry (`Run.ingest_seq`) and moves it in the very
transaction that writes a batch (`log_batch(expect_seq=, next_seq=)`), so:

- a batch sent again (the answer was lost, the dashboard restarted) is trimmed to the events the
  store does not hold yet, often to nothing: no row is ever written twice;
- a batch that starts after the expected number (events lost on the way) is refused with
  `SeqMismatch` naming the expected number; the client resends from there (from its spool);
- two copies of one batch posted at once: one writes, the other finds the number moved, trims
  again and writes nothing.

Every run a launcher starts reports here, whatever its executor (a local worker process over
loopback, a Dask task, a user's `train_remote`): the server is the store's only writer for them.
Events are mapped by `mapping.to_batch`, and a RunFinished / RunFailed sets the final status by
`record_end`'s rule. A run the launcher marked crashed (no heartbeat for a while: a network cut)
that reports again is running again: it is alive, and knows better.

A resume is an event like the others: the resumed attempt's RunStarted (resumed_from_step = S)
comes after every event of the earlier attempt that the store lacked (the trainer sends those
from the run's spool first, engine/remote/reporter.py), and the batch it opens drops the rows
after S in the transaction that writes it. So, in sequence order: the earlier attempt's events
(all of those up to S are in the spool before the checkpoint at S was published), then the drop
of its tail, then the resumed attempt's events. `ingest_events` writes a resumed RunStarted as a
batch of its own, so a validation in the events after it reads the best accuracy as it stands
after the drop.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler, StringConstraints, create_model
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema as cs

from marginscope.backend.recording.lifecycle import record_end
from marginscope.backend.recording.mapping import needs_best, to_batch
from marginscope.backend.recording.writer import stored_best
from marginscope.backend.store import AbstractStore, Conflict, MAX_INT32, Run, RunStatus
from marginscope.backend.store.exceptions import SeqMismatch
from marginscope.engine.events import (
    EVENT_TYPES,
    Counters,
    Event,
    RunFailed,
    RunFinished,
    RunStarted,
    Scalars,
)

log = logging.getLogger(__name__)

REMOTE = "remote"  # Run.executor of a run that trains elsewhere and reports over HTTP
# counters: within the 64-bit columns, and integers a JSON Schema bound (read as a double) and a
# page's JavaScript still hold exactly
MAX_COUNTER = 2**53 - 1
MAX_KEY = 100  # characters of a scalar's key (the store's column)
MAX_DEPTH = 32
INT32_FIELDS = frozenset({"step", "total_steps", "steps_per_epoch", "resumed_from_step", "count"})


class InvalidEvent(ValueError):
    """One reported event is not an event of the engine: `index` in the batch, `loc` inside it."""

    def __init__(self, index: int, loc: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.index, self.loc = index, tuple(loc)


@dataclass(frozen=True)
class _WholeNumber:
    """An integer as JSON Schema has it: 5 and 5.0, not 5.5, true or "5" (the models are strict
    otherwise), within [ge, le]. Checked by pydantic-core alone, with no Python call per value (a
    batch holds hundreds of thousands: every histogram's counts), and shown as an integer with
    its bounds in the OpenAPI document."""

    ge: int | None = None
    le: int | None = None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> cs.CoreSchema:
        integral = cs.chain_schema([cs.float_schema(strict=True), cs.int_schema(strict=False)])  # 5.0 → 5; 5.5 fails
        kind = cs.union_schema([cs.int_schema(strict=True), integral], mode="left_to_right",
                               custom_error_type="int_type")
        return cs.chain_schema([kind, cs.int_schema(strict=True, ge=self.ge, le=self.le)])

    def __get_pydantic_json_schema__(self, schema: cs.CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        bounds = {"minimum": self.ge, "maximum": self.le}
        return {"type": "integer", **{k: v for k, v in bounds.items() if v is not None}}


def json_int(ge: int | None = None, le: int | None = None) -> Any:
    """The type of an integer field of a request (see _WholeNumber)."""
    return Annotated[int, _WholeNumber(ge, le)]


JsonInt = json_int()


def _bounded(name: str, annotation: Any) -> Any:
    """A field's type with the bounds the store's columns need (steps and counts are 32-bit)."""
    if annotation is int:
        low, high = (0, MAX_INT32) if name in INT32_FIELDS else (-MAX_COUNTER, MAX_COUNTER)
        return json_int(low, high)
    if annotation == list[int]:
        return list[JsonInt]
    if annotation is Counters:
        return CountersIn
    if name == "values":  # Scalars: each key a series of the store (its column's length)
        return dict[Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY)], float]
    return annotation


def _model_of(cls: type, *, kind: str | None) -> type[BaseModel]:
    """The pydantic model of an engine event dataclass (its fields, types and defaults), so the
    OpenAPI document describes each event exactly and FastAPI checks it."""
    hints = get_type_hints(cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        default: Any = ...
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=f.default_factory)
        fields[f.name] = (_bounded(f.name, hints[f.name]), default)
    if kind is not None:
        fields["kind"] = (Literal[kind], ...)  # type: ignore[valid-type]
    return create_model(f"{cls.__name__}Event" if kind else f"{cls.__name__}In",
                        __config__=ConfigDict(extra="forbid", strict=True), **fields)


CountersIn = _model_of(Counters, kind=None)
EVENT_MODELS: dict[str, type[BaseModel]] = {kind: _model_of(cls, kind=kind) for kind, cls in EVENT_TYPES.items()}
EventIn = Annotated[Union[tuple(EVENT_MODELS.values())], Field(discriminator="kind")]  # type: ignore[valid-type]  # noqa: UP007


def _free_form(hint: Any) -> bool:
    """Whether a field's type lets any value through (a config, a summary, a snapshot's columns)."""
    return hint is Any or any(_free_form(arg) for arg in get_args(hint))


# each event model: its engine class, and its free-form fields (the only ones whose depth is checked)
_EVENT_OF: dict[type[BaseModel], tuple[type[Event], tuple[str, ...]]] = {
    EVENT_MODELS[kind]: (cls, tuple(name for name, hint in get_type_hints(cls).items()
                                    if name != "kind" and _free_form(hint)))
    for kind, cls in EVENT_TYPES.items()
}


def _depth(value: Any) -> int:
    if isinstance(value, Mapping):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list | tuple):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def parse_events(items: Sequence[BaseModel]) -> list[Event]:
    """The engine's events from their checked models (`EventIn`), field by field (no model_dump:
    the models' values are already the events' own); free-form values (a config, a summary)
    deeper than MAX_DEPTH levels are refused (InvalidEvent)."""
    events: list[Event] = []
    for i, item in enumerate(items):
        cls, free_form = _EVENT_OF[type(item)]
        data = {**item.__dict__}  # a model's field values (dict(item) would look for .keys() first)
        del data["kind"]
        for name in free_form:
            if _depth(data[name]) > MAX_DEPTH:
                raise InvalidEvent(i, (cls.kind, name), f"nested deeper than {MAX_DEPTH} levels")
        if "counters" in data:
            data["counters"] = Counters(**data["counters"].__dict__)
        if cls is Scalars:  # a key is text a process reports: NUL becomes U+FFFD
            data["values"] = {key.replace("\x00", "\ufffd"): v for key, v in data["values"].items()}
        events.append(cls(**data))
    return events


@dataclass
class Ingested:
    """The answer to a batch: the sequence number the run expects next, and whether it should stop."""

    next_seq: int
    stop: bool
    status: RunStatus
    revived: bool = False  # was crashed, runs again: the launcher must watch it again


def stop_asked(run: Run) -> bool:
    """A remote trainer stops when the dashboard asked it to, or the run is no longer running."""
    return run.stop_requested or run.status != RunStatus.RUNNING


def revive(store: AbstractStore, run: Run) -> Run:
    """A remote run crashed for lack of heartbeats that reports again is running again."""
    if run.status != RunStatus.CRASHED:
        return run
    try:
        return store.set_status(run.id, RunStatus.RUNNING, expect=(RunStatus.CRASHED,),
                                message=f"running again: pid {run.pid} on {run.host} reports again")
    except Conflict:
        return store.get_run(run.id)


def _end_of(events: Sequence[Event]) -> Event | None:
    return next((e for e in reversed(events) if isinstance(e, RunFinished | RunFailed)), None)


def _record_end(store: AbstractStore, run_id: int, end: Event) -> None:
    if isinstance(end, RunFinished):
        record_end(store, run_id, RunStatus.CANCELLED if end.status == "cancelled" else RunStatus.FINISHED)
    elif isinstance(end, RunFailed):
        record_end(store, run_id, RunStatus.FAILED, error=end.error, traceback=end.traceback)


def _parts(seq: int, events: Sequence[Event]) -> list[tuple[int, list[Event]]]:
    """(first seq, events) in order, a resumed attempt's RunStarted alone in its part."""
    parts: list[tuple[int, list[Event]]] = []
    start = 0
    for i, e in enumerate(events):
        if isinstance(e, RunStarted) and e.resumed_from_step > 0:
            parts += [(seq + start, list(events[start:i])), (seq + i, [e])]
            start = i + 1
    parts.append((seq + start, list(events[start:])))
    return [(first, part) for first, part in parts if part]


def ingest_events(store: AbstractStore, run_id: int, seq: int, events: Sequence[Event]) -> Ingested:
    """Write the events seq, seq+1, ... of run `run_id` that the store does not hold yet (see the
    module docstring); SeqMismatch for a gap, Conflict for a run that has ended (new events
    only), RunNotFound. The run is read once per batch (before its write: the answer's `stop`
    is as of then), again only when the batch ends the run."""
    run, next_seq, revived = None, seq, False
    for first, part in _parts(seq, events):
        run, next_seq, part_revived = _write(store, run_id, first, part)
        revived = revived or part_revived
    end = _end_of(events)
    if run is None or (end is not None and run.status in (RunStatus.RUNNING, RunStatus.CRASHED)):
        if end is not None:  # also for a batch already written: the end may not have been recorded when it first came
            _record_end(store, run_id, end)
        run = store.get_run(run_id)
        next_seq = run.ingest_seq
    return Ingested(next_seq=next_seq, stop=stop_asked(run), status=run.status, revived=revived)


def _write(store: AbstractStore, run_id: int, seq: int, events: Sequence[Event]) -> tuple[Run, int, bool]:
    """One part of `ingest_events`: the new events of seq, seq+1, ... in one transaction;
    returns the run as read before it, the sequence number it expects next, and whether it was
    crashed and runs again."""
    revived = False
    for _ in range(5):  # each retry follows a concurrent copy that wrote first: it ends quickly
        run = store.get_run(run_id)
        expected = run.ingest_seq
        if seq > expected:
            raise SeqMismatch(run_id, expected, seq)
        new = list(events[expected - seq:])
        if not new:
            return run, expected, revived
        if run.status == RunStatus.CRASHED:
            run = revive(store, run)
            revived = run.status == RunStatus.RUNNING
        if run.status != RunStatus.RUNNING:
            raise Conflict(f"run {run_id} is {run.status}: it takes no new events")
        best = stored_best(store, run_id) if needs_best(new) else None
        batch, _ = to_batch(new, best)
        try:
            store.log_batch(run_id, batch, expect_seq=expected, next_seq=seq + len(events))
        except SeqMismatch:
            continue
        return run, seq + len(events), revived
    raise Conflict(f"run {run_id}: its events kept being written concurrently; send them again")
