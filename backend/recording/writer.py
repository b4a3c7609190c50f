"""BatchedWriter: the one writer per run and process that turns engine events into store rows.

The training loop calls the writer (an engine callback) on its own thread; the call only appends
to a buffer. A background thread flushes the buffer through `store.log_batch` at least every
`flush_interval` seconds (sooner when `max_batch` events are waiting), and `close()` flushes what
is left. A failed flush keeps the events and retries on the next tick (so a briefly locked or
unreachable database loses nothing); `close()` raises if the final flush still fails.
Every CheckpointSaved is flushed at once, before training goes on (see `__call__`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from typing import Self

from marginscope.backend.recording.mapping import BEST_VAL_ACCURACY, needs_best, to_batch
from marginscope.backend.store.abstract_store import AbstractStore
from marginscope.engine.events import CheckpointSaved, Event

log = logging.getLogger(__name__)

def stored_best(store: AbstractStore, run_id: int) -> float | None:
    """The run's best validation accuracy so far (None before its first validation)."""
    value = store.latest(run_id).get(BEST_VAL_ACCURACY)
    return None if value is None or not math.isfinite(value) else value


def write_events(store: AbstractStore, run_id: int, events: Sequence[Event]) -> int:
    """Map `events` and write them in one transaction, now; returns the run's last seq.
    (The unbatched path, for tools and tests; training goes through a BatchedWriter.)"""
    best = stored_best(store, run_id) if needs_best(events) else None
    batch, _ = to_batch(events, best)
    return store.log_batch(run_id, batch)


class BatchedWriter:
    def __init__(self, store: AbstractStore, run_id: int, flush_interval: float = 0.5,
                 max_batch: int = 2000) -> None:
        self.store = store
        self.run_id = run_id
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self._buffer: list[Event] = []
        self._lock = threading.Lock()  # guards _buffer
        self._flush_lock = threading.Lock()  # one flush at a time, in order
        self._wake = threading.Event()
        self._closed = threading.Event()
        # the running max behind val/best_accuracy: read from the store when first needed (a
        # resumed run continues from its stored best), then carried from batch to batch
        self._best: float | None = None
        self._best_known = False
        self.last_error: BaseException | None = None
        self.last_seq = 0
        self.events_written = 0
        self.flushes = 0
        self._thread = threading.Thread(target=self._run, name=f"store-writer-{run_id}", daemon=True)
        self._thread.start()

    # the engine callback
    def __call__(self, event: Event) -> None:
        if self._closed.is_set():
            raise RuntimeError("BatchedWriter is closed")
        with self._lock:
            self._buffer.append(event)
            full = len(self._buffer) >= self.max_batch
        if isinstance(event, CheckpointSaved):
            # Write everything up to a checkpoint before training goes on, so that the rows in the
            # store reach at least the checkpoint a resume will start from (no gap in the series).
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - the events stay buffered; the thread retries
                log.warning("flush at checkpoint failed (will retry): %s", exc)
                self._wake.set()
        elif full:
            self._wake.set()

    def write(self, events: Sequence[Event]) -> None:
        for event in events:
            self(event)

    def flush(self) -> int:
        """Write everything buffered now (on the caller's thread); returns the run's last seq."""
        with self._flush_lock:
            with self._lock:
                events, self._buffer = self._buffer, []
            if not events:
                return self.last_seq
            try:
                if not self._best_known and needs_best(events):
                    self._best, self._best_known = stored_best(self.store, self.run_id), True
                batch, best = to_batch(events, self._best)
                self.last_seq = self.store.log_batch(self.run_id, batch)
            except BaseException:
                with self._lock:  # keep them, in order, ahead of anything that arrived meanwhile
                    self._buffer[:0] = events
                raise
            self._best = best
            self.events_written += len(events)
            self.flushes += 1
            self.last_error = None
            return self.last_seq

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._closed.is_set():
                break
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - any failure is retried on the next tick
                if self.last_error is None:
                    log.warning("writing events of run %s failed (will retry): %s", self.run_id, exc)
                self.last_error = exc
                time.sleep(min(self.flush_interval, 0.5))

    def close(self) -> int:
        """Stop the thread and flush what is left (raises if that fails). Idempotent."""
        if not self._closed.is_set():
            self._closed.set()
            self._wake.set()
            self._thread.join()
        return self.flush()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
