"""BatchedWriter (periodic and final flushes, retry) and concurrent writers on one SQLite file."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable

import pytest
from store_events import evaluation, full_run, histogram, selection, step_metrics

from marginscope.backend.recording import BatchedWriter, write_events
from marginscope.backend.settings import Settings
from marginscope.backend.store import Run, RunNotFound
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore

MakeRun = Callable[..., Run]


def test_flushes_periodically_and_on_close(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    writer = BatchedWriter(store, run.id, flush_interval=0.1)
    writer(step_metrics(1))
    deadline = time.monotonic() + 5
    while store.last_seq(run.id) < 7 and time.monotonic() < deadline:  # 6 scalars after "queued"
        time.sleep(0.02)
    assert store.latest(run.id)["train/loss"] == 1.0  # flushed without close()
    writer.write(full_run()[2:])
    last = writer.close()
    assert writer.pending == 0 and last == store.last_seq(run.id)
    assert store.get_run(run.id).summary == {"best": 0.7}
    with pytest.raises(RuntimeError):
        writer(step_metrics(99))


def test_failed_flush_keeps_events_in_order(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    run = make_run()
    writer = BatchedWriter(store, 12345, flush_interval=60)  # unknown run: every flush fails
    writer.write([step_metrics(1), step_metrics(2)])
    with pytest.raises(RunNotFound):
        writer.flush()
    assert writer.pending == 2
    writer.run_id = run.id  # the database "comes back"
    writer.close()
    assert store.get_series(run.id, ["train/loss"])["train/loss"].step == [1, 2]


def _hammer(db_url: str, data_dir: str, run_ids: list[int], batches: int, out: mp.Queue) -> None:
    store = SqlAlchemyStore(db_url, data_dir=data_dir)
    errors = []
    for b in range(batches):
        for run_id in run_ids:
            try:
                step = b + 1
                write_events(store, run_id, [step_metrics(step), histogram(step), selection(step),
                                            evaluation(step, 0.5)])
                store.heartbeat(run_id)
                store.append_log(run_id, "info", f"batch {b}")
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                errors.append(repr(exc))
    store.close()
    out.put(errors)


def test_two_processes_write_one_sqlite_file_without_locking_errors(
        store: SqlAlchemyStore, make_run: MakeRun, settings: Settings) -> None:
    shared, own_a, own_b = make_run(), make_run(), make_run()
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(settings.db_url, str(settings.data_dir), ids, 40, out))
             for ids in ([shared.id, own_a.id], [shared.id, own_b.id])]
    for p in procs:
        p.start()
    errors = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert errors == [[], []]
    # both processes' rows are there, and the shared run's seqs are unique and gap-free
    changes = store.changes_since(shared.id, 0, limit=1_000_000)
    seqs = sorted(r.seq for r in changes.scalars + changes.histograms + changes.selection + changes.logs)
    assert len(changes.histograms) == 80 and seqs == list(range(1, len(seqs) + 1))
    for run in (own_a, own_b):
        assert len(store.get_histograms(run.id, "candidates", max_rows=1000).steps) == 40


def test_batched_writer_persists_a_realistic_mix(store: SqlAlchemyStore, make_run: MakeRun) -> None:
    """A realistic mix of 2,000 steps arrives whole (speed is measured in benchmarks, not here)."""
    run = make_run()
    events = []
    for s in range(1, 2001):
        events.append(step_metrics(s))
        if s % 10 == 0:
            events += [histogram(s), histogram(s, "selected", 0.2), selection(s)]
        if s % 100 == 0:
            events.append(evaluation(s, 0.5))
    writer = BatchedWriter(store, run.id, flush_interval=0.5)
    writer.write(events)
    writer.close()
    assert store.get_run(run.id).step == 2000
    assert len(store.get_histograms(run.id, "candidates", max_rows=1000).steps) == 200
    assert len(store.get_series(run.id, ["train/loss"], x="step", max_points=5000)["train/loss"].y) == 2000
