"""`record_run`: one training recorded in the store, from "running" to its final status.

For a process that trains and records in one, with no dashboard: the benchmark's `--db-url`
tracker and the measurement scripts. Runs a dashboard's launcher starts report over the ingest
API instead (backend/worker.py; the server writes them, with the same `record_end` rule).

    with record_run(store, run_id, heartbeat_interval=settings.heartbeat_interval) as recorder:
        train(config, callbacks=[recorder], should_stop=recorder.should_stop)

On entry it marks the run running with this process's pid and host — only a queued run: a run
cancelled or deleted before its trainer got going raises Conflict / RunNotFound and is left alone,
and a second process can never take over a run that already runs (the ingest API's claim is the
same rule for a launcher's workers). The pid and the status arrive together, so a running run
always names the process that trains it.

While the body runs, a heartbeat thread beats every `heartbeat_interval` s and sets the stop flag
(`recorder.should_stop()`) when the store no longer says running — cancelled by a process that
could not signal this one, marked crashed, queued again — or the run is gone: the engine then
stops after its step with a checkpoint. Events go through a BatchedWriter.

On exit it flushes and sets the final status by one rule: finished or cancelled as the
RunFinished event said; failed, with error and traceback, when an exception escapes the body (or
the last flush fails, or the body ends without a RunFinished); the exception is re-raised. Another
process may have recorded an end meanwhile; `END_MAY_REPLACE` says which ones this outcome may
replace, so a truer final status is never overwritten.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback as tb
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from marginscope.backend.recording.writer import BatchedWriter
from marginscope.backend.settings import Settings
from marginscope.backend.store import AbstractStore, Conflict, Run, RunNotFound, RunStatus
from marginscope.engine.events import Event, RunFinished

if TYPE_CHECKING:
    from marginscope.engine.bench import TrackRun

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL: float = Settings.model_fields["heartbeat_interval"].default

# Which status a trainer's own outcome may replace. Another process may have ended the run first:
# the launcher (cancel without a process to signal, a stale heartbeat → crashed, a worker it saw
# exit) or `marginscope runs cancel`. A run that trained to the end is finished whatever was
# recorded meanwhile; a clean stop or a failure replaces only a `crashed` guess (the trainer,
# alive, knows better) and never a cancel the user asked for. A run queued again (a resume) is
# left alone.
END_MAY_REPLACE: dict[RunStatus, tuple[RunStatus, ...]] = {
    RunStatus.FINISHED: (RunStatus.RUNNING, RunStatus.CRASHED, RunStatus.CANCELLED),
    RunStatus.CANCELLED: (RunStatus.RUNNING, RunStatus.CRASHED),
    RunStatus.FAILED: (RunStatus.RUNNING, RunStatus.CRASHED),
}


def record_end(store: AbstractStore, run_id: int, status: RunStatus, **fields: Any) -> None:
    """Record how the run ended unless another process already recorded a truer end (see above)."""
    try:
        store.set_status(run_id, status, expect=END_MAY_REPLACE[status], **fields)
    except Conflict as exc:
        log.warning("run %s ended %s here, but its status stays: %s", run_id, status.value, exc)
    except RunNotFound:
        log.warning("run %s was deleted while it trained", run_id)


class Heartbeat(threading.Thread):
    """Beats every `interval` s; sets `stop` when the store says the run is no longer running, or
    is gone."""

    def __init__(self, store: AbstractStore, run_id: int, interval: float, stop: threading.Event) -> None:
        super().__init__(name=f"heartbeat-{run_id}", daemon=True)
        self.store, self.run_id, self.interval, self.stop_run = store, run_id, interval, stop
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                status = self.store.heartbeat(self.run_id)
            except RunNotFound:
                status = None
            except Exception as exc:  # noqa: BLE001 - a missed beat is not fatal; a stale one is the launcher's call
                log.warning("heartbeat of run %s failed: %s", self.run_id, exc)
                continue
            if status != RunStatus.RUNNING and not self.stop_run.is_set():
                log.warning("run %s is %s in the store: stopping after the current step",
                            self.run_id, status or "deleted")
                self.stop_run.set()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


class Recorder:
    """What `record_run` yields: the engine callback (events go to the writer) and the stop flag
    for `train(should_stop=...)`."""

    def __init__(self, run: Run, writer: BatchedWriter, stop: threading.Event) -> None:
        self.run = run  # as marked running
        self.writer = writer
        self._stop = stop
        self.outcome: RunStatus | None = None  # from RunFinished

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunFinished):
            self.outcome = RunStatus.CANCELLED if event.status == "cancelled" else RunStatus.FINISHED
        self.writer(event)

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        self._stop.set()


@contextmanager
def record_run(store: AbstractStore, run_id: int, *, heartbeat_interval: float = HEARTBEAT_INTERVAL,
               flush_interval: float = 0.5, stop: threading.Event | None = None,
               pid: int | None = None) -> Iterator[Recorder]:
    """Record one training of the queued run `run_id` (see the module docstring). `stop`: a flag
    the caller may set too (a signal handler). `pid`: the process that stands for
    the training when it is not this one (a multi-process run: its torchrun agent)."""
    stop = stop or threading.Event()
    run = store.set_status(run_id, RunStatus.RUNNING, pid=pid or os.getpid(), host=socket.gethostname(),
                           expect=(RunStatus.QUEUED,))
    heartbeat = Heartbeat(store, run_id, heartbeat_interval, stop)
    heartbeat.start()
    writer = BatchedWriter(store, run_id, flush_interval=flush_interval)
    recorder = Recorder(run, writer, stop)
    try:
        try:
            yield recorder
            writer.close()
            if recorder.outcome is None:
                raise RuntimeError("training ended without reporting how (no RunFinished event)")
        except BaseException as exc:
            try:
                writer.close()
            except Exception as flush_exc:  # noqa: BLE001 - still record the failure below
                log.error("could not write the last events of run %s: %s", run_id, flush_exc)
            try:
                record_end(store, run_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}",
                           traceback=tb.format_exc())
            except Exception as status_exc:  # noqa: BLE001 - nothing left to try; logged
                log.error("could not mark run %s failed: %s", run_id, status_exc)
            raise
        record_end(store, run_id, recorder.outcome)
    finally:
        heartbeat.stop()


def store_tracker(store: AbstractStore, *, heartbeat_interval: float = HEARTBEAT_INTERVAL) -> TrackRun:
    """The benchmark's tracker (marginscope.engine.bench.TrackRun) for this store: each training becomes a
    run, created (queued) with the benchmark's name, config and tags, then `record_run`."""

    @contextmanager
    def track(name: str, config: dict[str, Any], tags: Sequence[str]) -> Iterator[Recorder]:
        run = store.create_run(name=name, config=config, tags=list(tags))
        with record_run(store, run.id, heartbeat_interval=heartbeat_interval) as recorder:
            yield recorder

    return track
