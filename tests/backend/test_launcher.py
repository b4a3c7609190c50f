"""The launcher's queue and supervisor with real child processes.

The real worker is exercised end to end in test_e2e.py; here small stand-in processes (named
`backend.worker <id>` on their command line, like the real one) make each supervision case quick
and deterministic: queue order and the concurrency limit, cancel (queued, SIGTERM, SIGKILL after the
grace period), a worker dying without a status, and start-up reconciliation.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from backend.launcher import HOST, Launcher, pid_alive
from backend.settings import Settings
from backend.store import Run, RunStatus
from backend.store.sqlalchemy_store import SqlAlchemyStore

SLEEP = "import time; time.sleep(60)"
IGNORE_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
DIE_LOUDLY = "print('something went wrong'); raise SystemExit(3)"


def make_run(store: SqlAlchemyStore) -> Run:
    return store.create_run(name=None, config={"dataset": "digits", "steps": 10})


def fake(code: str) -> Callable[[int, bool], Sequence[str]]:
    return lambda run_id, resume: [sys.executable, "-c", code, "backend.worker", str(run_id)]


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
    assert [store.get_run(r.id).status for r in (a, b, c)] == ["running", "queued", "queued"]
    assert (Path(store.run_dir(a.id)) / "worker.log").exists()
    launcher.cancel(a.id)  # SIGTERM ends the sleeper
    wait_until(lambda: store.get_run(a.id).status == RunStatus.CANCELLED, launcher)
    wait_until(lambda: launcher.watched == [b.id], launcher)
    assert store.get_run(c.id).status == RunStatus.QUEUED


def test_sigkill_after_the_grace_period(store: SqlAlchemyStore, settings: Settings,
                                        launchers: list[Launcher]) -> None:
    launcher = make(launchers, store, settings, IGNORE_TERM, grace_period=0.5)
    run = make_run(store)
    launcher.tick()
    time.sleep(0.5)  # let it install its SIGTERM handler
    assert launcher.cancel(run.id).status == RunStatus.RUNNING
    launcher.tick()
    assert store.get_run(run.id).status == RunStatus.RUNNING  # ignored SIGTERM, still in grace
    wait_until(lambda: store.get_run(run.id).status == RunStatus.CANCELLED, launcher)
    assert any("killed after the grace period" in line.message for line in store.get_logs(run.id))


def test_a_worker_dying_without_a_status_is_crashed(store: SqlAlchemyStore, settings: Settings,
                                                    launchers: list[Launcher]) -> None:
    launcher = make(launchers, store, settings, DIE_LOUDLY)
    run = make_run(store)
    wait_until(lambda: store.get_run(run.id).status == RunStatus.CRASHED, launcher)
    crashed = store.get_run(run.id)
    assert "code 3" in (crashed.error or "")
    assert "something went wrong" in (crashed.traceback or "")  # the tail of worker.log


def test_reconcile(store: SqlAlchemyStore, settings: Settings, launchers: list[Launcher]) -> None:
    r_alive, r_dead, r_remote, r_stale = (make_run(store) for _ in range(4))
    alive = subprocess.Popen(fake(SLEEP)(r_alive.id, False), start_new_session=True)
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
    proc = subprocess.Popen(fake(SLEEP)(0, False))
    try:
        assert pid_alive(proc.pid) and pid_alive(proc.pid, expect="backend.worker")
        assert not pid_alive(proc.pid, expect="something else")
    finally:
        proc.kill()
        proc.wait()
    assert not pid_alive(proc.pid)


def test_resume_queues_and_passes_the_flag(store: SqlAlchemyStore, settings: Settings,
                                           launchers: list[Launcher], tmp_path: Path) -> None:
    from store_events import counters

    from engine.events import CheckpointSaved

    seen: list[bool] = []

    def command(run_id: int, resume: bool) -> list[str]:
        seen.append(resume)
        return [sys.executable, "-c", SLEEP, "backend.worker", str(run_id)]

    launcher = Launcher(store, settings, command=command)
    launchers.append(launcher)
    run = make_run(store)
    store.set_status(run.id, RunStatus.RUNNING)
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"x")
    store.write_events(run.id, [CheckpointSaved(counters=counters(5), path=str(ckpt))])
    store.set_status(run.id, RunStatus.CRASHED, error="boom", pid=4242)
    assert launcher.resume(run.id).status == RunStatus.QUEUED
    store.set_status(run.id, RunStatus.QUEUED, pid=4242)  # a pid left from the crashed attempt
    launcher.tick()
    assert seen == [True] and launcher.watched == [run.id]
    # running, but no pid until the worker records its own (the stand-in never does)
    started = store.get_run(run.id)
    assert started.status == RunStatus.RUNNING and started.pid is None
