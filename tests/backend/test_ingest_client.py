"""The engine's remote client against a real dashboard: real digits trainings reported over HTTP
(train_remote, claim, cancel from the dashboard, a dashboard killed and restarted mid-run, an
offline run uploaded by `marginscope sync`, a user's own loop). Every check counts the events
the trainer emitted against the rows the dashboard stored, event by event."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from ingest_server import ThreadServer
from servers import DashboardProcess, free_port

from marginscope.backend.settings import Settings
from marginscope.backend.store.db import upgrade
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore
from marginscope.engine.callbacks import Recorder
from marginscope.engine.config import TrainConfig
from marginscope.engine.events import (
    ClassSelection,
    Evaluation,
    Event,
    Histogram,
    LogMessage,
    RunFinished,
    StepMetrics,
)
from marginscope.engine.remote import remote_run, train_remote

pytestmark = pytest.mark.slow

FAST = {"flush_interval": 0.2, "max_backoff": 0.5, "heartbeat_interval": 0.5}
TINY = TrainConfig(dataset="digits", selector="mms", candidates=32, batch_size=8, steps=12, eval_every=6,
                   hist_every=3, log_every=3, threads=1)


@pytest.fixture
def server(settings: Settings) -> Iterator[ThreadServer]:
    with ThreadServer(settings) as s:
        yield s


def expected_rows(events: list[Event]) -> dict[str, Counter[Any]]:
    """What the dashboard must hold for these events: one row per event and key."""
    out: dict[str, Counter[Any]] = {"scalars": Counter(), "histograms": Counter(), "selection": Counter(),
                                    "logs": Counter()}
    for e in events:
        if isinstance(e, StepMetrics):
            out["scalars"][("train/loss", e.counters.step)] += 1
        elif isinstance(e, Histogram):
            out["histograms"][(e.population, e.counters.step)] += 1
        elif isinstance(e, ClassSelection):
            out["selection"][e.counters.step] += 1
        elif isinstance(e, Evaluation):
            out["scalars"][(f"{e.split}/accuracy", e.counters.step)] += 1
        elif isinstance(e, LogMessage):
            out["logs"][e.message] += 1
    return out


def stored_rows(store: SqlAlchemyStore, run_id: int) -> dict[str, Counter[Any]]:
    keys = ("train/loss", "val/accuracy", "test/accuracy")
    return {
        "scalars": Counter((r.key, r.step) for r in store.get_scalars(run_id, keys=keys)),
        "histograms": Counter((h.population, h.step) for pop in ("candidates", "selected")
                              for h in store.iter_histograms(run_id, pop, until_seq=2**62)),
        "selection": Counter(s.step for s in store.iter_selection(run_id, until_seq=2**62)),
        "logs": Counter(line.message for line in store.get_logs(run_id, limit=100_000)),
    }


def assert_exactly_once(store: SqlAlchemyStore, run_id: int, events: list[Event]) -> None:
    want, got = expected_rows(events), stored_rows(store, run_id)
    for kind in ("scalars", "histograms", "selection"):
        assert got[kind] == want[kind], kind
    for message, n in want["logs"].items():  # the store adds status lines of its own
        assert got["logs"][message] == n, message
    assert store.get_run(run_id).ingest_seq == len(events)


def test_train_remote_streams_every_event_once(server: ThreadServer, settings: Settings,
                                               store: SqlAlchemyStore, tmp_path: Path) -> None:
    recorder = Recorder()
    summary = train_remote(TINY, server=server.url, spool_dir=tmp_path / "spool", callbacks=[recorder],
                           name="remote tiny", reporter_options=FAST)
    run = store.get_run(summary["run_id"])
    assert run.status == "finished" and run.executor == "remote" and run.name == "remote tiny"
    assert run.step == 12 and run.summary["steps"] == 12 and run.run_info["dataset"]["name"] == "digits"
    assert_exactly_once(store, run.id, recorder.events)


def test_claim_trains_a_run_queued_in_the_dashboard(settings: Settings, store: SqlAlchemyStore,
                                                    tmp_path: Path) -> None:
    with ThreadServer(settings, supervise=False) as server:  # nothing but the claim starts it
        rid = httpx.post(f"{server.url}/api/runs", json={"config": TINY.model_dump(mode="json")}).json()["id"]
        summary = train_remote(server=server.url, claim=rid, spool_dir=tmp_path / "spool",
                               reporter_options=FAST)
    run = store.get_run(rid)
    assert summary["run_id"] == rid and run.status == "finished" and run.executor == "remote"
    assert run.step == 12


def test_cancel_from_the_dashboard_stops_with_a_checkpoint(server: ThreadServer, store: SqlAlchemyStore,
                                                           tmp_path: Path) -> None:
    config = TINY.model_copy(update={"steps": 5000, "eval_every": 1000})
    recorder = Recorder()
    done: dict[str, Any] = {}
    trainer = threading.Thread(target=lambda: done.update(train_remote(
        config, server=server.url, spool_dir=tmp_path / "spool", callbacks=[recorder],
        reporter_options=FAST)))
    trainer.start()
    deadline = time.monotonic() + 120
    while not any(isinstance(e, StepMetrics) for e in recorder.events) and time.monotonic() < deadline:
        time.sleep(0.1)
    rid = store.list_runs()[0][0].id
    with httpx.Client(base_url=server.url) as http:
        assert http.post(f"/api/runs/{rid}/cancel").json()["stop_requested"] is True
    trainer.join(120)
    assert not trainer.is_alive()
    run = store.get_run(rid)
    assert done["status"] == "cancelled" and run.status == "cancelled" and run.step < 5000
    assert run.checkpoint_step == run.step and Path(done["checkpoint"]).is_file()
    assert isinstance(recorder.events[-1], RunFinished) and recorder.events[-1].status == "cancelled"
    assert_exactly_once(store, rid, recorder.events)


def test_a_dashboard_killed_and_restarted_mid_run_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "dash"
    data.mkdir()
    upgrade(f"sqlite:///{data / 'marginscope.db'}")
    dashboard = DashboardProcess(data)
    dashboard.start()
    config = TINY.model_copy(update={"steps": 120, "eval_every": 40, "hist_every": 2, "log_every": 1})
    recorder = Recorder()
    done: dict[str, Any] = {}
    trainer = threading.Thread(target=lambda: done.update(train_remote(
        config, server=dashboard.url, spool_dir=tmp_path / "spool", callbacks=[recorder],
        reporter_options=FAST)))
    try:
        trainer.start()
        deadline = time.monotonic() + 120
        while sum(isinstance(e, StepMetrics) for e in recorder.events) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        dashboard.kill()  # SIGKILL: whatever was in flight is lost on the way
        killed_at = sum(isinstance(e, StepMetrics) for e in recorder.events)
        while sum(isinstance(e, StepMetrics) for e in recorder.events) < killed_at + 20 and trainer.is_alive():
            time.sleep(0.05)  # training goes on while the dashboard is down
        dashboard.start()
        trainer.join(180)
        assert not trainer.is_alive()
    finally:
        dashboard.stop()
    store = SqlAlchemyStore(f"sqlite:///{data / 'marginscope.db'}", data_dir=data)
    try:
        run = store.get_run(done["run_id"])
        assert run.status == "finished" and run.step == 120
        assert_exactly_once(store, run.id, recorder.events)
    finally:
        store.close()


def test_sync_uploads_an_offline_run(tmp_path: Path, settings: Settings, store: SqlAlchemyStore) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # no dashboard there
    recorder = Recorder()
    summary = train_remote(TINY, server=nowhere, spool_dir=tmp_path / "spool", callbacks=[recorder],
                           reporter_options={**FAST, "close_timeout": 1.0})
    assert summary["run_id"] is None and summary["status"] == "finished"
    with ThreadServer(settings) as server:
        for _ in range(2):  # a second sync sends nothing twice
            out = subprocess.run([sys.executable, "-m", "marginscope.engine.cli", "sync", summary["spool"], "--server",
                                  server.url], capture_output=True, text=True, timeout=120, check=False)
            assert out.returncode == 0, out.stderr
    runs, count = store.list_runs()
    assert count == 1 and runs[0].status == "finished" and runs[0].executor == "remote"
    assert_exactly_once(store, runs[0].id, recorder.events)
    assert "events sent" in out.stdout


def test_the_train_command_streams_to_a_server(server: ThreadServer, store: SqlAlchemyStore,
                                               tmp_path: Path) -> None:
    env = {"MARGINSCOPE_SERVER": server.url, "MARGINSCOPE_SPOOL_DIR": str(tmp_path / "spool"),
           "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "marginscope.engine.cli", "train", "--dataset", "digits", "--steps", "6",
                          "--candidates", "32", "--batch-size", "8", "--eval-every", "3", "--threads", "1"],
                         capture_output=True, text=True, timeout=300, check=False, env=env)
    assert out.returncode == 0, out.stderr
    runs, _ = store.list_runs()
    assert runs[0].status == "finished" and runs[0].step == 6
    assert f"run {runs[0].id} on {server.url}" in out.stdout


def test_a_users_own_loop(server: ThreadServer, store: SqlAlchemyStore, tmp_path: Path) -> None:
    """A plain PyTorch loop with the engine's selector, watched live through remote_run."""
    from marginscope.engine import create_model, load_dataset, make_selector

    torch.manual_seed(0)
    data = load_dataset("digits", "data", seed=0)
    model = create_model("small-cnn", num_classes=data.num_classes, input_shape=data.input_shape)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    selector = make_selector("mms")
    with remote_run(server.url, {"dataset": "digits", "selector": "mms", "candidates": 32, "batch_size": 8,
                                 "steps": 6}, spool_dir=tmp_path / "spool", name="my loop",
                    dataset={"name": "digits", "class_names": data.class_names},
                    reporter_options=FAST) as run:
        for step in range(1, 7):
            idx = torch.randint(0, len(data.train), (32,))
            x, y = data.batch(data.train, idx, augment=False, generator=None, device=torch.device("cpu"))
            chosen = selector.select(model, x, y, idx, batch_size=8)
            loss = torch.nn.functional.cross_entropy(model(x[chosen.index]), y[chosen.index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            run.advance(step, forwarded=32 + 8, backpropagated=8)
            run.log({"train/loss": loss.item(), "my/lr": 0.05})
            run.histogram(chosen.scores, "candidates", threshold=chosen.threshold)
        run.evaluation(accuracy=0.5, loss=1.2)
    got = store.get_run(run.run_id)
    assert got.status == "finished" and got.name == "my loop" and got.step == 6
    assert [r.step for r in store.get_scalars(got.id, keys=["my/lr"])] == [1, 2, 3, 4, 5, 6]
    assert len(list(store.iter_histograms(got.id, "candidates", until_seq=2**62))) == 6
    assert store.latest(got.id)["val/accuracy"] == 0.5
    assert got.run_info["dataset"]["class_names"] == data.class_names
