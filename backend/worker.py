"""The worker process: runs one stored run with the engine and records it in the store.

    python -m marginscope.backend.worker <run-id> [--resume] [--db-url URL] [--data-dir DIR]

(the options default to MARGINSCOPE_DB_URL / MARGINSCOPE_DATA_DIR). The launcher starts one per
queued run in its own session; the worker itself only needs the database:

1. load the run, build its TrainConfig from the stored config with out_dir = <data_dir>/runs/<id>
   and data_dir = the settings' data dir (a stored out_dir/data_dir/resume_from is overridden);
2. train it inside `marginscope.backend.recording.record_run`, which marks it running with this pid and host
   (only a queued run: one cancelled before its worker got going is left alone, exit 0),
   heartbeats, writes every event, and sets the final status (finished | cancelled, exit 0;
   failed with error and traceback on an exception, exit 1 — the rows already written stay);
3. SIGTERM/SIGINT set the stop flag that the engine polls, so a cancel ends with a checkpoint and
   status cancelled.

A run with `nproc` > 1 trains on that many processes: the worker replaces itself (exec, so the
launcher's pid, process group and command line stay valid) by torchrun running
`python -m marginscope.backend.worker <id> ...` once per rank. Rank 0 records the run as above, with the pid of
the torchrun agent (the process the launcher started, signals and watches), and sends the config
to the other ranks, which train without recording anything (engine/distributed.py: rank 0 alone
emits events; a stop is decided on rank 0 for all ranks). A cancel's SIGTERM reaches the agent,
which passes it on to every rank; a SIGKILL of the agent takes the ranks with it.

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
import sys
import threading
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from marginscope.backend.recording import Recorder, record_run
from marginscope.backend.settings import Settings
from marginscope.backend.store import AbstractStore, Conflict, Run, RunNotFound, open_store

if TYPE_CHECKING:
    from marginscope.engine.distributed import Ranks

log = logging.getLogger("marginscope.backend.worker")

EXIT_OK, EXIT_FAILED = 0, 1


def build_config(stored: dict[str, Any], *, run_dir: Path, data_dir: Path,
                 resume_from: str | None = None) -> Any:
    """The engine's TrainConfig for a stored run (validated; raises pydantic's ValidationError)."""
    from marginscope.engine.config import TrainConfig

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
    from marginscope.engine.distributed import session

    with session(str(run.config.get("device", "auto"))) as ranks:
        if not ranks.is_main:
            return _follow(ranks)
        try:
            return _record(store, run_id, settings, resume=resume, ranks=ranks)
        finally:
            if ranks.enabled:
                ranks.tell_followers(None)  # no-op once the config went out: a run not trained here


def _follow(ranks: Ranks) -> int:
    """A rank other than 0: train the config rank 0 sends (None: nothing to train), record nothing."""
    from marginscope.engine.config import TrainConfig
    from marginscope.engine.loop import train

    for signum in (signal.SIGTERM, signal.SIGINT):  # rank 0 decides when all ranks stop
        signal.signal(signum, lambda *_: log.info("signal: rank %d stops when rank 0 does", ranks.rank))
    config = ranks.broadcast_object(None)
    if config is None:
        return EXIT_OK
    train(TrainConfig(**config))
    return EXIT_OK


def _record(store: AbstractStore, run_id: int, settings: Settings, *, resume: bool, ranks: Ranks) -> int:
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping run %s after the current step", signum, run_id)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    try:
        with ExitStack() as recording:
            try:
                recorder = recording.enter_context(
                    record_run(store, run_id, heartbeat_interval=settings.heartbeat_interval, stop=stop,
                               pid=os.getppid() if ranks.enabled else None))  # torchrun's agent
            except (Conflict, RunNotFound) as exc:
                log.warning("not starting: %s", exc)
                return EXIT_OK
            steps = _train(store, recorder, settings, resume=resume, ranks=ranks)
    except BaseException as exc:
        log.error("run %s failed: %s: %s", run_id, type(exc).__name__, exc)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return EXIT_FAILED
    log.info("run %s %s after %s steps", run_id, recorder.outcome, steps)
    return EXIT_OK


def _train(store: AbstractStore, recorder: Recorder, settings: Settings, *, resume: bool, ranks: Ranks) -> int:
    """Train the run `recorder` records (resuming from its checkpoint if asked); returns the steps."""
    run: Run = recorder.run
    resume_from = None
    if resume:
        if not run.checkpoint_path or not Path(run.checkpoint_path).is_file():
            raise FileNotFoundError(f"run {run.id} has no checkpoint to resume from "
                                    f"({run.checkpoint_path or 'none recorded'})")
        resume_from = run.checkpoint_path
        # deletes the crashed attempt's tail and marks the resume (attempt, resumed_at_seq,
        # a log line), which the live hub turns into a fresh snapshot for its clients
        # The step comes from the checkpoint file itself, not from the store: a kill can land
        # after the file was written but before its CheckpointSaved event was flushed, and
        # truncating at the older recorded step would leave a gap in every series.
        from marginscope.engine.loop import checkpoint_step

        store.truncate_after_step(run.id, checkpoint_step(run.checkpoint_path))
    run_dir = Path(store.run_dir(run.id))
    config = build_config(run.config, run_dir=run_dir, data_dir=settings.data_dir, resume_from=resume_from)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # the folder and the cause, not only the errno
        cause = (exc.strerror or str(exc)).lower()
        raise OSError(f"cannot create the run folder {run_dir}: {cause}") from exc

    from marginscope.engine.loop import train

    if ranks.enabled:
        ranks.tell_followers(config.model_dump())
    return train(config, callbacks=[recorder], should_stop=recorder.should_stop).steps


def _exec_under_torchrun(settings: Settings, run_id: int, argv: list[str]) -> None:
    """Become torchrun (same pid) when the run asks for several processes; else return."""
    from marginscope.engine.distributed import env_world_size, torchrun_command

    if env_world_size() > 1:
        return  # already a rank
    store = open_store(settings)
    try:
        nproc = int(store.get_run(run_id).config.get("nproc", 1))
    except RunNotFound:
        return  # _run says so
    finally:
        store.close()
    if nproc > 1:
        log.info("run %s trains on %d processes: exec torchrun", run_id, nproc)
        for handler in logging.getLogger().handlers:
            handler.flush()
        command = torchrun_command(nproc, "marginscope.backend.worker", argv, module=True)
        os.execv(command[0], command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m marginscope.backend.worker", description=__doc__.split("\n")[0])
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
    _exec_under_torchrun(settings, args.run_id, sys.argv[1:] if argv is None else argv)
    return run_worker(args.run_id, settings, resume=args.resume)


if __name__ == "__main__":
    sys.exit(main())
