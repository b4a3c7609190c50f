"""A run launched from the dashboard with nproc=2: the launcher's real worker becomes torchrun
(same pid), rank 0 claims and reports one run to the dashboard, the other rank trains without
reporting; a cancel reaches
every rank and the run ends cancelled with a checkpoint, leaving no process behind.

torchrun's rendezvous store is torch's TCPStore on an ephemeral port (torch offers no bind
address for it); the ranks connect to it, and to each other, over 127.0.0.1. Both tests are
bounded in time and stop what they started.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ingest_server import ThreadServer

from marginscope.backend.launcher import Launcher, pid_alive, worker_marker
from marginscope.backend.settings import Settings
from marginscope.backend.store import Run, RunStatus
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore

MakeRun = Callable[..., Run]
DDP = dict(nproc=2, candidates=64, batch_size=16, device="cpu", threads=1, hist_every=5, log_every=5)

pytestmark = pytest.mark.slow


def _wait_for(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    kids = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
        except (OSError, ValueError):
            continue
        if proc.name.isdigit() and int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            kids.append(int(proc.name))
    return kids


@pytest.fixture
def launcher(store: SqlAlchemyStore, settings: Settings) -> Iterator[Launcher]:
    """A real dashboard's launcher (its workers report to that dashboard)."""
    with ThreadServer(settings.model_copy(update={"heartbeat_interval": 0.5})) as server:
        launcher = server.launcher
        launcher.grace_period = 60.0
        yield launcher
    for agent in _children(os.getpid()):  # never leave a worker or rank of ours behind
        if any(pid_alive(agent, expect=worker_marker(run.id)) for run in store.list_runs(limit=100)[0]):
            for pid in [*_children(agent), agent]:
                os.kill(pid, signal.SIGKILL)


def test_a_two_process_run_is_recorded_as_one(launcher: Launcher, store: SqlAlchemyStore,
                                             make_run: MakeRun) -> None:
    run = make_run(steps=20, eval_every=10, **DDP)
    _wait_for(lambda: store.get_run(run.id).status not in (RunStatus.QUEUED, RunStatus.RUNNING),
              "the run to end", 240)
    done = store.get_run(run.id)
    log = (Path(store.run_dir(run.id)) / "worker.log").read_text()
    assert done.status == RunStatus.FINISHED, (done.error, log[-3000:])
    assert done.step == 20 and done.summary["samples_backpropagated"] == 20 * 16
    assert "trains on 2 processes" in log
    assert any("x 2 processes (DDP)" in line.message for line in store.get_logs(run.id))
    assert len(store.list_runs(limit=10)[0]) == 1
    hist = store.get_histograms(run.id, "candidates")
    assert hist.steps == [5, 10, 15, 20] and all(sum(counts) == 64 for counts in hist.counts)  # B, both ranks
    assert Path(done.checkpoint_path or "").is_file()


def test_cancel_reaches_every_rank_and_ends_with_a_checkpoint(launcher: Launcher, store: SqlAlchemyStore,
                                                              make_run: MakeRun) -> None:
    run = make_run(steps=100_000, eval_every=50, checkpoint_every=10_000, **DDP)
    _wait_for(lambda: store.get_run(run.id).step >= 10, "the run to train", 240)
    running = store.get_run(run.id)
    agent = launcher._workers[run.id].pid
    assert running.pid == agent  # the run names the process the launcher supervises
    ranks = _children(agent)  # torchrun's ranks, each in its own session
    assert len(ranks) == 2 and all(pid_alive(pid, expect=worker_marker(run.id)) for pid in ranks)
    launcher.cancel(run.id)
    _wait_for(lambda: store.get_run(run.id).status != RunStatus.RUNNING, "the cancel", 90)
    done = store.get_run(run.id)
    assert done.status == RunStatus.CANCELLED, done.error
    assert done.checkpoint_step == done.step and Path(done.checkpoint_path or "").is_file()
    _wait_for(lambda: not any(pid_alive(pid) for pid in [agent, *ranks]), "every process to exit", 60)
