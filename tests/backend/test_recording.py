"""record_run in this process, on a real store, with hand-made events (the worker's subprocess
runs with real training are in test_worker.py): the start, the heartbeat's stop flag, and the one
rule for the final status."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import pytest
from store_events import counters, full_run, step_metrics

from marginscope.backend.recording import record_run, store_tracker
from marginscope.backend.store import Conflict, Run, RunNotFound, RunStatus
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore
from marginscope.engine.events import RunFinished

MakeRun = Callable[..., Run]


def test_a_recorded_run_runs_then_ends_as_its_events_say(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    with record_run(store, run.id, heartbeat_interval=60) as recorder:
        got = store.get_run(run.id)
        assert got.status == RunStatus.RUNNING
        assert (got.pid, got.host) == (os.getpid(), socket.gethostname())
        assert recorder.run.id == run.id and not recorder.should_stop()
        for event in full_run():
            recorder(event)
    done = store.get_run(run.id)
    assert done.status == RunStatus.FINISHED and done.step == 30 and done.summary == {"best": 0.7}
    assert [line.message for line in store.get_logs(run.id)][-1] == "run finished at step 30 (was running)"


def test_the_runs_model_becomes_the_one_the_engine_built(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    """A config's model "auto" is the engine's choice to make; once it has started, the run names it."""
    run = make_run(model="auto")
    assert store.get_run(run.id).model == "auto"
    with record_run(store, run.id, heartbeat_interval=60) as recorder:
        for event in full_run():  # its RunStarted says the engine built small-cnn
            recorder(event)
    assert store.get_run(run.id).model == "small-cnn"


def test_a_stop_ends_cancelled(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    with record_run(store, run.id, heartbeat_interval=60) as recorder:
        recorder(step_metrics(1))
        recorder.request_stop()
        assert recorder.should_stop()
        recorder(RunFinished(counters=counters(1), status="cancelled"))
    assert store.get_run(run.id).status == RunStatus.CANCELLED


def test_an_exception_ends_failed_with_its_traceback_and_is_raised(store: SqlAlchemyStore,
                                                                   make_run: MakeRun) -> None:
    run = make_run()
    with pytest.raises(ValueError, match="bad data"), record_run(store, run.id, heartbeat_interval=60) as recorder:
        recorder(step_metrics(1))
        raise ValueError("bad data")
    failed = store.get_run(run.id)
    assert failed.status == RunStatus.FAILED and failed.error == "ValueError: bad data"
    assert "Traceback" in (failed.traceback or "") and "bad data" in (failed.traceback or "")
    assert store.get_series(run.id, ["train/loss"])["train/loss"].step == [1]  # what it wrote stays


def test_an_end_without_a_run_finished_event_is_a_failure(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    with pytest.raises(RuntimeError), record_run(store, run.id, heartbeat_interval=60) as recorder:
        recorder(step_metrics(1))
    assert store.get_run(run.id).status == RunStatus.FAILED


def test_only_a_queued_run_is_started(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    store.set_status(run.id, "cancelled")
    with pytest.raises(Conflict), record_run(store, run.id, heartbeat_interval=60):
        pytest.fail("a cancelled run must not start")
    assert store.get_run(run.id).status == RunStatus.CANCELLED and store.get_run(run.id).pid is None
    with pytest.raises(RunNotFound), record_run(store, 999, heartbeat_interval=60):
        pytest.fail("no such run")


def test_the_heartbeat_stops_a_run_ended_elsewhere_and_the_end_stays(store: SqlAlchemyStore,
                                                                      make_run: MakeRun) -> None:
    run = make_run()
    with record_run(store, run.id, heartbeat_interval=0.05) as recorder:
        beat = store.get_run(run.id).heartbeat_at
        store.set_status(run.id, "cancelled", expect=("running",), message="cancelled elsewhere")
        deadline = time.monotonic() + 10
        while not recorder.should_stop():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert store.get_run(run.id).heartbeat_at > beat
        recorder(RunFinished(counters=counters(1), status="cancelled"))
    assert store.get_run(run.id).status == RunStatus.CANCELLED
    assert [line.message for line in store.get_logs(run.id)].count("cancelled elsewhere") == 1


def test_the_benchmark_tracker_creates_and_records_each_training(store: SqlAlchemyStore) -> None:
    track = store_tracker(store, heartbeat_interval=60)
    with track("bench-x uniform seed 0", {"dataset": "digits", "selector": "uniform"},
               ["benchmark", "bench-x", "arm:uniform"]) as callback:
        run = store.list_runs(tag="bench-x")[0][0]
        assert run.status == RunStatus.RUNNING and run.name == "bench-x uniform seed 0"
        for event in full_run():
            callback(event)
    done = store.get_run(run.id)
    assert done.status == RunStatus.FINISHED and done.selector == "uniform"
    assert sorted(done.tags) == ["arm:uniform", "bench-x", "benchmark"]
