"""The trainer of a launcher's run: claims it, trains it, reports every event to the dashboard.

    python -m marginscope.backend.worker <run-id> [--resume] [--nproc N --device D]

A local worker process (backend/executors/local.py starts one per queued run) and a Dask task
(backend/executors/dask.py) both call `train_run`, so every run a launcher starts reaches the
store the same way: over the dashboard's ingest API, through `marginscope.engine.remote.HttpReporter`
and the run's spool. The trainer never opens the database; it needs:

- the dashboard's URL (MARGINSCOPE_SERVER_URL: for a local worker, the server's loopback address)
  and the run's credential (MARGINSCOPE_RUN_CREDENTIAL, minted by the launcher for this run and
  attempt alone; never on the command line);
- the run's folder (<MARGINSCOPE_DATA_DIR>/runs/<id>): its checkpoint, and its spool (`spool/`),
  the one copy of its events kept across attempts.

What it does:

1. claim the queued run (POST /api/ingest/runs/<id>/claim): running, with this pid and host (a
   torchrun agent's for a multi-process run). A run cancelled or deleted before its worker got
   going is refused: the worker leaves, exit 0. The answer holds the stored config;
2. train it with out_dir = the run folder and data_dir = the settings' data dir; with `--resume`,
   from the checkpoint in the run folder. The reporter first sends what an earlier attempt spooled
   and the dashboard never received, then the resumed attempt's events, whose RunStarted
   (resumed_from_step = S) makes the server drop the rows after S (docs/reliability.md, "Resume");
3. the heartbeat is the reporter's: every post or beat tells the dashboard the run is alive, and
   its answer carries a stop request. SIGTERM/SIGINT set the stop flag too, so a cancel ends with
   a checkpoint and status cancelled. How it ended (finished | cancelled, exit 0; failed, exit 1)
   is an event the server records; the worker exits once the dashboard holds every event (or
   `close_timeout` passed: the launcher then finds a run without an end, crashed, whose spool a
   resume sends first).

A run with `nproc` > 1 trains on that many processes: the worker replaces itself (exec, so the
launcher's pid, process group and command line stay valid) by torchrun running
`python -m marginscope.backend.worker <id> ...` once per rank. Rank 0 claims and reports the run,
naming the torchrun agent as its process, and sends the config to the other ranks, which train
without reporting (engine/distributed.py: rank 0 alone emits events; a stop is decided on rank 0
for all ranks). A cancel's SIGTERM reaches the agent, which passes it on to every rank; a SIGKILL
of the agent takes the ranks with it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import traceback as tb
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from marginscope.backend.settings import Settings

if TYPE_CHECKING:
    from marginscope.engine.distributed import Ranks

log = logging.getLogger("marginscope.backend.worker")

EXIT_OK, EXIT_FAILED = 0, 1
CREDENTIAL_ENV = "MARGINSCOPE_RUN_CREDENTIAL"
CHECKPOINT = "checkpoint.pt"
SPOOL = "spool"


def build_config(stored: dict[str, Any], *, run_dir: Path, data_dir: Path | None,
                 resume_from: str | None = None) -> Any:
    """The engine's TrainConfig for a stored run (validated; raises pydantic's ValidationError).
    `data_dir` None keeps the stored one (a Dask worker's own)."""
    from marginscope.engine.config import TrainConfig

    values = {**stored, "out_dir": str(run_dir), "resume_from": resume_from}
    if data_dir is not None:
        values["data_dir"] = str(data_dir)
    return TrainConfig(**values)


def train_run(run_id: int, *, server: str, credential: str | None, run_dir: str | Path,
              data_dir: str | Path | None = None, resume: bool = False,
              heartbeat_interval: float = 2.0, stop: threading.Event | None = None,
              ranks: Ranks | None = None) -> str:
    """Claim queued run `run_id` at `server`, train it in `run_dir` and report it there; returns
    how it ended ("finished" or "cancelled"). Raises `Refused` when the claim is refused (the run
    is no longer queued: a Dask task retried elsewhere fails so), and when training fails (the
    failure is reported first). The Dask executor's task; the local worker process calls it
    under its signal handlers."""
    from marginscope.engine.remote import HttpReporter
    from marginscope.engine.remote.run import EndSeen
    from marginscope.engine.loop import train

    run_dir = Path(run_dir)
    stop = stop or threading.Event()
    agent = os.getppid() if ranks is not None and ranks.enabled else None  # torchrun's agent
    try:
        _make_folders(run_dir)
    except OSError as exc:  # no spool can be kept: claim the run and report this failure alone
        _fail_unspooled(run_id, server=server, credential=credential, pid=agent, error=exc)
        raise
    reporter = HttpReporter(server, token=credential, claim=run_id, spool_path=run_dir / SPOOL, pid=agent,
                            heartbeat_interval=heartbeat_interval)
    ended = EndSeen()
    try:
        assert reporter.claimed_config is not None
        checkpoint = run_dir / CHECKPOINT
        if resume and not checkpoint.is_file():
            raise FileNotFoundError(f"run {run_id} has no checkpoint to resume from ({checkpoint})")
        config = build_config(reporter.claimed_config, run_dir=run_dir,
                              data_dir=Path(data_dir) if data_dir is not None else None,
                              resume_from=str(checkpoint) if resume else None)
        if ranks is not None and ranks.enabled:
            ranks.tell_followers(config.model_dump())
        result = train(config, callbacks=[reporter, ended],
                       should_stop=lambda: stop.is_set() or reporter.should_stop())
        return result.status
    except BaseException as exc:
        if not ended.ended:  # failed before training reported it (a bad config, a folder, a signal)
            from marginscope.engine.events import RunFailed

            reporter(RunFailed(step=0, error=f"{type(exc).__name__}: {exc}", traceback=tb.format_exc()))
        raise
    finally:
        reporter.close()


def _make_folders(run_dir: Path) -> None:
    """The run folder and its spool, writable; an OSError names the folder and the cause."""
    for folder in (run_dir, run_dir / SPOOL):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / ".writable"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            verb = "write in" if folder.is_dir() else "create"
            raise OSError(f"cannot {verb} the run folder {folder}: {(exc.strerror or str(exc)).lower()}") from exc


def _fail_unspooled(run_id: int, *, server: str, credential: str | None, pid: int | None,
                    error: BaseException) -> None:
    """A run whose folder cannot be written ends failed, saying why: claimed, then its one event
    (RunFailed) posted directly. A refused claim (the run is no longer queued) is left alone."""
    import json

    from marginscope.engine.events import RunFailed
    from marginscope.engine.remote import IngestClient, Refused

    client = IngestClient(server, token=credential)
    try:
        try:
            claimed = client.claim(run_id, pid)
        except Refused:
            return
        failed = RunFailed(step=0, error=f"{type(error).__name__}: {error}", traceback=tb.format_exc())
        client.post_events(run_id, int(claimed["next_seq"]), [json.dumps(failed.to_dict(), default=str)])
    finally:
        client.close()


def run_worker(run_id: int, settings: Settings, *, resume: bool = False, device: str = "auto") -> int:
    """The worker process: `train_run` under signal handlers and torchrun's ranks; returns the
    exit code (0 finished, cancelled or not started; 1 failed)."""
    from marginscope.engine.distributed import session

    with session(device) as ranks:
        if not ranks.is_main:
            return _follow(ranks)
        try:
            return _main_rank(run_id, settings, resume=resume, ranks=ranks)
        finally:
            if ranks.enabled:
                ranks.tell_followers(None)  # no-op once the config went out: a run not trained here


def _main_rank(run_id: int, settings: Settings, *, resume: bool, ranks: Ranks) -> int:
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping run %s after the current step", signum, run_id)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    from marginscope.engine.remote import Refused

    try:
        outcome = train_run(run_id, server=settings.public_url, credential=os.environ.get(CREDENTIAL_ENV),
                            run_dir=settings.runs_dir / str(run_id), data_dir=settings.data_dir,
                            resume=resume, heartbeat_interval=settings.heartbeat_interval, stop=stop,
                            ranks=ranks)
    except Refused as exc:
        if exc.status != 409:  # 404: no such run; 401: a credential that is not this run's
            log.error("run %s: the dashboard refused this worker: %s", run_id, exc)
            return EXIT_FAILED
        # cancelled or taken by another process before this worker got going
        log.warning("not starting run %s: %s", run_id, exc.detail)
        return EXIT_OK
    except BaseException as exc:
        log.error("run %s failed: %s: %s", run_id, type(exc).__name__, exc)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return EXIT_FAILED
    log.info("run %s: %s", run_id, outcome)
    return EXIT_OK


def _follow(ranks: Ranks) -> int:
    """A rank other than 0: train the config rank 0 sends (None: nothing to train), report nothing."""
    from marginscope.engine.config import TrainConfig
    from marginscope.engine.loop import train

    for signum in (signal.SIGTERM, signal.SIGINT):  # rank 0 decides when all ranks stop
        signal.signal(signum, lambda *_: log.info("signal: rank %d stops when rank 0 does", ranks.rank))
    config = ranks.broadcast_object(None)
    if config is None:
        return EXIT_OK
    train(TrainConfig(**config))
    return EXIT_OK


def _exec_under_torchrun(nproc: int, argv: list[str]) -> None:
    """Become torchrun (same pid) when the run asks for several processes; else return."""
    from marginscope.engine.distributed import env_world_size, torchrun_command

    if nproc <= 1 or env_world_size() > 1:
        return  # one process, or already a rank
    log.info("the run trains on %d processes: exec torchrun", nproc)
    for handler in logging.getLogger().handlers:
        handler.flush()
    command = torchrun_command(nproc, "marginscope.backend.worker", argv, module=True)
    os.execv(command[0], command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m marginscope.backend.worker", description=__doc__.split("\n")[0])
    parser.add_argument("run_id", type=int)
    parser.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    parser.add_argument("--nproc", type=int, default=1, help="processes the run trains on (its config's nproc)")
    parser.add_argument("--device", default="auto", help="the run's device (its config's; for the ranks' backend)")
    parser.add_argument("--server", default=None, help="the dashboard's URL; default: MARGINSCOPE_SERVER_URL")
    parser.add_argument("--data-dir", default=None, help="default: MARGINSCOPE_DATA_DIR or ./data")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per post: the reporter says what fails
    overrides: dict[str, Any] = {}
    if args.server:
        overrides["server_url"] = args.server
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    settings = Settings(**overrides)
    _exec_under_torchrun(args.nproc, sys.argv[1:] if argv is None else argv)
    return run_worker(args.run_id, settings, resume=args.resume, device=args.device)


if __name__ == "__main__":
    sys.exit(main())
