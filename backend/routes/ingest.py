"""Ingest: runs that train elsewhere report here over HTTP (docs/api.md, "Ingest").

    POST /api/ingest/runs                 create a remote run, running at once    → 201 {run, next_seq}
    POST /api/ingest/runs/{id}/claim      take over a queued run                  → {run, config, next_seq}
    POST /api/ingest/runs/{id}/events     {seq, events}: write what is new        → {next_seq, stop}
    POST /api/ingest/runs/{id}/heartbeat  {}: the run is alive                    → {stop, status}

The client is `marginscope.engine.remote` (HttpReporter, train_remote, remote_run, `marginscope sync`);
every run a launcher starts reports through it too (backend/worker.py), so the server is the one
writer of the store. Creating a run needs the token whenever the server has one, like launching
(a server reachable from a network has one: backend/security.py refuses to serve without); the
routes of one run also take that run's own credential, the one its launcher minted for its
trainer (backend/deps.py, `RunReportDep`). A claim by a worker process this dashboard's launcher
started keeps the run a local one, supervised by its pid; any other claim makes it remote. The config of a new remote run
is validated by TrainConfig as a launch's is; its paths are the trainer's, on its machine, and the
server never reads them. Idempotency is backend/recording/ingest.py's: a batch sent twice is
written once, and a gap is a 409 whose `expected_seq` says where to resume. Limits: a body over
MARGINSCOPE_MAX_BODY_BYTES is a 413 (backend/limits.py), a batch of more than MAX_BATCH_EVENTS
events a 422.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from marginscope.backend.deps import HubDep, LauncherDep, RunReportDep, StoreDep, TokenDep
from marginscope.backend.recording.ingest import (
    EventIn,
    InvalidEvent,
    ingest_events,
    json_int,
    parse_events,
    revive,
    stop_asked,
)
from marginscope.backend.routes.json_body import OnePassJsonRoute
from marginscope.backend.routes.runs import body_errors, check_steps
from marginscope.backend.schemas import BODY_ERRORS, TOKEN_ERRORS, Message, RunPublic, Tag, _limit, _text, errors
from marginscope.backend.store import MAX_INT32, RunStatus
from marginscope.backend.store.exceptions import SeqMismatch
from marginscope.engine.config import TrainConfig

router = APIRouter(prefix="/api/ingest", tags=["ingest"])
# the events route: its batches are parsed and checked in one pass from the bytes (json_body.py)
events_router = APIRouter(route_class=OnePassJsonRoute)  # under `router`, which adds the prefix

MAX_BATCH_EVENTS = 1000  # events per POST .../events; the engine's client sends at most as many
MAX_SEQ = 2**53 - 1  # exact in a double, as JSON Schema bounds are read


class Trainer(BaseModel):
    """Where the run trains: shown with the run (host) and in its log."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(..., min_length=1, max_length=255, pattern="^[^\\x00]*$",
                      description="The machine that trains (shown in the runs list).")
    pid: json_int(0, MAX_INT32) = Field(..., description="The training process on that machine.")  # type: ignore[valid-type]


class RemoteRunCreate(Trainer):
    """POST /api/ingest/runs: a run that trains elsewhere, as POST /api/runs takes one, plus its trainer."""

    name: str | None = Field(None, description=f"blank: run-<id>; {_limit('name')}",
                             json_schema_extra=_text("name"))
    config: TrainConfig = Field(default_factory=lambda: TrainConfig.model_validate({}))
    tags: list[Tag] = Field(default_factory=list, max_length=100)
    notes: str = Field("", json_schema_extra=_text("notes"))


class RemoteRunStarted(BaseModel):
    run: RunPublic
    next_seq: int = Field(description="The sequence number the run's next event must carry.")


class RemoteRunClaimed(RemoteRunStarted):
    config: dict[str, Any] = Field(description="The run's stored config (TrainConfig fields).")


class EventBatch(BaseModel):
    """Events `seq`, `seq`+1, ... of one run, each as the engine's `Event.to_dict()` writes it."""

    model_config = ConfigDict(extra="forbid")

    seq: json_int(0, MAX_SEQ) = Field(..., description="Sequence number of the first event.")  # type: ignore[valid-type]
    events: list[EventIn] = Field(..., max_length=MAX_BATCH_EVENTS,  # type: ignore[valid-type]
                                  description=f"At most {MAX_BATCH_EVENTS} events, each "
                                  "`Event.to_dict()` of the engine (its `kind` says which).")


class BatchAnswer(BaseModel):
    next_seq: int = Field(description="Everything before it is stored.")
    stop: bool = Field(description="The dashboard asked the run to stop (or it ended): stop after "
                                   "this step with a checkpoint.")


class Heartbeat(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HeartbeatAnswer(BaseModel):
    stop: bool
    status: RunStatus


class SeqGap(Message):
    """A 409 of the events route: the batch starts after the events the store holds."""

    expected_seq: int | None = Field(None, description="Send the events again from this number "
                                     "(absent: the run's state refused the events).")


INGEST_ERRORS = (*BODY_ERRORS, *TOKEN_ERRORS)
_EVENTS_409 = {409: {"model": SeqGap, "description": "A gap (`expected_seq` names where to resume), "
                     "or the run is not remote or has ended."}}


@router.post("/runs", response_model=RemoteRunStarted, status_code=status.HTTP_201_CREATED,
             dependencies=[TokenDep], responses=errors(*INGEST_ERRORS))
def create_remote_run(body: RemoteRunCreate, store: StoreDep, launcher: LauncherDep) -> RemoteRunStarted:
    """Create a run that trains elsewhere: running at once, watched by its heartbeat."""
    check_steps(body.config)
    with body_errors():
        run = store.start_remote(None, host=body.host, pid=body.pid, name=body.name,
                                 config=body.config.model_dump(mode="json"), tags=body.tags,
                                 notes=body.notes)
    launcher.watch(run.id)
    return RemoteRunStarted(run=RunPublic.from_entity(run), next_seq=run.ingest_seq)


@router.post("/runs/{run_id}/claim", response_model=RemoteRunClaimed, dependencies=[RunReportDep],
             responses=errors(404, 409, *INGEST_ERRORS))
def claim_run(run_id: int, body: Trainer, store: StoreDep, launcher: LauncherDep) -> RemoteRunClaimed:
    """Take over a queued run: the launcher's own worker process (then supervised by its pid), or
    a task elsewhere (a cluster executor's: remote from now on, watched by its heartbeat)."""
    local = launcher.is_worker(run_id, host=body.host, pid=body.pid)
    run = store.start_remote(run_id, host=body.host, pid=body.pid, executor=None if local else "remote")
    if not local:
        launcher.watch(run.id)
    return RemoteRunClaimed(run=RunPublic.from_entity(run), config=run.config, next_seq=run.ingest_seq)


@events_router.post("/runs/{run_id}/events", response_model=BatchAnswer, dependencies=[RunReportDep],
             responses={**errors(404, *INGEST_ERRORS), **_EVENTS_409})
def post_events(run_id: int, body: EventBatch, store: StoreDep, launcher: LauncherDep, hub: HubDep) -> Any:
    """Write a batch of a run's events; a batch sent again is written once."""
    try:
        events = parse_events(body.events)
    except InvalidEvent as exc:
        raise RequestValidationError([{"type": "value_error", "loc": ("body", "events", exc.index, *exc.loc),
                                       "msg": str(exc)}]) from None
    try:
        answer = ingest_events(store, run_id, body.seq, events)
    except SeqMismatch as exc:
        return JSONResponse({"detail": f"{exc}: send the events again from {exc.expected}",
                             "expected_seq": exc.expected}, status_code=status.HTTP_409_CONFLICT)
    hub.wake(run_id)  # committed: the run's viewers get the rows now, not at the next poll
    if answer.revived:
        launcher.watch(run_id)
    return BatchAnswer(next_seq=answer.next_seq, stop=answer.stop)


router.include_router(events_router)


@router.post("/runs/{run_id}/heartbeat", response_model=HeartbeatAnswer, dependencies=[RunReportDep],
             responses=errors(404, 409, *INGEST_ERRORS))
def heartbeat(run_id: int, body: Heartbeat, store: StoreDep, launcher: LauncherDep) -> HeartbeatAnswer:
    """The run's trainer is alive; the answer says whether it should stop."""
    run = store.get_run(run_id)
    if run.status == RunStatus.CRASHED:
        run = revive(store, run)
        if run.status == RunStatus.RUNNING:
            launcher.watch(run_id)
    if run.status == RunStatus.RUNNING:
        store.heartbeat(run_id)
    return HeartbeatAnswer(stop=stop_asked(run), status=run.status)
