"""The launcher's queue and supervisor with real child processes.

The real worker is exercised end to end in test_e2e.py; here small stand-in processes (named
`marginscope.backend.worker <id>` on their command line, like the real one) make each supervision case quick
and deterministic: queue order and the concurrency limit, cancel (queued, just spawned, SIGTERM,
SIGKILL after the grace period), a worker dying without a status (before or after it started its
run), two workers of one run, and start-up reconciliation. Like the real worker, a stand-in marks
its run running itself, with its pid, and only from queued (`STARTS`); the launcher never does.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from marginscope.backend.recording import write_events
from marginscope.backend.launcher import HOST, Launcher, pid_alive
from marginscope.backend.settings import Settings
from marginscope.backend.store import Conflict, Run, RunStatus
from marginscope.backend.store.db import sqlite_path
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore

# what record_run does first: running with this pid and host, only from queued (the store from
# the MARGINSCOPE_* variables the launcher hands its workers; the run id from the command line)
STARTS = ("import os, socket, sys\n"
          "from marginscope.backend.settings import Settings\n"
          "from marginscope.backend.store import open_store\n"
          "open_store(Settings()).set_status(int(sys.argv[-1]), 'running', pid=os.getpid(),\n"
          "                                  host=socket.gethostname(), expect=('queued',))\n")
SLEEP = STARTS + "import time; time.sleep(60)"
IGNORE_TERM = ("import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + STARTS
               + "import time; time.sleep(60)")
DIE_LOUDLY = "print('something went wrong'); raise SystemExit(3)"
IDLE = "import time; time.sleep(60)"  # touches no store: a worker still starting, or any process


def make_run(store: SqlAlchemyStore) -> Run:
    return store.create_run(name=None, config={"dataset": "digits", "steps": 10})


def fake(code: str) -> Callable[[int, bool], Sequence[str]]:
    return lambda run_id, resume: [sys.executable, "-c", code, "marginscope.backend.worker", str(run_id)]


@pytest.fixture
def launchers(store: SqlAlchemyStore, settings: Settings) -> Iterator[list[Launcher]]:
    made: list[Launcher] = []
    yield made
    for launcher in made:  # leave no process behind
        for worker in launcher._workers.values():
            if worker.popen is not None:
                worker.popen.kill()
                worker.popen.wait()


def make(launchers: list[Launcher], store: SqlAlchemyStore, settings: Settings, code: str = SLEEP,
         **kw: float) -> Launcher:
    launcher = Launcher(store, settings, command=fake(code), **kw)
    launchers.append(launcher)
    return launcher


def wait_until(check: Callable[[], bool], launcher: Launcher, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        launcher.tick()
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_cancel_a_queued_run_starts_nothing(store: SqlAlchemyStore, settings: Settings,
                                            launchers: list[Launcher]) -> None:
    launcher = make(launchers, store, settings)
    run = make_run(store)
    assert launcher.cancel(run.id).status == RunStatus.CANCELLED
    launcher.tick()
    assert launcher.watched == [] and store.get_run(run.id).status == RunStatus.CANCELLED


def test_fifo_with_the_concurrency_limit(store: SqlAlchemyStore, settings: Settings,
                                         launchers: list[Launcher]) -> None:
    launcher = make(launchers, store, settings, grace_period=5)
    a, b, c = (make_run(store) for _ in range(3))
    launcher.tick()
    assert launcher.watched == [a.id]
    assert (Path(store.run_dir(a.id)) / "worker.log").exists()
    for _ in range(3):  # a's worker is starting: it holds the one place, and is not spawned twice
        launcher.tick()
        assert launcher.watched == [a.id]
    wait_until(lambda: store.get_run(a.id).status == RunStatus.RUNNING, launcher)
    started = store.get_run(a.id)
    assert started.pid == launcher._workers[a.id].pid and started.host == HOST  # written by the worker
    assert [store.get_run(r.id).status for r in (b, c)] == ["queued", "queued"]
    launcher.cancel(a.id)  # SIGTERM ends the sleeper
    wait_until(lambda: store.get_run(a.id).status == RunStatus.CANCELLED, launcher)
    wait_until(lambda: launcher.watched == [b.id], launcher)
    assert store.get_run(c.id).status == RunStatus.QUEUED


def test_a_starting_worker_holds_its_place_whatever_the_queue_order(
        store: SqlAlchemyStore, settings: Settings, launchers: list[Launcher]) -> None:
    """Older runs queued again (resumed) while a newer run's worker is still starting must not
    push that worker out of the count: one place, one worker."""
    launcher = make(launchers, store, settings, IDLE)  # max_concurrent_runs = 1
    older = [make_run(store) for _ in range(2)]
    for run in older:
        store.set_status(run.id, "cancelled")
    newer = make_run(store)
    launcher.tick()
    assert launcher.watched == [newer.id]  # starting: its run is still queued
    for run in older:
        store.set_status(run.id, "queued")  # resumed: they come first in the queue (lower ids)
    for _ in range(3):
        launcher.tick()
        assert launcher.watched == [newer.id]


def test_a_worker_that_left_a_run_queued_again_does_not_crash_it(
        store: SqlAlchemyStore, settings: Settings, launchers: list[Launcher]) -> None:
    """Exit 0 before starting means the worker found its run no longer queued (cancelled) and left;
    if the run is queued again by then (a quick resume), it is simply started again."""
    launcher = make(launchers, store, settings, "raise SystemExit(0)")
    run = make_run(store)
    launcher.tick()
    worker = launcher._workers[run.id]
    assert worker.popen is not None and worker.popen.wait(timeout=30) == 0
    launcher.tick()  # reaps the exit with the run still queued
    assert store.get_run(run.id).status == RunStatus.QUEUED
    assert not store.get_run(run.id).error


def test_cancel_of_a_just_spawned_run(store: SqlAlchemyStore, settings: Settings,
                                      launchers: list[Launcher]) -> None:
    """The worker exists but has not started the run: the run is cancelled at once, and a worker
    that then tries to start it cannot."""
    launcher = make(launchers, store, settings, IDLE)
    run = make_run(store)
    launcher.tick()
    assert launcher.watched == [run.id] and store.get_run(run.id).status == RunStatus.QUEUED
    assert launcher.cancel(run.id).status == RunStatus.CANCELLED
    with pytest.raises(Conflict):  # what record_run does when the worker gets there
        store.set_status(run.id, "running", pid=launcher._workers[run.id].pid, expect=("queued",))
    launcher._workers[run.id].popen.kill()  # type: ignore[union-attr]
    wait_until(lambda: launcher.watched == [], launcher)
    assert store.get_run(run.id).status == RunStatus.CANCELLED  # the exit changes nothing


def test_cancel_while_the_worker_starts_the_run_signals_it(store: SqlAlchemyStore, settings: Settings,
                                                           launchers: list[Launcher]) -> None:
    launcher = make(launchers, store, settings, IDLE)
    run = make_run(store)
    launcher.tick()
    pid = launcher._workers[run.id].pid
    real_get_run = store.get_run

    def get_run_then_start(run_id: int) -> Run:  # the worker marks it running right after the read
        seen = real_get_run(run_id)
        if seen.status == RunStatus.QUEUED:
            store.set_status(run_id, "running", pid=pid, host=HOST, expect=("queued",))
        return seen

    store.get_run = get_run_then_start  # type: ignore[method-assign]
    try:
        assert launcher.cancel(run.id).status == RunStatus.RUNNING  # not a 409: SIGTERM was sent
    finally:
        store.get_run = real_get_run  # type: ignore[method-assign]
    wait_until(lambda: store.get_run(run.id).status == RunStatus.CANCELLED, launcher)
    assert "SIGTERM" in " ".join(line.message for line in store.get_logs(run.id))


def test_sigkill_after_the_grace_period(store: SqlAlchemyStore, settings: Settings,
                                        launchers: list[Launcher]) -> None:
    launcher = make(launchers, store, settings, IGNORE_TERM, grace_period=0.5)
    run = make_run(store)
    wait_until(lambda: store.get_run(run.id).status == RunStatus.RUNNING, launcher)  # SIG_IGN set first
    assert launcher.cancel(run.id).status == RunStatus.RUNNING
    launcher.tick()
    assert store.get_run(run.id).status == RunStatus.RUNNING  # ignored SIGTERM, still in grace
    wait_until(lambda: store.get_run(run.id).status == RunStatus.CANCELLED, launcher)
    assert any("killed after the grace period" in line.message for line in store.get_logs(run.id))


@pytest.mark.parametrize("started", [False, True])
def test_a_worker_dying_without_a_status_is_crashed(store: SqlAlchemyStore, settings: Settings,
                                                    launchers: list[Launcher], started: bool) -> None:
    """Before it started its run (which would otherwise stay queued and be spawned again and
    again) or after."""
    launcher = make(launchers, store, settings, (STARTS if started else "") + DIE_LOUDLY)
    run = make_run(store)
    wait_until(lambda: store.get_run(run.id).status == RunStatus.CRASHED, launcher)
    crashed = store.get_run(run.id)
    assert "code 3" in (crashed.error or "")
    assert ("before starting the run" in (crashed.error or "")) is not started
    assert "something went wrong" in (crashed.traceback or "")  # the tail of worker.log
    launcher.tick()
    assert launcher.watched == []  # not spawned again


@pytest.mark.parametrize("first", ["worker", "in-process recorder"])
def test_a_second_worker_of_a_run_leaves_it_to_the_first(store: SqlAlchemyStore, settings: Settings,
                                                         launchers: list[Launcher], first: str) -> None:
    """The run is started first by a worker spawned before a restart, or by a benchmark recording
    it in its own process (here: this test); ours finds it running and exits. The launcher then
    supervises the first (its process, or its heartbeat) instead of calling the run crashed."""
    run = make_run(store)
    holder = None
    if first == "worker":
        holder = subprocess.Popen(fake(SLEEP)(run.id, False), start_new_session=True,
                                  env={**os.environ, "MARGINSCOPE_DB_URL": settings.db_url,
                                       "MARGINSCOPE_DATA_DIR": str(settings.data_dir)})
    else:
        store.set_status(run.id, "running", pid=os.getpid(), host=HOST, expect=("queued",))
    try:
        deadline = time.monotonic() + 30
        while store.get_run(run.id).status != RunStatus.RUNNING:
            assert time.monotonic() < deadline and holder is not None and holder.poll() is None
            time.sleep(0.05)
        launcher = make(launchers, store, settings, STARTS)  # the mark fails: the run is running
        launcher._spawn(store.get_run(run.id))  # as a scheduler that read it queued would
        spawned = launcher._workers[run.id]
        wait_until(lambda: run.id not in launcher._workers or launcher._workers[run.id] is not spawned,
                   launcher)
        if holder is not None:
            assert launcher.watched == [run.id] and launcher._workers[run.id].pid == holder.pid
        else:
            assert launcher.watched == [] and launcher._remote == {run.id}  # its heartbeat is watched
        launcher.tick()
        assert store.get_run(run.id).status == RunStatus.RUNNING
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()


def test_reconcile(store: SqlAlchemyStore, settings: Settings, launchers: list[Launcher]) -> None:
    r_alive, r_dead, r_remote, r_stale = (make_run(store) for _ in range(4))
    alive = subprocess.Popen(fake(IDLE)(r_alive.id, False), start_new_session=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        store.set_status(r_alive.id, RunStatus.RUNNING, pid=alive.pid, host=HOST)
        store.set_status(r_dead.id, RunStatus.RUNNING, pid=dead.pid, host=HOST)
        store.set_status(r_stale.id, RunStatus.RUNNING, pid=123, host="elsewhere")
        time.sleep(0.4)
        store.set_status(r_remote.id, RunStatus.RUNNING, pid=123, host="elsewhere")
        launcher = make(launchers, store, settings.model_copy(update={"stale_after": 0.3}))
        done = launcher.reconcile()
        assert done == {"reattached": [r_alive.id], "crashed": [r_dead.id, r_stale.id],
                        "watching": [r_remote.id]}
        assert store.get_run(r_dead.id).status == RunStatus.CRASHED
        assert "gone" in (store.get_run(r_dead.id).error or "")
        assert store.get_run(r_alive.id).status == RunStatus.RUNNING
        assert launcher.watched == [r_alive.id]
        # the remote run's heartbeat goes stale too; the re-attached worker dies
        alive.kill()
        alive.wait()
        time.sleep(0.4)
        launcher.tick()
        assert store.get_run(r_remote.id).status == RunStatus.CRASHED
        assert store.get_run(r_alive.id).status == RunStatus.CRASHED
    finally:
        alive.kill()
        alive.wait()


def test_pid_alive_checks_the_command_line() -> None:
    proc = subprocess.Popen(fake(IDLE)(0, False))
    try:
        assert pid_alive(proc.pid) and pid_alive(proc.pid, expect="marginscope.backend.worker")
        assert not pid_alive(proc.pid, expect="something else")
    finally:
        proc.kill()
        proc.wait()
    assert not pid_alive(proc.pid)


def test_resume_queues_and_passes_the_flag(store: SqlAlchemyStore, settings: Settings,
                                           launchers: list[Launcher], tmp_path: Path) -> None:
    from store_events import counters

    from marginscope.engine.events import CheckpointSaved

    seen: list[bool] = []

    def command(run_id: int, resume: bool) -> list[str]:
        seen.append(resume)
        return fake(SLEEP)(run_id, resume)

    launcher = Launcher(store, settings, command=command)
    launchers.append(launcher)
    run = make_run(store)
    store.set_status(run.id, RunStatus.RUNNING, pid=4242, host=HOST)
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"x")
    write_events(store, run.id, [CheckpointSaved(counters=counters(5), path=str(ckpt))])
    store.set_status(run.id, RunStatus.CRASHED, error="boom")
    queued = launcher.resume(run.id)
    assert queued.status == RunStatus.QUEUED and queued.pid is None  # the crashed attempt's pid is gone
    launcher.tick()
    assert seen == [True] and launcher.watched == [run.id]
    wait_until(lambda: store.get_run(run.id).status == RunStatus.RUNNING, launcher)
    assert store.get_run(run.id).pid == launcher._workers[run.id].pid  # the pid of this attempt


def test_an_end_the_store_cannot_write_is_retried_and_the_queue_moves_on(
        store: SqlAlchemyStore, settings: Settings, launchers: list[Launcher]) -> None:
    """Another process holds SQLite's write lock (as a full disk, it refuses every write) while one
    worker is killed and another ignores its cancel: the rounds go on (the cancel is still
    escalated to SIGKILL), the dead worker stays supervised, and once the store can be written
    both ends are recorded and the queued run starts. A real lock on a real file; the launcher's
    store waits 0.1 s for it instead of 30 s."""
    path = sqlite_path(settings.db_url)
    if path is None:
        pytest.skip("SQLite's write lock")
    impatient = SqlAlchemyStore(settings.db_url, data_dir=settings.data_dir, connect_args={"timeout": 0.1})
    a, c, b = (make_run(store) for _ in range(3))
    code = {a.id: SLEEP, c.id: IGNORE_TERM, b.id: SLEEP}
    launcher = Launcher(impatient, settings.model_copy(update={"max_concurrent_runs": 2}), grace_period=0.5,
                        command=lambda run_id, resume: fake(code[run_id])(run_id, resume))
    launchers.append(launcher)
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        wait_until(lambda: {store.get_run(r.id).status for r in (a, c)} == {RunStatus.RUNNING}, launcher)
        launcher.cancel(c.id)  # SIGTERM, ignored
        locker.execute("BEGIN IMMEDIATE")
        killed = launcher._workers[a.id].popen
        assert killed is not None
        killed.kill()
        killed.wait()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            launcher.tick()  # the writes fail: logged, never raised
            time.sleep(0.05)
        assert store.get_run(a.id).status == RunStatus.RUNNING  # nothing could be written
        assert a.id in launcher.watched  # still supervised
        assert launcher._workers[c.id].popen.poll() == -9  # type: ignore[union-attr]  # escalated
        assert store.get_run(b.id).status == RunStatus.QUEUED
    finally:
        locker.rollback()
        locker.close()
    wait_until(lambda: store.get_run(b.id).status == RunStatus.RUNNING, launcher)
    assert store.get_run(a.id).status == RunStatus.CRASHED
    assert "signal 9" in (store.get_run(a.id).error or "")
    assert store.get_run(c.id).status == RunStatus.CANCELLED
    assert launcher.watched == [b.id]
    impatient.close()


def test_a_run_folder_that_cannot_be_created_fails_the_run(store: SqlAlchemyStore, settings: Settings,
                                                           launchers: list[Launcher]) -> None:
    """`runs` is a regular file (this bites as root too): the run fails naming the folder and the
    cause, and the next round goes on to the next queued run instead of failing on the first forever."""
    settings.runs_dir.parent.mkdir(parents=True, exist_ok=True)
    settings.runs_dir.write_text("not a folder")
    launcher = make(launchers, store, settings)
    first, second = make_run(store), make_run(store)
    launcher.tick()
    assert store.get_run(first.id).status == RunStatus.FAILED
    launcher.tick()
    for run in (first, second):
        failed = store.get_run(run.id)
        assert failed.status == RunStatus.FAILED
        assert failed.error == f"cannot create the run folder {store.run_dir(run.id)}: not a directory"
    assert launcher.watched == []
