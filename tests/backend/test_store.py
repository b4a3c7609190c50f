"""SqlAlchemyStore on a temporary SQLite file: runs CRUD and filters, writing (entity batches, and
engine events through marginscope.backend.recording), seq, reads; and that the store knows no engine."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from store_events import (
    EDGES,
    evaluation,
    full_run,
    histogram,
    run_started,
    selection,
    step_metrics,
)

from marginscope.backend.recording import write_events
from marginscope.backend.store import (
    Conflict,
    HistogramPoint,
    InvalidArgument,
    LogEntry,
    MetricPoint,
    Position,
    Run,
    RunBatch,
    RunNotFound,
    RunStatus,
    RunUpdate,
)
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore

MakeRun = Callable[..., Run]


# --------------------------------------------------------------------------- runs

def test_create_run_is_queued_with_denormalised_fields(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run(tags=("a", "b", "a"), model="resnet20")
    assert run.status == RunStatus.QUEUED
    assert run.name == f"run-{run.id}"
    assert (run.dataset, run.model, run.selector, run.candidates, run.batch_size) == \
        ("digits", "resnet20", "mms", 64, 16)
    assert run.tags == ["a", "b"]
    assert run.created_at.tzinfo is not None
    assert store.get_run(run.id).config["steps"] == 30


def test_get_unknown_run_raises(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    with pytest.raises(RunNotFound):
        store.get_run(999)
    with pytest.raises(RunNotFound):
        write_events(store, 999, [step_metrics(1)])


def test_list_filters_sort_and_paginate(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    a = make_run("a", tags=("x",), selector="uniform")
    b = make_run("b", tags=("x", "y"), dataset="mnist")
    c = make_run("c")
    store.set_status(c.id, "running")
    runs, count = store.list_runs()
    assert count == 3 and [r.id for r in runs] == [c.id, b.id, a.id]  # newest first
    assert [r.id for r in store.list_runs(tag="x")[0]] == [b.id, a.id]
    assert [r.id for r in store.list_runs(tag="y")[0]] == [b.id]
    assert [r.id for r in store.list_runs(selector="uniform")[0]] == [a.id]
    assert [r.id for r in store.list_runs(dataset="mnist")[0]] == [b.id]
    assert [r.id for r in store.list_runs(status="running")[0]] == [c.id]
    assert store.list_runs(status="queued,running")[1] == 3
    assert [r.name for r in store.list_runs(sort="name")[0]] == ["a", "b", "c"]
    page, count = store.list_runs(sort="id", limit=1, offset=1)
    assert count == 3 and [r.id for r in page] == [b.id]
    with pytest.raises(InvalidArgument):
        store.list_runs(sort="password")
    with pytest.raises(InvalidArgument):
        store.list_runs(status="sleeping")


def test_update_run_changes_only_given_fields(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run("first", tags=("a",))
    updated = store.update_run(run.id, notes="n")
    assert (updated.name, updated.tags, updated.notes) == ("first", ["a"], "n")
    updated = store.update_run(run.id, name="second", tags=["b", "c"])
    assert (updated.name, updated.tags, updated.notes) == ("second", ["b", "c"], "n")
    with pytest.raises(RunNotFound):
        store.update_run(999, name="x")


def test_delete_removes_rows_and_files_but_not_while_running(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    keep = make_run()
    write_events(store, run.id, full_run())
    write_events(store, keep.id, full_run())
    folder = Path(store.run_dir(run.id))
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"x")
    store.set_status(run.id, "running")
    with pytest.raises(Conflict):
        store.delete_run(run.id)
    store.set_status(run.id, "cancelled")
    store.delete_run(run.id)
    assert not folder.exists()
    with pytest.raises(RunNotFound):
        store.get_run(run.id)
    assert store.list_runs()[1] == 1
    assert store.get_series(keep.id, ["train/loss"])["train/loss"].y  # the other run is intact


def test_set_status_stamps_times_and_checks_expected(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    assert run.started_at is None and run.finished_at is None
    running = store.set_status(run.id, "running", pid=123, host="box")
    assert (running.pid, running.host) == (123, "box")
    assert running.started_at is not None and running.heartbeat_at is not None
    failed = store.set_status(run.id, "failed", error="boom", traceback="tb")
    assert failed.finished_at is not None and (failed.error, failed.traceback) == ("boom", "tb")
    with pytest.raises(Conflict):
        store.set_status(run.id, "running", expect=("queued",))
    assert store.get_run(run.id).status == RunStatus.FAILED
    requeued = store.set_status(run.id, "queued")
    assert requeued.error is None and requeued.finished_at is None and requeued.pid is None
    again = store.set_status(run.id, "running")
    assert again.started_at == running.started_at  # a resume keeps the first start
    with pytest.raises(InvalidArgument):
        store.set_status(run.id, "sleeping")


def test_heartbeat_and_next_queued(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    a, b, c = make_run(), make_run(), make_run()
    store.set_status(a.id, "running")
    before = store.get_run(a.id).heartbeat_at
    store.heartbeat(a.id)
    assert store.get_run(a.id).heartbeat_at > before
    assert [r.id for r in store.next_queued(5)] == [b.id, c.id]
    assert [r.id for r in store.next_queued(1)] == [b.id]


def test_runs_changed_since(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    a, b = make_run(), make_run()
    mark = store.get_run(b.id).status_changed_at
    store.set_status(a.id, "running")
    changed = store.runs_changed_since(mark)
    assert [r.id for r in changed] == [b.id, a.id]  # b at the mark itself, then a
    assert [r.id for r in store.runs_changed_since(store.get_run(a.id).status_changed_at)] == [a.id]


# --------------------------------------------------------------------------- the store alone

def test_the_store_imports_nothing_from_the_engine() -> None:
    """Every module of marginscope.backend.store imports with `engine` made unimportable."""
    code = ("import pkgutil, sys; sys.modules['marginscope.engine'] = None; import marginscope.backend.store as pkg; "
            "[__import__(f'marginscope.backend.store.{m.name}') for m in pkgutil.iter_modules(pkg.__path__)]; "
            "print(sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], check=False)
    assert done.returncode == 0, done.stderr
    assert "sqlalchemy_store" in done.stdout and "abstract_store" in done.stdout


def test_the_store_speaks_the_engines_vocabulary() -> None:
    """The store's schema lists axes, populations and quantiles itself (it may not import the
    engine); they must be the engine's."""
    from marginscope.backend.store import X_AXES
    from marginscope.backend.store.dbmodels import QUANTILE_KEYS as STORED_QUANTILES
    from marginscope.backend.store.sqlalchemy_store import POPULATIONS as STORED_POPULATIONS
    from marginscope.engine.events import COUNTER_KEYS, POPULATIONS, QUANTILE_KEYS

    assert X_AXES == COUNTER_KEYS
    assert STORED_POPULATIONS == POPULATIONS
    assert STORED_QUANTILES == QUANTILE_KEYS


def test_log_batch_keeps_rows_in_order_and_moves_the_run_forward(store: SqlAlchemyStore,
                                                                    make_run: MakeRun) -> None:
    run = make_run()
    at = Position(step=7, epoch=0.7, samples_forwarded=70, samples_backpropagated=14, wall_time=1.5)
    before = store.last_seq(run.id)
    last = store.log_batch(run.id, RunBatch(
        rows=[MetricPoint("a", 1.0, at), LogEntry("warning", "w\x00", 7), MetricPoint("a", math.inf, at),
              HistogramPoint("selected", at, [1, 2], {"p50": 0.5}, 0.4, 3, None)],
        edges={"selected": [0.0, 1.0, 2.0]},
        update=RunUpdate(total_steps=10, run_info={"per_class_accuracy": {"val": [0.5]}}, progress=at)))
    assert last == before + 4 == store.last_seq(run.id)
    changes = store.changes_since(run.id, before)
    assert [r.seq for r in changes.scalars] == [before + 1, before + 3]
    assert [(r.seq, r.message) for r in changes.logs] == [(before + 2, "w\ufffd")]
    assert math.isnan(changes.scalars[1].value) and changes.histograms[0].seq == before + 4
    store.log_batch(run.id, RunBatch(  # progress never goes back; run_info accumulates per split
        update=RunUpdate(run_info={"per_class_accuracy": {"test": [0.6]}},
                         progress=Position(3, 0.3, 30, 6, 0.5))))
    got = store.get_run(run.id)
    assert (got.step, got.epoch, got.total_steps) == (7, 0.7, 10)
    assert got.run_info["per_class_accuracy"] == {"val": [0.5], "test": [0.6]}
    assert got.latest["samples_forwarded"] == 70 and store.get_edges(run.id) == {"selected": [0.0, 1.0, 2.0]}
    assert store.log_batch(run.id, RunBatch()) == store.last_seq(run.id)  # nothing to write
    with pytest.raises(InvalidArgument):
        store.log_batch(run.id, RunBatch(rows=[LogEntry("shout", "x")]))
    with pytest.raises(RunNotFound):
        store.log_batch(999, RunBatch(rows=[MetricPoint("a", 1.0, at)]))


# --------------------------------------------------------------------------- writing engine events

def test_every_kind_of_event_is_recorded(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    write_events(store, run.id, full_run())
    got = store.get_run(run.id)
    assert (got.step, got.total_steps, got.epoch) == (30, 30, 3.0)
    assert got.checkpoint_path == "/tmp/ckpt-30.pt" and got.checkpoint_step == 30
    assert got.summary == {"best": 0.7}
    assert got.class_names == [str(i) for i in range(10)]
    assert got.run_info["per_class_accuracy"]["test"] == [0.65] * 10
    latest = got.latest
    assert latest["val/accuracy"] == 0.6 and latest["val/best_accuracy"] == 0.7
    assert latest["test/accuracy"] == 0.65
    assert latest["train/loss"] == pytest.approx(1 / 30)
    assert latest["samples_backpropagated"] == 480 and latest["wall_time"] == pytest.approx(3.0)
    assert latest["mms/threshold"] == 0.2 and latest["mms/selected/p50"] == 0.3
    assert latest["selection/misclassified_share"] == 0.25
    for key in ("lr", "samples_per_s", "score_time", "step_time", "train/accuracy", "val/loss",
                "mms/candidates/p5", "mms/candidates/p95", "mms/candidates/mean"):
        assert key in latest, key
    assert "wall_time" not in store.metric_keys(run.id)
    series = store.get_series(run.id, ["val/best_accuracy"], x="samples_backpropagated")
    assert series["val/best_accuracy"].y == [0.5, 0.7, 0.7]  # running max
    assert series["val/best_accuracy"].x == [160, 320, 480]
    messages = [line.message for line in store.get_logs(run.id)]
    assert "hello" in messages and any("checkpoint saved at step 10" in m for m in messages)


def test_best_accuracy_continues_across_batches(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    write_events(store, run.id, [evaluation(10, 0.8)])
    write_events(store, run.id, [evaluation(20, 0.6)])
    assert store.get_series(run.id, ["val/best_accuracy"])["val/best_accuracy"].y == [0.8, 0.8]


def test_non_finite_values_are_kept_as_nan(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    write_events(store, run.id, [step_metrics(1, loss=float("nan")), step_metrics(2, loss=float("inf"))])
    ys = store.get_series(run.id, ["train/loss"])["train/loss"].y
    assert len(ys) == 2 and all(math.isnan(y) for y in ys)
    assert math.isnan(store.latest(run.id)["train/loss"])


def test_seq_strictly_increasing_across_kinds_and_batches(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    write_events(store, run.id, full_run()[:40])
    store.append_log(run.id, "warning", "between")
    write_events(store, run.id, full_run()[40:])
    store.set_status(run.id, "running")
    changes = store.changes_since(run.id, 0, limit=100_000)
    seqs = sorted([r.seq for r in changes.scalars] + [r.seq for r in changes.histograms]
                  + [r.seq for r in changes.selection] + [r.seq for r in changes.logs])
    assert seqs == list(range(1, len(seqs) + 1))  # unique, no gap, all kinds
    assert changes.seq == seqs[-1] == store.last_seq(run.id)
    assert not changes.more


def test_changes_since_pages_exactly(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    write_events(store, run.id, full_run())
    everything = store.changes_since(run.id, 0, limit=100_000)
    total = len(everything.scalars) + len(everything.histograms) + len(everything.selection) \
        + len(everything.logs)
    cursor, seen, pages = 0, [], 0
    while True:
        page = store.changes_since(run.id, cursor, limit=17)
        rows = page.scalars + page.histograms + page.selection + page.logs
        seen += [r.seq for r in rows]
        assert all(r.seq > cursor for r in rows) and page.seq >= cursor
        cursor, pages = page.seq, pages + 1
        if not page.more:
            break
    assert sorted(seen) == list(range(1, total + 1)) and pages > 1
    assert store.changes_since(run.id, cursor).empty
    store.set_status(run.id, "finished")
    status_change = store.changes_since(run.id, cursor)
    assert status_change.run is not None and status_change.run.status == RunStatus.FINISHED
    assert [line.message for line in status_change.logs] == ["run finished at step 30 (was queued)"]


def test_histogram_edges_once_and_stride(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    write_events(store, run.id, [run_started()])
    write_events(store, run.id, [run_started(resumed_from_step=10)])  # a resume re-sends the edges
    write_events(store, run.id, [histogram(s) for s in range(1, 21)] + [histogram(5, "selected", 0.3)])
    assert store.get_edges(run.id) == {"candidates": EDGES, "selected": EDGES}
    h = store.get_histograms(run.id, "candidates", start=3, end=12, stride=4)
    assert h.edges == EDGES and h.steps == [3, 7, 11, 12]  # every 4th, last of the range kept
    assert h.counts[0] == [3, 1, 2, 3] and h.quantiles["p50"] == [0.3] * 4
    assert len(store.get_histograms(run.id, "candidates", max_rows=5).steps) == 5
    sel = store.get_histograms(run.id, "selected")
    assert sel.steps == [5] and sel.thresholds == [0.3]
    latest = store.latest_histograms(run.id)
    assert latest["candidates"].steps == [20] and latest["selected"].steps == [5]
    with pytest.raises(InvalidArgument):
        store.get_histograms(run.id, "everyone")


def test_selection_series(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    write_events(store, run.id, [run_started()] + [selection(s) for s in range(5, 105, 5)])
    sel = store.get_selection(run.id, max_points=4)
    assert sel.steps[0] == 5 and sel.steps[-1] == 100 and len(sel.steps) == 4
    assert sel.candidate_counts[-1] == [100] * 10 and sel.misclassified_share[0] == 0.25
    assert sel.class_names == [str(i) for i in range(10)]


def test_series_downsampled_keeps_first_last_and_extremes(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    events = [step_metrics(s, loss=1.0) for s in range(1, 501)]
    events[199] = step_metrics(200, loss=9.0)  # a spike
    events[299] = step_metrics(300, loss=-3.0)  # a dip
    write_events(store, run.id, events)
    s = store.get_series(run.id, ["train/loss", "nope"], x="wall_time", max_points=20)["train/loss"]
    assert len(s.y) <= 20 and s.step[0] == 1 and s.step[-1] == 500
    assert 9.0 in s.y and -3.0 in s.y
    assert s.x[0] == pytest.approx(0.1)
    assert store.get_series(run.id, ["nope"])["nope"].y == []
    with pytest.raises(InvalidArgument):
        store.get_series(run.id, ["train/loss"], x="height")


def test_time_to_target(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    write_events(store, run.id, full_run(val=(0.5, 0.7, 0.6)))
    hit = store.time_to_target(run.id, "val/accuracy", 0.65)
    assert hit.reached and (hit.step, hit.samples_backpropagated, hit.best) == (20, 320, 0.7)
    miss = store.time_to_target(run.id, "val/accuracy", 0.9)
    assert not miss.reached and miss.step is None and miss.best == 0.7


def test_truncate_after_step_for_resume(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    write_events(store, run.id, full_run(val=(0.5, 0.7, 0.9)))
    deleted = store.truncate_after_step(run.id, 20)
    assert deleted > 0
    got = store.get_run(run.id)
    assert got.step == 20 and got.latest["val/best_accuracy"] == 0.7
    assert got.latest["samples_backpropagated"] == 320
    assert store.get_series(run.id, ["train/loss"])["train/loss"].step[-1] == 20
    assert store.get_histograms(run.id, "candidates").steps[-1] == 20
    write_events(store, run.id, [step_metrics(21)])  # the series continue at the next step
    assert store.get_series(run.id, ["train/loss"])["train/loss"].step[-2:] == [20, 21]


def test_log_levels_and_paging(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    first = store.append_log(run.id, "warning", "w")
    store.append_log(run.id, "error", "e")
    lines = store.get_logs(run.id, after=first)
    assert [(line.level, line.message) for line in lines] == [("error", "e")]
    assert len(store.get_logs(run.id, limit=1)) == 1
    with pytest.raises(InvalidArgument):
        store.append_log(run.id, "shout", "x")
