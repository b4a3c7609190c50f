"""The live hub: websocket streams of a run's new rows, and of status changes of all runs.

The database is the source of truth, not an in-memory broadcast (FastAPI's websocket guide warns an
in-memory connection list only works within one process; our writers are worker processes). One
poller task reads `last_seq` of every run someone watches every `poll_interval` (0.1 s), in one
query (`store.last_seqs`), and wakes that run's clients; each client then fetches exactly the rows
with seq > its cursor through the store's indexed `changes_since`, and sends them as one numbered
delta. When those changes include a resume (`Changes.resumed`: the store deleted the crashed
attempt's tail, rows the client may hold), a fresh snapshot follows. A client never sends more
than one message per `min_interval` (0.1 s): rows arriving meanwhile are coalesced into the next
delta. Because the cursor is the per-run `seq` of the store, `?since=S` after a reconnect yields
exactly what the client missed, whichever process wrote it and across dashboard restarts.
Scalars travel in one columnar shape, in snapshots and deltas alike (`scalar_columns`), so a page
appends a delta's columns to the snapshot's.

For the runs list the poller also asks the store which runs changed status (and, once a second,
the progress of running runs) and pushes `{"type": "run"}` messages to list clients.

Disconnects are detected by a receiving task (`WebSocketDisconnect` / `websocket.disconnect`);
`stop()` makes every handler close its socket with 1001 (going away). Sources: FastAPI
`advanced/websockets.md`; Aim's streaming views for the "poll, sleep briefly, treat cancellation
as a disconnect" loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from backend.schemas import histogram_json, log_json, run_json, selection_json
from backend.store import AbstractStore, Changes, Run, RunNotFound, RunStatus, ScalarRow
from backend.store.db import json_safe
from engine.events import COUNTER_KEYS

log = logging.getLogger(__name__)

# key -> {counter or "value": one list per column}; see `scalar_columns`
ScalarColumns = dict[str, dict[str, list[Any]]]

GOING_AWAY = 1001
RUN_DELETED = 4404


@dataclass
class _Watch:
    """What the poller knows of one watched run, and an event its clients wait on."""

    seq: int = -1
    clients: int = 0
    gone: bool = False
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def bump(self, seq: int, *, gone: bool = False) -> None:
        if seq > self.seq or gone:
            self.seq = max(seq, self.seq)
            self.gone = self.gone or gone
            self.event.set()
            self.event = asyncio.Event()


class LiveHub:
    """Started and stopped in the app's lifespan; websocket routes call `serve_run` / `serve_runs`."""

    def __init__(self, store: AbstractStore, *, poll_interval: float = 0.1, min_interval: float = 0.1,
                 list_interval: float = 0.5, snapshot_points: int = 1000,
                 snapshot_histograms: int = 200, batch_rows: int = 5000) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.min_interval = min_interval
        self.list_interval = list_interval
        self.snapshot_points = snapshot_points
        self.snapshot_histograms = snapshot_histograms
        self.batch_rows = batch_rows
        self._watches: dict[int, _Watch] = {}
        self._list_clients: set[asyncio.Queue[dict[str, Any]]] = set()
        self._closing: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed_since: datetime | None = None  # runs-list poller: newest status change seen
        self._seen: dict[int, tuple[str, int]] = {}  # run id → (status, status_seq) last broadcast
        self._progress: dict[int, int] = {}  # run id → step last broadcast

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._closing = asyncio.Event()
        # baseline of every run's status before any client connects: a change after it is
        # broadcast (perhaps also inside a client's snapshot, harmlessly), never missed
        self._changed_since = await self._poll_statuses(None, broadcast=False)
        self._task = asyncio.create_task(self._poll_forever(), name="marginscope-live-poller")

    async def stop(self) -> None:
        """Close every socket (1001) and stop polling."""
        if self._closing is not None:
            self._closing.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def closing(self) -> asyncio.Event:
        if self._closing is None:  # used without start() (tests of single pieces)
            self._closing = asyncio.Event()
        return self._closing

    @property
    def clients(self) -> int:
        return sum(w.clients for w in self._watches.values()) + len(self._list_clients)

    # ------------------------------------------------------------------ the poller

    async def _poll_forever(self) -> None:
        last_list_poll = last_progress_poll = time.monotonic()
        while True:
            try:
                if self._watches:
                    await self._poll_runs()
                now = time.monotonic()
                if now - last_list_poll >= self.list_interval:  # cheap: one indexed query
                    last_list_poll = now
                    self._changed_since = await self._poll_statuses(self._changed_since)
                if self._list_clients and now - last_progress_poll >= 1.0:
                    last_progress_poll = now
                    await self._poll_progress()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not end live updates
                log.exception("live poller failed; retrying")
                await asyncio.sleep(1.0)
            await asyncio.sleep(self.poll_interval)

    async def _poll_runs(self) -> None:
        ids = list(self._watches)
        heads = await asyncio.to_thread(self.store.last_seqs, ids)
        for run_id in ids:
            watch = self._watches.get(run_id)
            if watch is None:
                continue
            seq = heads.get(run_id)
            watch.bump(seq if seq is not None else watch.seq, gone=seq is None)

    async def _poll_statuses(self, since: datetime | None, *, broadcast: bool = True) -> datetime | None:
        """Broadcast runs whose (status, status_seq) changed since the last poll (`since` None:
        look at every run); `broadcast=False` only records the baseline."""
        runs = await asyncio.to_thread(self.store.runs_changed_since, since)
        for run in runs:
            key = (str(run.status), run.status_seq)
            if self._seen.get(run.id) == key:
                continue
            self._seen[run.id] = key
            self._progress[run.id] = run.step
            if broadcast:
                self._broadcast_list({"type": "run", "run": run_json(run)})
            since = run.status_changed_at if since is None else max(since, run.status_changed_at)
        return since

    async def _poll_progress(self) -> None:
        runs, _ = await asyncio.to_thread(self.store.list_runs, status=RunStatus.RUNNING.value,
                                          limit=200)
        for run in runs:
            if self._progress.get(run.id) != run.step:
                self._progress[run.id] = run.step
                self._broadcast_list({"type": "run", "run": run_json(run)})

    def _broadcast_list(self, message: dict[str, Any]) -> None:
        for queue in self._list_clients:
            queue.put_nowait(message)

    # ------------------------------------------------------------------ one run

    def _snapshot(self, run_id: int) -> tuple[int, dict[str, Any]]:
        """(seq, snapshot message). The seq is read before the data; if rows arrive while the
        snapshot is assembled it is rebuilt (up to 3 times), so the deltas after it rarely repeat a
        row (clients should still de-duplicate on (key, step))."""
        for _ in range(3):
            run = self.store.get_run(run_id)
            seq = run.last_seq
            scalars = scalar_columns(self.store.get_scalars(run_id, max_points=self.snapshot_points))
            edges = self.store.get_edges(run_id)
            histograms = {pop: self.store.get_histograms(run_id, pop, max_rows=self.snapshot_histograms)
                          for pop in edges}
            selection = self.store.get_selection(run_id, max_points=self.snapshot_histograms)
            logs = self.store.get_logs(run_id, after=0, limit=1000)
            if self.store.get_run(run_id).last_seq == seq:
                break
        message = {
            "type": "snapshot", "seq": seq, "run": run_json(run),
            "scalars": scalars,
            "edges": edges,
            "histograms": {pop: vars(h) for pop, h in histograms.items()},
            "selection": vars(selection),
            "logs": [log_json(line) for line in logs],
        }
        return seq, message

    @staticmethod
    def _delta(changes: Changes, run: Run | None) -> dict[str, Any]:
        return {
            "type": "delta", "seq": changes.seq,
            "scalars": scalar_columns(changes.scalars),
            "histograms": [histogram_json(r) for r in changes.histograms],
            "selection": [selection_json(r) for r in changes.selection],
            "logs": [log_json(line) for line in changes.logs],
            "run": run_json(run) if run is not None else None,
        }

    def _changes(self, run_id: int, since: int, last_step: int | None) -> tuple[Changes, Run | None]:
        changes = self.store.changes_since(run_id, since, limit=self.batch_rows)
        run = changes.run
        if run is None and changes.scalars:
            current = self.store.get_run(run_id)
            if current.step != last_step:
                run = current  # progress moved: send the run so pages update their progress bar
        return changes, run

    async def serve_run(self, websocket: WebSocket, run_id: int, since: int | None) -> None:
        """Accept, send a snapshot (unless `since` can be caught up), then deltas until disconnect."""
        from fastapi import WebSocketException, status

        try:
            run = await asyncio.to_thread(self.store.get_run, run_id)
        except RunNotFound:
            raise WebSocketException(status.WS_1008_POLICY_VIOLATION, reason=f"run {run_id} not found")
        await websocket.accept()
        watch = self._watches.setdefault(run_id, _Watch())
        watch.clients += 1
        watch.bump(run.last_seq)
        receiver = asyncio.create_task(_drain(websocket))
        closing = asyncio.create_task(self.closing.wait())
        code = 1000
        try:
            last_step: int | None = run.step
            if since is None or since > run.last_seq:
                cursor, snapshot = await asyncio.to_thread(self._snapshot, run_id)
                last_step = snapshot["run"]["progress"]["step"]
                await _send(websocket, snapshot)
            else:
                cursor = since
            last_sent = time.monotonic()
            while True:
                if watch.seq <= cursor and not watch.gone and \
                        not await _wait_for(watch.event.wait(), receiver, closing):
                    break
                # coalesce: at most one message per min_interval
                delay = last_sent + self.min_interval - time.monotonic()
                if delay > 0 and not await _wait_for(asyncio.sleep(delay), receiver, closing):
                    break
                head = watch.seq
                try:
                    changes, changed_run = await asyncio.to_thread(self._changes, run_id, cursor,
                                                                   last_step)
                except RunNotFound:
                    code = RUN_DELETED
                    break
                if changes.empty:
                    # rows up to `head` are committed; none left means they were deleted (a resume
                    # truncates the crashed attempt's tail): skip ahead instead of spinning
                    cursor = max(cursor, changes.seq, head)
                    continue
                if changed_run is not None:
                    last_step = changed_run.step
                await _send(websocket, self._delta(changes, changed_run))
                last_sent = time.monotonic()
                cursor = changes.seq
                if changes.resumed:  # rows this client holds past the checkpoint were deleted
                    cursor, snapshot = await asyncio.to_thread(self._snapshot, run_id)
                    last_step = snapshot["run"]["progress"]["step"]
                    await _send(websocket, snapshot)
            if closing.done():
                code = GOING_AWAY
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client went away mid-send
        finally:
            receiver.cancel()
            closing.cancel()
            watch.clients -= 1
            if watch.clients <= 0 and self._watches.get(run_id) is watch:
                del self._watches[run_id]
            await _close(websocket, code)

    # ------------------------------------------------------------------ all runs

    async def serve_runs(self, websocket: WebSocket) -> None:
        """Accept, send the current runs, then one message per status change (and progress)."""
        await websocket.accept()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._list_clients.add(queue)
        receiver = asyncio.create_task(_drain(websocket))
        closing = asyncio.create_task(self.closing.wait())
        code = 1000
        try:
            runs, _ = await asyncio.to_thread(self.store.list_runs, sort="-created_at", limit=200)
            await _send(websocket, {"type": "snapshot", "runs": [run_json(r) for r in runs]})
            last_sent = time.monotonic()
            while True:
                getter = asyncio.create_task(queue.get())
                if not await _wait_for(getter, receiver, closing):
                    getter.cancel()
                    break
                pending = {getter.result()["run"]["id"]: getter.result()}
                delay = last_sent + self.min_interval - time.monotonic()
                if delay > 0 and not await _wait_for(asyncio.sleep(delay), receiver, closing):
                    break
                while not queue.empty():  # coalesce: keep only the latest message per run
                    message = queue.get_nowait()
                    pending[message["run"]["id"]] = message
                for message in pending.values():
                    await _send(websocket, message)
                last_sent = time.monotonic()
            if closing.done():
                code = GOING_AWAY
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            receiver.cancel()
            closing.cancel()
            self._list_clients.discard(queue)
            await _close(websocket, code)


def scalar_columns(rows: Sequence[ScalarRow]) -> ScalarColumns:
    """Scalar rows as the websocket sends them, in snapshots and deltas alike:
    {key: {"step": [...], "epoch": [...], ..., "wall_time": [...], "value": [...]}}, one column per
    counter (engine.events.COUNTER_KEYS) plus the value, points in the order they were written."""
    columns: ScalarColumns = {}
    for row in rows:
        column = columns.get(row.key)
        if column is None:
            column = columns[row.key] = {name: [] for name in (*COUNTER_KEYS, "value")}
        for name in (*COUNTER_KEYS, "value"):
            column[name].append(getattr(row, name))
    return columns


async def _send(websocket: WebSocket, message: dict[str, Any]) -> None:
    """Send strict JSON (non-finite floats as null)."""
    await websocket.send_text(json.dumps(json_safe(message), allow_nan=False, separators=(",", ":")))


async def _drain(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends until it disconnects."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _wait_for(awaitable: Awaitable[Any], receiver: asyncio.Task[None],
                    closing: asyncio.Task[Any]) -> bool:
    """Wait for `awaitable`; False (and cancel it) if the client left or the hub is closing first."""
    task = awaitable if isinstance(awaitable, asyncio.Task) else asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task, receiver, closing}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        return True
    task.cancel()
    return False


async def _close(websocket: WebSocket, code: int) -> None:
    if websocket.application_state == WebSocketState.CONNECTED and \
            websocket.client_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await websocket.close(code)
