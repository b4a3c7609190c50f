"""The worker process end to end on a real (tiny) digits run: finished, failed, cancelled, resumed.

The worker never opens the database: it claims its run from a real dashboard (uvicorn on loopback
in this process, its launcher off so that only the worker starts the run) with the run's own
credential, minted here as the launcher does, and reports every event over HTTP."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingest_server import ThreadServer

from marginscope.backend.security import mint_run_credential
from marginscope.backend.settings import Settings
from marginscope.backend.store import Run, RunNotFound, RunStatus
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore

MakeRun = Callable[..., Run]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def dashboard(settings: Settings) -> Iterator[ThreadServer]:
    with ThreadServer(settings, supervise=False) as server:
        settings.server_url = server.url  # where a trainer reaches this dashboard
        yield server


def _worker(settings: Settings, run_id: int, *extra: str) -> subprocess.Popen[str]:
    """The worker as the launcher starts it: the dashboard's URL and the run's credential in its
    environment, no database."""
    credential, digest = mint_run_credential()
    store = SqlAlchemyStore(settings.db_url, data_dir=settings.data_dir)
    with contextlib.suppress(RunNotFound):
        store.set_credential(run_id, digest)
    store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARGINSCOPE_")}
    env.update({"MARGINSCOPE_HEARTBEAT_INTERVAL": "0.5", "MARGINSCOPE_SERVER_URL": settings.public_url,
                "MARGINSCOPE_RUN_CREDENTIAL": credential, "MARGINSCOPE_DATA_DIR": str(settings.data_dir)})
    return subprocess.Popen(
        [sys.executable, "-m", "marginscope.backend.worker", str(run_id), *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def test_digits_run_ends_finished_with_metrics(settings: Settings, store: SqlAlchemyStore,
                                               make_run: MakeRun) -> None:
    run = make_run()  # digits, mms, B=64, b=16, 30 steps, eval every 10, histograms every 5
    code, out = _finish(_worker(settings, run.id))
    assert code == 0, out
    got = store.get_run(run.id)
    assert got.status == RunStatus.FINISHED, (got.error, out)
    assert got.pid and got.host and got.started_at and got.finished_at and got.heartbeat_at
    assert got.step == 30 and got.total_steps == 30 and got.error is None
    assert got.checkpoint_path == str(settings.data_dir / "runs" / str(run.id) / "checkpoint.pt")
    assert Path(got.checkpoint_path).is_file()
    assert got.summary["steps"] == 30 and got.class_names == [str(i) for i in range(10)]
    latest = got.latest
    for key in ("train/loss", "val/accuracy", "val/best_accuracy", "test/accuracy",
                "mms/candidates/p50", "mms/selected/p50", "selection/misclassified_share"):
        assert key in latest, key
    loss = store.get_series(run.id, ["train/loss"])["train/loss"]
    assert loss.step[-1] == 30 and loss.step == sorted(set(loss.step))
    hist = store.get_histograms(run.id, "candidates")
    assert hist.steps == [5, 10, 15, 20, 25, 30]
    assert len(hist.counts[0]) == len(hist.edges) - 1 == 60
    assert sum(hist.counts[0]) == 64  # every candidate of the step lands in a bin
    assert store.get_selection(run.id).steps[-1] == 30
    lines = [line.message for line in store.get_logs(run.id)]
    # one line per event: the start (worker, engine), the end; no "running → running"
    assert [m for m in lines if m.startswith("status")] == \
        [f"status queued → running (remote: pid {got.pid} on {got.host})"]  # no launcher started it
    assert len([m for m in lines if m.startswith("started")]) == 1
    assert [m for m in lines if m.startswith("run finished")] == ["run finished at step 30 (was running)"]


def test_missing_dataset_ends_failed_with_error_kept(settings: Settings, store: SqlAlchemyStore,
                                                     make_run: MakeRun) -> None:
    run = make_run(dataset="cifar10", model="resnet20")  # no CIFAR in the empty data dir
    code, out = _finish(_worker(settings, run.id))
    assert code == 1, out
    got = store.get_run(run.id)
    assert got.status == RunStatus.FAILED and got.finished_at is not None
    assert got.error and "cifar" in got.error.lower()
    assert got.traceback and "Traceback" in got.traceback
    assert any(line.level == "error" for line in store.get_logs(run.id))


def test_invalid_stored_config_ends_failed(settings: Settings, store: SqlAlchemyStore,
                                           make_run: MakeRun) -> None:
    run = make_run(batch_size=0)
    code, _ = _finish(_worker(settings, run.id))
    got = store.get_run(run.id)
    assert code == 1 and got.status == RunStatus.FAILED and "batch_size" in (got.error or "")


def test_run_cancelled_before_start_is_left_alone(settings: Settings, store: SqlAlchemyStore,
                                                  make_run: MakeRun) -> None:
    run = make_run()
    store.set_status(run.id, "cancelled")
    code, _ = _finish(_worker(settings, run.id))
    assert code == 0 and store.get_run(run.id).status == RunStatus.CANCELLED
    assert store.get_run(run.id).pid is None


@pytest.mark.parametrize(("recorded", "outcome", "final"), [
    ("running", "finished", "finished"),
    ("cancelled", "finished", "finished"),  # trained to the end: the truer account
    ("crashed", "finished", "finished"),  # a stale-heartbeat guess, the worker was alive
    ("cancelled", "cancelled", "cancelled"),  # already said: no second line
    ("crashed", "cancelled", "cancelled"),
    ("cancelled", "failed", "cancelled"),  # the user's cancel stands
    ("crashed", "failed", "failed"),
    ("queued", "finished", "queued"),  # queued again (a resume): a late old worker changes nothing
])
def test_the_workers_end_replaces_only_what_it_should(store: SqlAlchemyStore, make_run: MakeRun,
                                                      recorded: str, outcome: str, final: str) -> None:
    from marginscope.backend.recording import record_end

    run = make_run()
    store.set_status(run.id, "running", pid=1)
    if recorded != "running":
        store.set_status(run.id, recorded)
    before = len(store.get_logs(run.id))
    record_end(store, run.id, RunStatus(outcome), **({"error": "E"} if outcome == "failed" else {}))
    got = store.get_run(run.id)
    assert got.status == final
    assert len(store.get_logs(run.id)) == before + (final != recorded)
    store.delete_run(run.id)
    record_end(store, run.id, RunStatus(outcome))  # deleted meanwhile: logged, not raised


def test_a_run_ended_elsewhere_stops_its_worker(settings: Settings, store: SqlAlchemyStore,
                                                make_run: MakeRun) -> None:
    """A cancel recorded by a process that cannot signal the worker (on another host, say): the
    worker reads it in the dashboard's next answer and stops with a checkpoint."""
    run = make_run(steps=100_000, eval_every=100_000, hist_every=1000)
    proc = _worker(settings, run.id)
    try:
        deadline = time.monotonic() + 120
        while store.get_run(run.id).pid is None:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.05)
        store.set_status(run.id, "cancelled", expect=("running",), message="cancelled elsewhere")
        code, out = _finish(proc, timeout=120)
    finally:
        proc.kill()
    got = store.get_run(run.id)
    assert code == 0 and got.status == RunStatus.CANCELLED, out
    # it stopped with a checkpoint; an ended run takes no more events, so the store names none
    assert (Path(store.run_dir(run.id)) / "checkpoint.pt").is_file()
    assert [m.message for m in store.get_logs(run.id)].count("cancelled elsewhere") == 1


def test_unknown_run_exits_1(settings: Settings, store: SqlAlchemyStore) -> None:
    code, out = _finish(_worker(settings, 4242))
    assert code == 1 and "4242" in out


@pytest.mark.slow
def test_sigterm_cancels_then_resume_continues_the_series(settings: Settings, store: SqlAlchemyStore,
                                                          make_run: MakeRun) -> None:
    run = make_run(steps=200, eval_every=20, hist_every=10, log_every=1)
    proc = _worker(settings, run.id)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        got = store.get_run(run.id)
        if (got.checkpoint_step or 0) >= 40:
            break
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.1)
    beat = store.get_run(run.id).heartbeat_at
    while store.get_run(run.id).heartbeat_at == beat and time.monotonic() < deadline + 5:
        time.sleep(0.05)
    assert store.get_run(run.id).heartbeat_at > beat  # heartbeats while training (every 0.5 s)
    proc.send_signal(signal.SIGTERM)
    code, out = _finish(proc)
    cancelled = store.get_run(run.id)
    assert code == 0 and cancelled.status == RunStatus.CANCELLED, out
    assert 40 <= cancelled.checkpoint_step < 200  # a checkpoint at the step it stopped
    stopped_at = cancelled.checkpoint_step

    store.set_status(run.id, "queued")  # what POST /resume does before spawning the worker
    code, out = _finish(_worker(settings, run.id, "--resume"))
    done = store.get_run(run.id)
    assert code == 0 and done.status == RunStatus.FINISHED, (done.error, out)
    steps = store.get_series(run.id, ["train/loss"], max_points=10_000)["train/loss"].step
    assert steps == list(range(1, 201))  # one clean series: no gap, no duplicate around the resume
    assert done.run_info["resumed_from_step"] == stopped_at
    hist = store.get_histograms(run.id, "candidates", max_rows=1000).steps
    assert hist == list(range(10, 201, 10))


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """`folder` refuses new files: chmod for a user; for root (whom modes do not stop) the
    immutable attribute where the file system and the capabilities allow it, else a skip."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                        capture_output=True).returncode != 0:
        pytest.skip("running as root without `chattr +i`: a read-only folder does not bite")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_read_only_run_folder_fails_naming_it(settings: Settings, store: SqlAlchemyStore,
                                                            make_run: MakeRun) -> None:
    run = make_run()
    run_dir = Path(store.run_dir(run.id))
    run_dir.mkdir(parents=True)
    with _read_only(run_dir):
        code, out = _finish(_worker(settings, run.id))
    assert code == 1, out
    got = store.get_run(run.id)
    assert got.status == RunStatus.FAILED
    cause = "permission denied" if os.geteuid() != 0 else "operation not permitted"
    # the run folder holds the spool before any checkpoint: the failure is found, and reported
    # (unspooled), before training (a checkpoint that cannot be written: tests/engine)
    assert got.error == f"OSError: cannot write in the run folder {run_dir}: {cause}"


def test_a_run_folder_under_a_file_fails_naming_the_folder(settings: Settings, store: SqlAlchemyStore,
                                                           make_run: MakeRun) -> None:
    """The runs folder is a regular file: bites as root too."""
    run = make_run()
    settings.runs_dir.write_text("not a folder")
    code, out = _finish(_worker(settings, run.id))
    assert code == 1, out
    got = store.get_run(run.id)
    assert got.status == RunStatus.FAILED
    assert got.error == f"OSError: cannot create the run folder {store.run_dir(run.id)}: not a directory"
