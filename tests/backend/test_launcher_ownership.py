"""Several launchers (dashboards) on one database: each starts and supervises only its own runs.

Runs on SQLite and PostgreSQL (tests/conftest.py). The launchers are real, in this process, with
worker commands that only sleep (the run's ownership is decided before any worker trains).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from marginscope.backend.launcher import Launcher
from marginscope.backend.settings import Settings
from marginscope.backend.store import RunStatus
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore


def _sleeper(run_id: int, resume: bool) -> Sequence[str]:
    # `marginscope.backend.worker <id> ` on its command line, like a real worker; it never starts the run
    return [sys.executable, "-c", "import time; time.sleep(30)", "marginscope.backend.worker", str(run_id), ""]


def _launcher(store: SqlAlchemyStore, settings: Settings, port: int) -> Launcher:
    return Launcher(store, settings.model_copy(update={"port": port}), command=_sleeper)


def test_one_claim_wins_and_a_resume_takes_the_run_over(store: SqlAlchemyStore) -> None:
    run = store.create_run(name=None, config={"dataset": "digits"})
    assert store.next_queued(5, launcher="a:1")[0].id == run.id  # unclaimed: anyone may start it
    assert store.claim_queued(run.id, "a:1") and store.claim_queued(run.id, "a:1")
    assert not store.claim_queued(run.id, "b:2")
    assert store.next_queued(5, launcher="b:2") == [] and store.get_run(run.id).launcher == "a:1"
    assert store.claim_queued(run.id, "b:2", take=True) and store.get_run(run.id).launcher == "b:2"
    store.set_status(run.id, RunStatus.CANCELLED)
    assert not store.claim_queued(run.id, "b:2", take=True)  # only queued runs are claimed


def test_a_launcher_starts_its_own_runs_only(store: SqlAlchemyStore, settings: Settings) -> None:
    a, b = _launcher(store, settings, 8001), _launcher(store, settings, 8002)
    of_a = store.create_run(name="of-a", config={"dataset": "digits"}, launcher=a.name)
    unclaimed = store.create_run(name="anyone", config={"dataset": "digits"})
    try:
        b.tick()
        assert b.watched == [unclaimed.id]  # B claimed the unclaimed run, never A's
        assert store.get_run(unclaimed.id).launcher == b.name
        a.tick()
        assert a.watched == [of_a.id]
    finally:
        for launcher, run_id in ((a, of_a.id), (b, unclaimed.id)):
            launcher.delete(run_id)  # kills the sleeping worker


def test_another_launchers_running_run_is_watched_not_reattached(store: SqlAlchemyStore,
                                                                 settings: Settings) -> None:
    a, b = _launcher(store, settings, 8001), _launcher(store, settings, 8002)
    run = store.create_run(name=None, config={"dataset": "digits"}, launcher=a.name)
    # running on this host under a pid that is alive (this test's): only A may judge that pid
    store.set_status(run.id, RunStatus.RUNNING, pid=os.getpid(), host=os.uname().nodename)
    assert b.reconcile() == {"reattached": [], "crashed": [], "watching": [run.id]}
    assert store.get_run(run.id).status == RunStatus.RUNNING
    assert a.reconcile()["crashed"] == [run.id]  # A knows it is no worker of its own: gone
