"""The launcher: a FIFO queue of runs and a supervisor of their worker processes.

Where a run trains is its executor's business (backend/executors/): `local` worker processes
(the default; supervised here by pid), or tasks on a Dask cluster (remote runs). Either way the
trainer reports over this dashboard's ingest API with a credential minted here for that run and
attempt alone (`_spawn`; backend/security.py): no trainer opens the database.

Kept as one module: the queue, the supervisor and the API's lifecycle actions share one lock and
one table of workers, and read best together.

One background thread (started in the app's lifespan) does, every `poll_interval` seconds or when
woken: reap workers that exited (a run still `running` in the store after its worker is gone is
`crashed`, or `cancelled` when we had asked it to stop), escalate cancellations (SIGTERM, then
SIGKILL after `grace_period`), watch the heartbeats of all running runs, and start the oldest
queued runs while fewer than `max_concurrent_runs` run.

A worker is supervised until its run's end is written. When the store cannot be written (a full
disk, a locked database) the exited worker stays in the table and the next tick tries again; a
storage error is logged and never ends the tick for the other runs, so the run cannot stay
`running` forever and block the queue.

A heartbeat older than `stale_after` means the run's trainer is frozen or gone, on any host. The
beats of this launcher's own workers and of remote runs arrive through this server (the ingest
API), so theirs count from the later of the last beat and this launcher's start: a dashboard that
was down cannot blame a trainer for the beats it could not receive. On
this host the launcher first SIGKILLs the frozen worker's process group (a SIGSTOPped process, a
deadlock holding the GIL), so that it can never write to the run again, then records `crashed`
through the reap like any worker that died. A run recorded by a process of another host (or one
that is no worker of ours) is marked `crashed` by its heartbeat alone. `stale_after` must exceed
the longest write stall the database may have: a heartbeat that waits for the write lock is late.

Each local worker runs in its own session and process group (backend/executors/local.py). The
store is the source of truth: on start-up `reconcile()`
marks a running run whose process is gone (or, on another host, whose heartbeat is stale) as
`crashed` and re-attaches to workers that are still alive.

A remote run (`executor` "remote": it trains elsewhere and reports over the ingest API, whatever
host and pid it names, this one included) is never a worker of ours: it is watched by its
heartbeat alone, from the later of its last beat and this launcher's start (a dashboard that was
down cannot blame the run for the beats it could not receive), it takes no place under
`max_concurrent_runs`, and a cancel sets its stop request, which the run reads in its next answer.

Several dashboards may serve one database (PostgreSQL). Each launcher has a name (`host:port`,
`Settings.launcher_name`) that the runs it starts record (`runs.launcher`): a run launched from a
dashboard, or resumed there, is its launcher's; a run without one is claimed by the first launcher
that starts it, with one conditional UPDATE (`claim_queued`), so two launchers never both start a
run. Another launcher's running run is watched by its heartbeat alone here: never re-attached,
signalled on a pid it cannot vouch for, or counted under this dashboard's `max_concurrent_runs`.

Lifecycle calls from the API (cancel, resume, delete) take the same lock as the scheduler, so a
queued run cannot be started and cancelled at the same time.

Who writes "running": the worker, once, with its pid and host, and only from queued: its claim
(POST /api/ingest/runs/{id}/claim, written by this server; `record_run` for the benchmark and the
scripts, which have no launcher). The process that trains is the one that can say so truthfully. The launcher spawns a
worker for a queued run and remembers it; while that run is still queued:
- the worker takes a place under `max_concurrent_runs`, and the run is not spawned again;
- a cancel ends the run at once, and the worker, finding it no longer queued, exits untrained (if
  the worker won the race, the cancel goes on as a cancel of a running run: SIGTERM);
- a worker that dies before starting the run leaves it queued: the reap marks it crashed with the
  tail of worker.log (else it would be spawned again and again);
- a second recorder of the run (a worker spawned before a restart, a benchmark) cannot be
  overridden: the worker that finds the run running exits at once, and its reap supervises the
  one that runs it (by pid, or by heartbeat when it is no worker of this host);
- a running run's pid is always its trainer's (queued clears pid and host): reconcile and cancel
  never see an earlier attempt's pid.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from marginscope.backend.executors import Executor, ExecutorError, make_executor
from marginscope.backend.executors.local import (
    WORKER_LOG,
    LocalExecutor,
    WorkerCommand,
    pid_alive,
    reason,
    tail,
    worker_command,
    worker_marker,
)
from marginscope.backend.executors.local import signal_group as _signal_group
from marginscope.backend.security import mint_run_credential
from marginscope.backend.settings import Settings
from marginscope.backend.store import AbstractStore, Conflict, Run, RunNotFound, RunStatus, StoreError

log = logging.getLogger(__name__)

HOST = socket.gethostname()
MAX_LISTED = 10_000  # running runs read per scheduling round: far above any concurrency limit
__all__ = ["HOST", "Launcher", "ResumeCheck", "pid_alive", "worker_command", "worker_marker"]

@dataclass
class _Worker:
    """A worker we watch: our own child (popen) or a re-attached process (pid only)."""

    run_id: int
    pid: int
    popen: subprocess.Popen[bytes] | None = None
    cancel_deadline: float | None = None  # monotonic time after which SIGKILL follows SIGTERM
    killed: bool = False
    frozen: str | None = None  # why it was killed as frozen (a stale heartbeat); the crash reason

    def exit_code(self) -> int | None:
        """None while alive; the return code (negative = signal) or -1 when unknown. A re-attached
        pid must still run this run's worker: a recycled pid is never signalled as a frozen one."""
        if self.popen is not None:
            return self.popen.poll()
        return None if pid_alive(self.pid, expect=worker_marker(self.run_id)) else -1


@dataclass(frozen=True)
class ResumeCheck:
    """Whether a run may resume now; `reason` says why not, and `wait` whether the refusal ends by
    itself (its previous worker is still stopping, or it is still running) so asking again helps."""

    can_resume: bool
    reason: str | None = None
    wait: bool = False


class Launcher:
    """Queue + supervisor. `start()` reconciles and starts the thread; `stop()` leaves workers running."""

    def __init__(self, store: AbstractStore, settings: Settings, *, poll_interval: float = 0.5,
                 grace_period: float = 10.0, command: WorkerCommand = worker_command,
                 executor: Executor | None = None) -> None:
        self.store = store
        self.settings = settings
        self.poll_interval = poll_interval
        self.grace_period = grace_period
        self.name = settings.launcher_name
        if executor is None:
            executor = LocalExecutor(settings, command) if settings.executor == "local" \
                else make_executor(settings)
        self.executor = executor
        self._lock = threading.RLock()
        self._workers: dict[int, _Worker] = {}
        self._remote: set[int] = set()  # running elsewhere (other host / pid unknown): heartbeats only
        self._unwritten: dict[int, str] = {}  # run id -> the store error that a retry waits out
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._since = datetime.now(UTC)  # a remote run's heartbeat counts from here at the latest

    # ------------------------------------------------------------------ lifecycle of the launcher

    def start(self) -> None:
        self._since = datetime.now(UTC)
        self.reconcile()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="marginscope-launcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop supervising. Workers keep running; the next start re-attaches to them."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.executor.close()

    def wake(self) -> None:
        """Ask the supervisor to look at the queue now (after a run was queued)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the supervisor must survive a database hiccup
                log.exception("launcher tick failed")
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def tick(self) -> None:
        """One round: reap, escalate cancels, check heartbeats, start queued runs. A storage error
        in one step is logged and the others still run (each run's own error is handled inside)."""
        with self._lock:
            for step in (self._reap, self._settle_tasks, self._escalate, self._check_heartbeats,
                         self._schedule):
                try:
                    step()
                except StoreError as exc:
                    log.warning("launcher: %s skipped this round: %s", step.__name__.lstrip("_"), exc)

    def _store_failed(self, run_id: int, action: str, exc: StoreError) -> None:
        """Log a write the next tick retries; once per run and message, not every tick."""
        message = f"{action}: {exc}"
        if self._unwritten.get(run_id) != message:
            log.warning("run %d: cannot %s (retrying every %.1f s until the store can be written)",
                        run_id, message, self.poll_interval)
            self._unwritten[run_id] = message

    # ------------------------------------------------------------------ start-up reconciliation

    def reconcile(self) -> dict[str, list[int]]:
        """Bring the store in line with the processes that exist; returns what it did per run."""
        done: dict[str, list[int]] = {"reattached": [], "crashed": [], "watching": []}
        with self._lock:
            for run in self._running_runs():
                if run.id in self._workers:
                    continue
                if run.executor is None and self._mine(run) and run.host == HOST and run.pid:
                    if pid_alive(run.pid, expect=worker_marker(run.id)):
                        self._workers[run.id] = _Worker(run.id, run.pid)
                        done["reattached"].append(run.id)
                        log.info("re-attached to run %d (pid %d)", run.id, run.pid)
                    else:
                        try:
                            self._crash(run, f"worker process {run.pid} is gone (found at start-up)")
                            done["crashed"].append(run.id)
                        except StoreError as exc:  # the reap retries: the pid reads as gone
                            self._store_failed(run.id, "record its crash", exc)
                            self._workers[run.id] = _Worker(run.id, run.pid)
                            done["watching"].append(run.id)
                elif self._stale(run):
                    try:
                        self._crash(run, "no heartbeat since "
                                    f"{(run.heartbeat_at or run.status_changed_at).isoformat()}")
                        done["crashed"].append(run.id)
                    except StoreError as exc:  # the heartbeat check retries
                        self._store_failed(run.id, "record its crash", exc)
                        self._remote.add(run.id)
                        done["watching"].append(run.id)
                else:
                    self._remote.add(run.id)
                    done["watching"].append(run.id)
        return done

    def _running_runs(self) -> list[Run]:
        runs, _ = self.store.list_runs(status=RunStatus.RUNNING.value, sort="id", limit=1000)
        return runs

    @staticmethod
    def _last_beat(run: Run) -> datetime:
        return run.heartbeat_at or run.started_at or run.status_changed_at

    def _stale(self, run: Run) -> bool:
        last = self._last_beat(run)
        if run.executor is not None or (run.host == HOST and self._mine(run)):
            last = max(last, self._since)  # its beats come through this server (the ingest API)
        return (datetime.now(UTC) - last).total_seconds() > self.settings.stale_after

    def _crash(self, run: Run, reason: str) -> None:
        """Record `crashed`; a StoreError (the store cannot be written) goes to the caller, who
        keeps supervising the run so that the next tick tries again."""
        worker_log = Path(self.store.run_dir(run.id)) / WORKER_LOG
        try:
            self.store.set_status(run.id, RunStatus.CRASHED, error=reason, traceback=tail(worker_log),
                                  message=f"crashed: {reason}", expect=(run.status,))
        except Conflict:
            return  # the worker recorded its own end (or start) meanwhile
        log.warning("run %d crashed: %s", run.id, reason)

    # ------------------------------------------------------------------ supervision

    def _reap(self) -> None:
        """Settle each worker that exited; one whose end cannot be written yet stays supervised."""
        for worker in list(self._workers.values()):
            code = worker.exit_code()
            if code is None:
                continue
            try:
                self._settle(worker, code)
            except StoreError as exc:
                self._store_failed(worker.run_id, "record the end of its worker", exc)
                continue
            self._unwritten.pop(worker.run_id, None)
            if self._workers.get(worker.run_id) is worker:  # not replaced by the run's other worker
                del self._workers[worker.run_id]

    def _settle(self, worker: _Worker, code: int) -> None:
        """Write how the run of an exited worker ended, unless the worker (or a cancel) did."""
        try:
            run = self.store.get_run(worker.run_id)
        except RunNotFound:
            return
        if run.status not in (RunStatus.QUEUED, RunStatus.RUNNING):
            return  # the worker recorded its own end, or the run was cancelled before it started
        if run.status == RunStatus.RUNNING and run.pid not in (None, worker.pid):
            self._watch_other_worker(run)
            return
        unstarted = " before starting the run" if run.status == RunStatus.QUEUED else ""
        if worker.frozen is not None:
            self._crash(run, worker.frozen)
        elif worker.cancel_deadline is not None:
            how = "killed after the grace period" if worker.killed else "stopped"
            with contextlib.suppress(Conflict):
                self.store.set_status(run.id, RunStatus.CANCELLED, expect=(RunStatus.RUNNING,),
                                      message=f"cancelled: worker {how}")
        elif code < 0 and worker.popen is not None:
            self._crash(run, f"worker killed by signal {-code}{unstarted}")
        elif code == -1:
            self._crash(run, f"worker process {worker.pid} is gone")
        elif unstarted and code == 0:
            return  # it found its run no longer queued and left; the run was queued again since
        elif unstarted:
            self._crash(run, f"worker exited with code {code}{unstarted}")
        else:
            self._crash(run, f"worker exited with code {code} without reporting an end status")

    def _watch_other_worker(self, run: Run) -> None:
        """Our worker found its run started by another process: supervise that one instead — as
        a worker of ours when it is one on this host, else by its heartbeat (a benchmark or a
        script records runs in its own process)."""
        if run.executor is None and self._mine(run) and run.host == HOST and run.pid and \
                pid_alive(run.pid, expect=worker_marker(run.id)):
            self._workers[run.id] = _Worker(run.id, run.pid)
        else:
            self._remote.add(run.id)

    def _escalate(self) -> None:
        now = time.monotonic()
        for worker in self._workers.values():
            if worker.cancel_deadline is not None and not worker.killed and now >= worker.cancel_deadline:
                log.warning("run %d ignored SIGTERM for %.0f s: SIGKILL", worker.run_id, self.grace_period)
                _signal_group(worker.pid, signal.SIGKILL)
                worker.killed = True

    def _check_heartbeats(self) -> None:
        """A stale heartbeat: our worker is frozen (killed here, crashed by the reap); a run
        recorded elsewhere is crashed now (kept watched until that is written)."""
        if not self._workers and not self._remote:
            return
        running = {run.id: run for run in self._running_runs()}
        for worker in self._workers.values():
            run = running.get(worker.run_id)
            if run is None or run.pid != worker.pid or worker.frozen is not None \
                    or worker.cancel_deadline is not None or not self._stale(run) \
                    or worker.exit_code() is not None:  # an exited pid may be another's by now
                continue  # not started, another process's, already killed, or being cancelled
            age = (datetime.now(UTC) - self._last_beat(run)).total_seconds()
            worker.frozen = (f"worker {worker.pid} frozen: no heartbeat for {age:.1f} s "
                             f"(stale after {self.settings.stale_after:g} s); killed with SIGKILL")
            log.warning("run %d: %s", run.id, worker.frozen)
            _signal_group(worker.pid, signal.SIGKILL)
            self._wake.set()  # reap it on the next round, without waiting a poll interval
        for run_id in list(self._remote):
            run = running.get(run_id)
            if run is None:  # ended, or deleted
                self._remote.discard(run_id)
            elif self._stale(run):
                try:
                    self._crash(run, "heartbeat stale")
                except StoreError as exc:
                    self._store_failed(run_id, "record its crash", exc)
                    continue
                self._unwritten.pop(run_id, None)
                self._remote.discard(run_id)

    def _mine(self, run: Run) -> bool:
        """Whether this launcher started (or may start) `run`: another dashboard's run on the same
        database is watched by its heartbeat alone, never spawned or judged by our process table."""
        return run.launcher in (None, self.name)

    def _placed_runs(self) -> list[Run]:
        """The running runs that take a place under max_concurrent_runs (remote runs and other
        dashboards' runs use none here)."""
        running, _ = self.store.list_runs(status=RunStatus.RUNNING.value, limit=MAX_LISTED)
        return [run for run in running if run.executor is None and self._mine(run)]

    def queue_state(self) -> dict[str, int | None]:
        """What queued runs wait for (GET /api/runs `queue`): the runs holding a place, and the
        number of places (None: a cluster executor, which queues its tasks itself)."""
        running = len(self._placed_runs())
        limit = self.settings.max_concurrent_runs if self.executor.kind == "local" else None
        return {"running": running, "limit": limit}

    def _schedule(self) -> None:
        running = self._placed_runs()
        # a worker of ours whose run is not running yet is starting it: it takes a place too
        starting = set(self._workers) - {run.id for run in running}
        submitted = self.executor.started()
        if self.executor.kind == "local":
            free = self.settings.max_concurrent_runs - len(running) - len(starting)
        else:  # the cluster queues its tasks itself: hand it every queued run
            free = MAX_LISTED
        if free <= 0:
            return
        queued = self.store.next_queued(free + len(self._workers) + len(submitted), launcher=self.name)
        for run in queued:
            if free <= 0:
                break
            if run.id in self._workers or run.id in submitted:
                continue
            # one conditional UPDATE: of two dashboards on one database, one starts the run
            if self.store.claim_queued(run.id, self.name) and self._spawn(run):
                free -= 1

    def _spawn(self, run: Run) -> bool:
        """Start a queued run through the executor; a local worker marks it running (see the module
        docstring). A run folder or worker log that cannot be written fails the run, naming the
        path and why (False: no place taken)."""
        run_dir = Path(self.store.run_dir(run.id))
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._fail_start(run, f"cannot create the run folder {run_dir}: {reason(exc)}")
            return False
        resume = bool(run.checkpoint_path and Path(run.checkpoint_path).exists())
        credential, digest = mint_run_credential()  # this attempt's; replaces an earlier one
        try:
            self.store.set_credential(run.id, digest)
            popen = self.executor.start(run, run_dir, resume=resume, credential=credential)
        except ExecutorError as exc:
            self._fail_start(run, str(exc))
            return False
        if popen is not None:
            self._workers[run.id] = _Worker(run.id, popen.pid, popen)
            log.info("started the worker of run %d: pid %d%s", run.id, popen.pid,
                     " (resume)" if resume else "")
        return True

    def _settle_tasks(self) -> None:
        """An executor's task that ended with an error while its run is still queued or running
        (it could not report its end: a lost cluster worker) crashes the run now."""
        for run_id, error in self.executor.ended():
            if error is None:
                continue
            with contextlib.suppress(RunNotFound):
                run = self.store.get_run(run_id)
                if run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
                    self._crash(run, error)
                    self._remote.discard(run_id)

    def _fail_start(self, run: Run, reason: str) -> None:
        log.error("run %d failed: %s", run.id, reason)
        with contextlib.suppress(Conflict, RunNotFound):
            self.store.set_status(run.id, RunStatus.FAILED, error=reason, message=f"failed: {reason}",
                                  expect=(RunStatus.QUEUED,))

    # ------------------------------------------------------------------ API actions

    def cancel(self, run_id: int) -> Run:
        """Queued → cancelled now; running → SIGTERM (SIGKILL after the grace period). Ended → 409."""
        with self._lock:
            run = self.store.get_run(run_id)
            if run.status == RunStatus.QUEUED:
                self.executor.cancel(run_id)  # a task not started yet is dropped; a started one's claim fails
                try:
                    return self.store.set_status(run_id, RunStatus.CANCELLED, expect=(RunStatus.QUEUED,),
                                                 message="cancelled before start")
                except Conflict:  # its worker started it just now: stop it like any running run
                    run = self.store.get_run(run_id)
            if run.status != RunStatus.RUNNING:
                raise Conflict(f"run {run_id} is already {run.status}; only queued or running runs "
                               "can be cancelled")
            if run.executor is not None:  # nothing of ours to signal: the run reads it when it reports
                return self.store.request_stop(run_id)
            worker = self._workers.get(run_id)
            # only a process whose command line is this run's worker: a recycled pid must never
            # receive the signal (it goes to the whole process group)
            if worker is None and run.host == HOST and run.pid and \
                    pid_alive(run.pid, expect=worker_marker(run_id)):
                worker = self._workers[run_id] = _Worker(run_id, run.pid)
            if worker is None:
                if run.host not in (None, HOST) and run_id in self._remote:
                    raise Conflict(f"run {run_id} runs on host {run.host}; cancel it there")
                # nothing to signal: the process is gone, so the run ends here
                return self.store.set_status(run_id, RunStatus.CANCELLED, expect=(RunStatus.RUNNING,),
                                             message="cancelled (worker process not found)")
            if worker.cancel_deadline is None:
                worker.cancel_deadline = time.monotonic() + self.grace_period
                self.store.append_log(run_id, "info", "cancel requested: SIGTERM sent to the worker")
                _signal_group(worker.pid, signal.SIGTERM)
            self._wake.set()
            return self.store.get_run(run_id)

    def is_worker(self, run_id: int, *, host: str, pid: int) -> bool:
        """Whether `pid` on `host` is the worker process this launcher started for `run_id` (its
        claim keeps the run a local one, supervised here by that pid)."""
        with self._lock:
            worker = self._workers.get(run_id)
            return host == HOST and worker is not None and worker.pid == pid

    def watch(self, run_id: int) -> None:
        """Watch a run that trains elsewhere (it reports over the ingest API) by its heartbeat."""
        with self._lock:
            if run_id not in self._workers:
                self._remote.add(run_id)

    def wait_stopped(self, run_id: int, timeout: float) -> Run:
        """Supervise only `run_id`'s worker (reap, escalate) until it exits or `timeout` passes;
        for callers without the supervisor thread (the `runs cancel` command)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if run_id not in self._workers:
                    break
                self._reap()
                self._escalate()
            time.sleep(0.2)
        return self.store.get_run(run_id)

    def resume_check(self, run_id: int) -> ResumeCheck:
        """Whether `resume(run_id)` would be accepted now, and if not, why (the run page offers
        Resume only then, and asks again while the refusal is one that ends by itself)."""
        with self._lock:
            return self._resume_check(self.store.get_run(run_id))

    def _resume_check(self, run: Run) -> ResumeCheck:
        if run.status not in (RunStatus.CRASHED, RunStatus.CANCELLED):
            # a running run ends in a moment (or its cancel is under way); a queued one will run
            return ResumeCheck(False, f"run {run.id} is {run.status}; only crashed or cancelled runs "
                               "resume", wait=run.status == RunStatus.RUNNING)
        if not run.checkpoint_path or not Path(run.checkpoint_path).exists():
            return ResumeCheck(False, f"run {run.id} has no checkpoint to resume from")
        if self._worker_alive(run):  # two workers must never write one run
            return ResumeCheck(False, f"run {run.id}'s previous worker is still stopping; resume it "
                               "in a few seconds", wait=True)
        return ResumeCheck(True)

    def resume(self, run_id: int) -> Run:
        """Queue a crashed or cancelled run that has a checkpoint; its worker continues from it."""
        with self._lock:
            run = self.store.get_run(run_id)
            check = self._resume_check(run)
            if not check.can_resume:
                raise Conflict(check.reason or f"run {run_id} cannot resume now")
            run = self.store.set_status(run_id, RunStatus.QUEUED,
                                        expect=(RunStatus.CRASHED, RunStatus.CANCELLED),
                                        message=f"resume queued (checkpoint at step {run.checkpoint_step})")
            # the checkpoint is on this dashboard's disk: this launcher starts the run again
            if self.store.claim_queued(run_id, self.name, take=True):
                run = self.store.get_run(run_id)
            self._wake.set()
            return run

    def _worker_alive(self, run: Run) -> bool:
        """Whether a worker process of this run still exists on this host (watched or by pid)."""
        worker = self._workers.get(run.id)
        if worker is not None and worker.exit_code() is None:
            return True
        return bool(run.host == HOST and run.pid and pid_alive(run.pid, expect=worker_marker(run.id)))

    def delete(self, run_id: int) -> None:
        """Delete a run that is not running (the store raises Conflict otherwise). A worker of it
        that is still shutting down (a cancel in progress was recorded already) is killed."""
        with self._lock:
            self.store.delete_run(run_id)
            worker = self._workers.pop(run_id, None)
            if worker is not None and worker.exit_code() is None:
                _signal_group(worker.pid, signal.SIGKILL)
                if worker.popen is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        worker.popen.wait(timeout=5)
            self._remote.discard(run_id)

    @property
    def watched(self) -> list[int]:
        """Run ids whose worker process is supervised here."""
        with self._lock:
            return sorted(self._workers)
