"""Events reported over HTTP by a run that trains elsewhere, written exactly once.

    trainer (engine.remote.HttpReporter) → POST /api/ingest/runs/{id}/events {seq, events}
        → `parse_events` (each dict checked as its event class) → `ingest_events` → store

A remote run numbers its events 0, 1, 2, ... (the client's per-run sequence number). The store
keeps the number the run's next event must carry (`Run.ingest_seq`) and moves it in the very
transaction that writes a batch (`log_batch(expect_seq=, next_seq=)`), so:

- a batch sent again (the answer was lost, the dashboard restarted) is trimmed to the events the
  store does not hold yet, often to nothing: no row is ever written twice;
- a batch that starts after the expected number (events lost on the way) is refused with
  `SeqMismatch` naming the expected number; the client resends from there (from its spool);
- two copies of one batch posted at once: one writes, the other finds the number moved, trims
  again and writes nothing.

Events are mapped by `mapping.to_batch`, the path of a local run, and a RunFinished / RunFailed
sets the final status by `record_end`'s rule, as `record_run` does for a worker. A remote run the
launcher marked crashed (no heartbeat for a while: a network cut) that reports again is running
again: it is alive, and knows better.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from backend.recording.lifecycle import record_end
from backend.recording.mapping import needs_best, to_batch
from backend.recording.writer import stored_best
from backend.store import AbstractStore, Conflict, MAX_INT32, Run, RunStatus
from backend.store.exceptions import SeqMismatch
from engine.events import EVENT_TYPES, Event, RunFailed, RunFinished, Scalars

log = logging.getLogger(__name__)

REMOTE = "remote"  # Run.executor of a run that trains elsewhere and reports over HTTP
MAX_INT64 = 2**63 - 1
MAX_KEY = 100  # characters of a scalar's key (the store's column)
MAX_DEPTH = 32
INT32_FIELDS = frozenset({"step", "total_steps", "steps_per_epoch", "resumed_from_step", "count"})
_ADAPTERS: dict[str, TypeAdapter[Any]] = {}


class InvalidEvent(ValueError):
    """One reported event is not an event of the engine: `index` in the batch, `loc` inside it."""

    def __init__(self, index: int, loc: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.index, self.loc = index, tuple(loc)


def _adapter(kind: str) -> TypeAdapter[Any]:
    if kind not in _ADAPTERS:
        _ADAPTERS[kind] = TypeAdapter(EVENT_TYPES[kind])
    return _ADAPTERS[kind]


def _check_numbers(value: Any, loc: tuple[str | int, ...], index: int) -> None:
    """Integers the store's columns hold (steps and counts are 32-bit, counters 64-bit), and a
    bounded depth (a deeply nested value must not exhaust the recursion limit further on)."""
    if len(loc) > MAX_DEPTH:
        raise InvalidEvent(index, loc[:3], f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        limit = MAX_INT32 if loc and loc[-1] in INT32_FIELDS else MAX_INT64
        if not -limit <= value <= limit:
            raise InvalidEvent(index, loc, f"{value} is out of range (at most {limit})")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_numbers(item, (*loc, str(key)), index)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_numbers(item, (*loc, i), index)


def parse_events(items: Sequence[Mapping[str, Any]]) -> list[Event]:
    """The engine's events from their `to_dict()` form, each checked against its class (types,
    literals, required fields), as `event_from_dict` would build them; InvalidEvent otherwise."""
    events: list[Event] = []
    for i, item in enumerate(items):
        data = dict(item)
        kind = data.pop("kind", None)
        if kind not in EVENT_TYPES:
            raise InvalidEvent(i, ("kind",), f"unknown event kind {str(kind)[:40]!r}; one of "
                               f"{', '.join(sorted(EVENT_TYPES))}")
        _check_numbers(data, (), i)
        try:
            event = _adapter(kind).validate_python(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidEvent(i, first["loc"], f"{kind} event: {first['msg']}") from None
        if isinstance(event, Scalars):
            for key in event.values:
                if not key.strip() or len(key) > MAX_KEY or "\x00" in key:
                    raise InvalidEvent(i, ("values", key[:40]), f"a scalar's key has 1 to {MAX_KEY} "
                                       "characters, not blank, no NUL")
        events.append(event)
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


def check_remote(run: Run) -> None:
    if run.executor != REMOTE:
        raise Conflict(f"run {run.id} is not a remote run: it trains here, reported by its worker")


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


def ingest_events(store: AbstractStore, run_id: int, seq: int, events: Sequence[Event]) -> Ingested:
    """Write the events seq, seq+1, ... of remote run `run_id` that the store does not hold yet
    (see the module docstring); SeqMismatch for a gap, Conflict for a run that is not remote or
    has ended (new events only), RunNotFound."""
    revived = False
    for _ in range(5):  # each retry follows a concurrent copy that wrote first: it ends quickly
        run = store.get_run(run_id)
        check_remote(run)
        expected = run.ingest_seq
        if seq > expected:
            raise SeqMismatch(run_id, expected, seq)
        new = list(events[expected - seq:])
        if not new:
            break
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
        break
    else:
        raise Conflict(f"run {run_id}: its events kept being written concurrently; send them again")
    end = _end_of(events)
    run = store.get_run(run_id)
    if end is not None and run.status in (RunStatus.RUNNING, RunStatus.CRASHED):
        # also for a batch already written: the end may not have been recorded when it first came
        _record_end(store, run_id, end)
        run = store.get_run(run_id)
    return Ingested(next_seq=run.ingest_seq, stop=stop_asked(run), status=run.status, revived=revived)
