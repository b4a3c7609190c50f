"""Supervision of a real worker process that freezes: a stale heartbeat on this host is a crash.

A real dashboard (uvicorn on loopback in this process) runs its launcher, which spawns the real
worker (`python -m marginscope.backend.worker`) on a long digits run; the worker beats through the
dashboard's ingest API. The worker is stopped with SIGSTOP once it
trains: with `stale_after` = 3 s the launcher must SIGKILL its process group (so it can never
write again) and mark the run crashed. The time from SIGSTOP to "crashed" is printed (run with
-s to see it); it is bounded by the test, never asserted as a speed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

from ingest_server import ThreadServer

from marginscope.backend.launcher import pid_alive
from marginscope.backend.settings import Settings
from marginscope.backend.store import Run, RunStatus
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore

MakeRun = Callable[..., Run]
STALE_AFTER = 3.0


def _wait_for(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_a_frozen_worker_is_killed_and_marked_crashed(settings: Settings, store: SqlAlchemyStore,
                                                      make_run: MakeRun) -> None:
    fast = settings.model_copy(update={"heartbeat_interval": 0.2, "stale_after": STALE_AFTER})
    run = make_run(steps=100_000, eval_every=50, hist_every=10)
    server = ThreadServer(fast).__enter__()
    launcher = server.launcher
    pid = None
    try:
        _wait_for(lambda: run.id in launcher.watched, 10)
        pid = launcher._workers[run.id].pid
        _wait_for(lambda: store.get_run(run.id).step > 0, 180)  # it trains (and beats)
        os.killpg(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        _wait_for(lambda: store.get_run(run.id).status == RunStatus.CRASHED, 30)
        took = time.monotonic() - stopped
        print(f"\nSIGSTOP -> crashed in {took:.2f} s (stale_after {STALE_AFTER:g} s, heartbeat "
              f"{fast.heartbeat_interval:g} s, poll {launcher.poll_interval:g} s)")
        crashed = store.get_run(run.id)
        assert f"worker {pid} frozen: no heartbeat for" in (crashed.error or "")
        assert "SIGKILL" in (crashed.error or "")
        _wait_for(lambda: not pid_alive(pid), 5)  # killed, not left stopped
        assert run.id not in launcher.watched
        seq = crashed.last_seq
        time.sleep(1.0)
        assert store.get_run(run.id).last_seq == seq  # nothing written after the crash
    finally:
        server.__exit__()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            worker = launcher._workers.get(run.id)
            if worker is not None and worker.popen is not None:
                worker.popen.wait(timeout=10)
