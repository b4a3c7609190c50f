"""Store behaviour that differs between backends unless the store takes care, and lifecycle markers.

Every test runs on SQLite by default and on PostgreSQL when MARGINSCOPE_TEST_DB_URL points at one
(tests/conftest.py gives each test its own schema), so "the same on both" is what is checked.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import pytest
from store_events import run_started, step_metrics

from marginscope.backend.recording import write_events
from marginscope.backend.store import Conflict, InvalidArgument, Run, RunNotFound, RunStatus
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore
from marginscope.engine.events import Counters, LogMessage, RunFinished

MakeRun = Callable[..., Run]


def log_message(text: str) -> LogMessage:
    return LogMessage(step=0, level="info", message=text)


def test_last_seqs_in_one_call(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    a, b = make_run(), make_run()
    write_events(store, b.id, [step_metrics(1)])
    heads = store.last_seqs([a.id, b.id, 999, 2**40, -1])
    assert heads == {a.id: store.last_seq(a.id), b.id: store.last_seq(b.id)}
    assert heads[b.id] > heads[a.id] >= 1
    assert store.last_seqs([]) == {}


def test_ids_beyond_the_column_range_are_not_found(store: SqlAlchemyStore) -> None:
    for bad in (0, -1, 2**31, 2**63, 10**20):
        with pytest.raises(RunNotFound):
            store.get_run(bad)
        with pytest.raises(RunNotFound):
            store.set_status(bad, "cancelled")
        with pytest.raises(RunNotFound):
            store.heartbeat(bad)


def test_huge_bounds_are_clamped_not_errors(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    write_events(store, run.id, [run_started()] + [step_metrics(s) for s in range(1, 4)])
    assert store.get_logs(run.id, after=10**20) == []
    assert store.changes_since(run.id, 10**20).empty
    assert store.get_histograms(run.id, "candidates", start=10**20).steps == []
    assert store.get_histograms(run.id, "candidates", end=10**20).steps == []
    assert store.list_runs(offset=10**20) == ([], 1)


def test_text_that_a_backend_cannot_keep_is_refused_naming_the_field(store: SqlAlchemyStore,
                                                                        make_run: MakeRun) -> None:
    with pytest.raises(InvalidArgument, match="name"):
        store.create_run(name="a\x00b", config={})
    with pytest.raises(InvalidArgument, match="config.dataset"):
        store.create_run(name=None, config={"dataset": "imagefolder:" + "x" * 400})
    with pytest.raises(InvalidArgument, match="tag"):
        store.create_run(name=None, config={}, tags=["a\x00"])
    run = make_run()
    with pytest.raises(InvalidArgument, match="notes"):
        store.update_run(run.id, notes="\x00")
    assert store.create_run(name="   ", config={}).name.startswith("run-")  # blank = default name


def test_filters_holding_nul_match_nothing(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run(tags=("a",))
    write_events(store, run.id, [step_metrics(1)])
    assert store.list_runs(tag="a\x00") == ([], 0)
    assert store.list_runs(dataset="digits\x00") == ([], 0)
    assert store.get_series(run.id, ["train/loss\x00"])["train/loss\x00"].y == []
    assert not store.time_to_target(run.id, "val/\x00", 0.5).reached


def test_engine_text_with_nul_is_kept_readable(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    write_events(store, run.id, [log_message("bad\x00byte")])
    store.set_status(run.id, "failed", error="Error: \x00", traceback="line\x00")
    got = store.get_run(run.id)
    assert got.error == "Error: \ufffd" and got.traceback == "line\ufffd"
    assert "bad\ufffdbyte" in [line.message for line in store.get_logs(run.id)]


def test_non_finite_json_values_are_stored_as_null(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    counters = Counters(step=3, epoch=0.1, samples_forwarded=30, samples_backpropagated=10,
                        wall_time=1.0)
    write_events(store, run.id, [RunFinished(counters=counters, status="finished",
                                            summary={"best": math.nan, "ok": 0.5, "inf": [math.inf]})])
    assert store.get_run(run.id).summary == {"best": None, "ok": 0.5, "inf": [None]}


def test_a_start_names_its_trainers_pid_once(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    store.set_status(run.id, "running", pid=4242, host="h")
    store.set_status(run.id, "crashed")
    requeued = store.set_status(run.id, "queued")
    assert (requeued.pid, requeued.host) == (None, None)  # no earlier attempt's pid survives
    started = store.set_status(run.id, "running", pid=777, host="h", expect=("queued",))
    assert started.pid == 777
    with pytest.raises(Conflict):  # a second trainer cannot take a running run over
        store.set_status(run.id, "running", pid=778, host="h", expect=("queued",))
    assert store.get_run(run.id).pid == 777
    lines = [line.message for line in store.get_logs(run.id)]
    assert [m for m in lines if "→ running" in m] == ["status queued → running (pid 4242 on h)",
                                                       "status queued → running (pid 777 on h)"]


def test_engine_start_line_is_not_doubled(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    write_events(store, run.id, [run_started(), log_message("started: digits (...)")])
    assert [line.message for line in store.get_logs(run.id)][1:] == ["started: digits (...)"]


def test_truncate_marks_the_resume_for_changes_since(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    write_events(store, run.id, [run_started()] + [step_metrics(s) for s in range(1, 11)])
    cursor = store.last_seq(run.id)
    assert store.get_run(run.id).attempt == 0 and store.get_run(run.id).resumed_at_seq is None
    assert store.truncate_after_step(run.id, 5) > 0
    got = store.get_run(run.id)
    assert got.attempt == 1 and got.resumed_at_seq == got.last_seq > cursor
    changes = store.changes_since(run.id, cursor)
    assert changes.resumed and "resuming from the checkpoint at step 5" in changes.logs[-1].message
    assert not store.changes_since(run.id, changes.seq).resumed
    write_events(store, run.id, [step_metrics(6)])
    assert not store.changes_since(run.id, changes.seq).resumed
    store.truncate_after_step(run.id, 6)
    assert store.get_run(run.id).attempt == 2


def test_changes_since_misses_nothing_while_a_writer_commits(store: SqlAlchemyStore,
                                                             make_run: MakeRun) -> None:
    """Each read sees one snapshot: with a snapshot per SELECT (PostgreSQL's READ COMMITTED) a
    batch committed between the metrics and the logs query would be skipped by the cursor."""
    run = make_run()
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for step in range(1, 121):
                write_events(store, run.id, [step_metrics(step), log_message(f"step {step}")])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    seen: list[int] = []
    cursor = 0
    while True:
        finished = done.is_set()
        page = store.changes_since(run.id, cursor, limit=50)
        seen += [r.seq for r in page.scalars + page.histograms + page.selection + page.logs]
        cursor = page.seq
        if finished and not page.more and page.empty:
            break
    writer.join()
    assert not errors
    every = [r.seq for r in store.changes_since(run.id, 0, limit=100_000).scalars] + \
        [line.seq for line in store.get_logs(run.id, limit=100_000)]
    assert sorted(seen) == sorted(every) and len(seen) == len(set(seen))


def test_statuses_round_trip(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    for status in RunStatus:
        assert store.set_status(run.id, status).status == status
