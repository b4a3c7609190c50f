"""The worker process: runs one stored run with the engine and writes its events to the store.

    python -m backend.worker <run-id> [--resume] [--db-url URL] [--data-dir DIR]

(the options default to MARGINSCOPE_DB_URL / MARGINSCOPE_DATA_DIR). The launcher starts one per
run in its own session; the worker itself only needs the database:

1. load the run, build its TrainConfig from the stored config with out_dir = <data_dir>/runs/<id>
   and data_dir = the settings' data dir (a stored out_dir/data_dir/resume_from is overridden);
2. mark it running with this pid and host (only if it is queued or running: a run cancelled before
   its worker got going is left alone, exit 0);
3. heartbeat every `heartbeat_interval` seconds on a thread; SIGTERM/SIGINT set a flag that the
   engine polls (`should_stop`), so a cancel ends with a checkpoint and status cancelled. The
   heartbeat sets the same flag when the store no longer says `running` (or the run was deleted);
4. feed every event to a BatchedWriter (flushed every 0.5 s and at the end);
5. finished | cancelled on return (exit 0); failed with error and traceback on an exception
   (exit 1) — the rows already written stay. If another process ended the run meanwhile, the
   worker's outcome replaces it only where that is the truer account (END_MAY_REPLACE).

Resume (`--resume`): the run must have a checkpoint file. Rows of the crashed attempt after the
checkpoint's step are DELETED first (`store.truncate_after_step`, which also counts the attempt
and records the resume's seq) and the engine continues from that step, so each series stays one
clean curve with no duplicated steps. Log lines are kept (they tell what happened). The live hub
sends its clients a fresh snapshot when it sees the resume marker.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import traceback as tb
from pathlib import Path
from types import FrameType
from typing import Any

from backend.settings import Settings
from backend.store import AbstractStore, Conflict, RunNotFound, RunStatus, open_store
from backend.store.writer import BatchedWriter

log = logging.getLogger("backend.worker")

EXIT_OK, EXIT_FAILED = 0, 1


class _Heartbeat(threading.Thread):
    """Beats every `interval` s; sets `stop_run` when the store says the run is no longer running
    (cancelled by a process that could not signal this one, marked crashed, queued again) or is
    gone (deleted): the engine then stops after its step with a checkpoint."""

    def __init__(self, store: AbstractStore, run_id: int, interval: float,
                 stop_run: threading.Event) -> None:
        super().__init__(name=f"heartbeat-{run_id}", daemon=True)
        self.store, self.run_id, self.interval = store, run_id, interval
        self.stop_run = stop_run
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


# Which status the worker's own outcome may replace. Another process may have ended the run first:
# the launcher (cancel without a process to signal, a stale heartbeat → crashed, a worker it saw
# exit) or `marginscope runs cancel`. A run that trained to the end is finished whatever was
# recorded meanwhile; a clean stop or a failure replaces only a `crashed` guess (the worker, alive,
# knows better) and never a cancel the user asked for. A run queued again (a resume) is left alone.
END_MAY_REPLACE: dict[RunStatus, tuple[RunStatus, ...]] = {
    RunStatus.FINISHED: (RunStatus.RUNNING, RunStatus.CRASHED, RunStatus.CANCELLED),
    RunStatus.CANCELLED: (RunStatus.RUNNING, RunStatus.CRASHED),
    RunStatus.FAILED: (RunStatus.RUNNING, RunStatus.CRASHED),
}


def _record_end(store: AbstractStore, run_id: int, status: RunStatus, **fields: Any) -> None:
    """Record how the run ended unless another process already recorded a final say (see above)."""
    try:
        store.set_status(run_id, status, expect=END_MAY_REPLACE[status], **fields)
    except Conflict as exc:
        log.warning("run %s ended %s here, but its status stays: %s", run_id, status.value, exc)
    except RunNotFound:
        log.warning("run %s was deleted while its worker ran", run_id)


def build_config(stored: dict[str, Any], *, run_dir: Path, data_dir: Path,
                 resume_from: str | None = None) -> Any:
    """The engine's TrainConfig for a stored run (validated; raises pydantic's ValidationError)."""
    from engine.config import TrainConfig

    values = {**stored, "out_dir": str(run_dir), "data_dir": str(data_dir), "resume_from": resume_from}
    return TrainConfig(**values)


def run_worker(run_id: int, settings: Settings, *, resume: bool = False) -> int:
    """Execute run `run_id`; returns the process exit code (0 finished/cancelled, 1 failed)."""
    store = open_store(settings)
    try:
        return _run(store, run_id, settings, resume=resume)
    finally:
        store.close()


def _run(store: AbstractStore, run_id: int, settings: Settings, *, resume: bool) -> int:
    try:
        run = store.get_run(run_id)
    except RunNotFound:
        log.error("run %s not found in %s", run_id, settings.db_url)
        return EXIT_FAILED
    run_dir = Path(store.run_dir(run_id))
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping run %s after the current step", signum, run_id)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    try:
        run = store.set_status(run_id, RunStatus.RUNNING, pid=os.getpid(), host=socket.gethostname(),
                               expect=(RunStatus.QUEUED, RunStatus.RUNNING))
    except Conflict as exc:
        log.warning("not starting: %s", exc)
        return EXIT_OK
    heartbeat = _Heartbeat(store, run_id, settings.heartbeat_interval, stop)
    heartbeat.start()
    writer: BatchedWriter | None = None
    try:
        resume_from = None
        if resume:
            if not run.checkpoint_path or not Path(run.checkpoint_path).is_file():
                raise FileNotFoundError(f"run {run_id} has no checkpoint to resume from "
                                        f"({run.checkpoint_path or 'none recorded'})")
            resume_from = run.checkpoint_path
            # deletes the crashed attempt's tail and marks the resume (attempt, resumed_at_seq,
            # a log line), which the live hub turns into a fresh snapshot for its clients
            # The step comes from the checkpoint file itself, not from the store: a kill can land
            # after the file was written but before its CheckpointSaved event was flushed, and
            # truncating at the older recorded step would leave a gap in every series.
            from engine.train import checkpoint_step

            store.truncate_after_step(run_id, checkpoint_step(run.checkpoint_path))
        config = build_config(run.config, run_dir=run_dir, data_dir=settings.data_dir,
                              resume_from=resume_from)
        run_dir.mkdir(parents=True, exist_ok=True)

        from engine.train import train

        writer = BatchedWriter(store, run_id)
        result = train(config, callbacks=[writer], should_stop=stop.is_set)
        writer.close()
        status = RunStatus.CANCELLED if result.status == "cancelled" else RunStatus.FINISHED
        _record_end(store, run_id, status)
        log.info("run %s %s after %s steps", run_id, status.value, result.steps)
        return EXIT_OK
    except BaseException as exc:
        text = f"{type(exc).__name__}: {exc}"
        trace = tb.format_exc()
        log.error("run %s failed: %s", run_id, text)
        if writer is not None:
            try:
                writer.close()
            except Exception as flush_exc:  # noqa: BLE001 - still record the failure below
                log.error("could not write the last events of run %s: %s", run_id, flush_exc)
        try:
            _record_end(store, run_id, RunStatus.FAILED, error=text, traceback=trace)
        except Exception as status_exc:  # noqa: BLE001 - nothing left to try; logged
            log.error("could not mark run %s failed: %s", run_id, status_exc)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return EXIT_FAILED
    finally:
        heartbeat.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.worker", description=__doc__.split("\n")[0])
    parser.add_argument("run_id", type=int)
    parser.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    parser.add_argument("--db-url", default=None, help="default: MARGINSCOPE_DB_URL or the data dir's SQLite")
    parser.add_argument("--data-dir", default=None, help="default: MARGINSCOPE_DATA_DIR or ./data")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    overrides: dict[str, Any] = {}
    if args.db_url:
        overrides["db_url"] = args.db_url
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    settings = Settings(**overrides)
    return run_worker(args.run_id, settings, resume=args.resume)


if __name__ == "__main__":
    sys.exit(main())
