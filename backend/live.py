"""The live hub: websocket streams of a run's new rows, and of status changes of all runs.

Kept as one module: the poller, the per-run feeds and both socket handlers share one cursor
protocol (a delta covers the seqs (since, seq]), which reads best in one place.

The database is the source of truth, not an in-memory broadcast (FastAPI's websocket guide warns an
in-memory connection list only works within one process). This server is the one writer of the
runs it serves: its ingest route calls `wake(run_id)` after each committed batch, and the poller
task reads that run's new rows at once (no poll interval between a step and its viewers). Polling
stays as the fallback for writers the hub is not told about (another server on the same
database, a script recording with `record_run`): every `poll_interval` (0.5 s) the poller reads
`last_seq` of every run someone watches, in one query (`store.last_seqs`). For each run whose
head moved it reads the new rows ONCE
(`store.changes_since` from the run's feed cursor) and serialises them ONCE into a numbered delta,
whose text every viewer of that run is handed (`send_text` of the same string): the cost of a tick
does not grow with the number of viewers. A feed publishes at most one delta per `min_interval`
(0.1 s); rows arriving meanwhile are coalesced into the next. When the changes include a resume
(`Changes.resumed`: the store deleted the crashed attempt's tail, rows viewers may hold), a fresh
snapshot follows, also built once. Because the cursor is the per-run `seq` of the store,
`?since=S` after a reconnect yields exactly what the client missed, whichever process wrote it
and across dashboard restarts. Scalars travel in one columnar shape, in snapshots and deltas alike
(`scalar_columns`), so a page appends a delta's columns to the snapshot's.

A viewer joins a feed and then catches up on its own (a snapshot, or `changes_since` from its
`since`); every published delta names the range (since, seq] it covers, so a viewer skips what it
already holds and, in the rare case it joined mid-range, gets that one delta cut to its cursor.
Snapshots are shared too: one built less than `snapshot_max_age` ago, with nothing published since,
serves every viewer that joins (fifty pages opened at once cost one snapshot).

Memory is bounded per viewer: each has a queue of at most `viewer_queue` messages (references to
the shared texts). A viewer that falls that far behind (a slow network, a tab that stopped
reading) loses its queued messages and is sent a fresh snapshot when it reads again, as after a
resume. The runs-list socket's queue is bounded the same way (`list_queue`; a lagging list client
gets a fresh runs snapshot).

When a run's new rows include a sample snapshot, its viewers also get one `{"type": "samples"}`
message (the latest snapshot's lowest-margin samples, as GET /samples serves them), outside the
seq cursor: each one replaces the previous.

For the runs list the poller also asks the store which runs changed status (and, once a second,
the progress of running runs) and pushes `{"type": "run"}` messages, serialised once, to list
clients.

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
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from marginscope.backend.samples_view import samples_view
from marginscope.backend.schemas import histogram_json, log_json, run_json, selection_json
from marginscope.backend.store import AbstractStore, Changes, Run, RunNotFound, RunStatus, ScalarRow
from marginscope.backend.store.db import json_safe
from marginscope.engine.events import COUNTER_KEYS

log = logging.getLogger(__name__)

# key -> {counter or "value": one list per column}; see `scalar_columns`
ScalarColumns = dict[str, dict[str, list[Any]]]

GOING_AWAY = 1001
RUN_DELETED = 4404


@dataclass(frozen=True)
class _Published:
    """One message of a run's stream, serialised once for all its viewers. A delta covers the rows
    with seq in (since, seq]; a snapshot replaces everything up to seq; `gone`: the run was deleted."""

    kind: str  # delta | snapshot | gone
    since: int
    seq: int
    text: str = ""
    changes: Changes | None = None  # a delta's rows, to cut it for a viewer that joined mid-range
    run: Run | None = None


_LAGGED = _Published("lagged", 0, 0)  # queued for a viewer whose queue overflowed


class _Viewer:
    """One socket's queue of published messages: bounded, and reset to `_LAGGED` on overflow."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[_Published] = asyncio.Queue(maxsize=size)
        self.lagging = False

    def offer(self, message: _Published) -> bool:
        """Queue `message`; False when the viewer fell behind (its queue now holds only _LAGGED)."""
        if self.lagging:
            return True
        try:
            self.queue.put_nowait(message)
            return True
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(_LAGGED)
            self.lagging = True
            return False


@dataclass
class _Feed:
    """One watched run: what the poller has read and published, and who receives it."""

    sent: int  # seq of the last published message (the `since` of the next delta)
    read: int  # rows up to here are read (> sent when deleted rows were skipped)
    step: int | None  # the run's step last published (a delta carries the run when it moves)
    viewers: set[_Viewer] = field(default_factory=set)
    published_at: float = 0.0
    gone: bool = False
    snapshot: tuple[int, str, float] | None = None  # (seq, text, monotonic time built)
    snapshot_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    samples_seq: int = 0  # seq of the latest sample snapshot published ({"type": "samples"})

    def publish(self, message: _Published) -> int:
        """Hand `message` to every viewer; returns how many fell behind."""
        return sum(not viewer.offer(message) for viewer in list(self.viewers))


class _ListViewer:
    """A runs-list socket's queue of (run id, serialised message), bounded like `_Viewer`'s."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue(maxsize=size)
        self.lagging = False

    def offer(self, run_id: int, text: str) -> bool:
        if self.lagging:
            return True
        try:
            self.queue.put_nowait((run_id, text))
            return True
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait((-1, ""))  # marker: send a fresh runs snapshot
            self.lagging = True
            return False


class LiveHub:
    """Started and stopped in the app's lifespan; websocket routes call `serve_run` / `serve_runs`."""

    def __init__(self, store: AbstractStore, *, poll_interval: float = 0.5, min_interval: float = 0.1,
                 list_interval: float = 0.5, snapshot_points: int = 1000,
                 snapshot_histograms: int = 200, batch_rows: int = 5000, viewer_queue: int = 32,
                 list_queue: int = 256, snapshot_max_age: float = 1.0) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.min_interval = min_interval
        self.list_interval = list_interval
        self.snapshot_points = snapshot_points
        self.snapshot_histograms = snapshot_histograms
        self.batch_rows = batch_rows
        self.viewer_queue = viewer_queue
        self.list_queue = list_queue
        self.snapshot_max_age = snapshot_max_age
        self.lagged = 0  # how many times a viewer (run or list) fell behind and was reset
        self._feeds: dict[int, _Feed] = {}
        self._list_viewers: set[_ListViewer] = set()
        self._closing: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed_since: datetime | None = None  # runs-list poller: newest status change seen
        self._seen: dict[int, tuple[str, int]] = {}  # run id → (status, status_seq) last broadcast
        self._progress: dict[int, int] = {}  # run id → step last broadcast
        self._loop: asyncio.AbstractEventLoop | None = None  # the poller's, for `wake` from threads
        self._woken: set[int] = set()  # runs with committed rows the poller has not read yet
        self._wakeup = asyncio.Event()  # set when `_woken` gains a run

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._closing = asyncio.Event()
        self._loop = asyncio.get_running_loop()
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
        return sum(len(f.viewers) for f in self._feeds.values()) + len(self._list_viewers)

    def wake(self, run_id: int) -> None:
        """Rows of `run_id` were committed: publish them now, not at the next poll. Called by the
        ingest route after its transaction, from any thread (sync routes run in a thread pool);
        a run nobody watches costs nothing."""
        loop = self._loop
        if loop is None or run_id not in self._feeds:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: the server is shutting down
            loop.call_soon_threadsafe(self._mark_woken, run_id)

    def _mark_woken(self, run_id: int) -> None:
        self._woken.add(run_id)
        self._wakeup.set()

    # ------------------------------------------------------------------ the poller

    async def _poll_forever(self) -> None:
        last_runs_poll = last_list_poll = last_progress_poll = time.monotonic()
        while True:
            try:
                now = time.monotonic()
                if now - last_runs_poll >= self.poll_interval:  # the fallback: every watched run
                    last_runs_poll = now
                    await self._poll_runs(list(self._feeds))
                elif self._woken:
                    await self._poll_runs([r for r in self._woken if self._due(r, now)])
                if now - last_list_poll >= self.list_interval:  # cheap: one indexed query
                    last_list_poll = now
                    self._changed_since = await self._poll_statuses(self._changed_since)
                if self._list_viewers and now - last_progress_poll >= 1.0:
                    last_progress_poll = now
                    await self._poll_progress()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not end live updates
                log.exception("live poller failed; retrying")
                await asyncio.sleep(1.0)
            await self._sleep(min(last_runs_poll + self.poll_interval, last_list_poll + self.list_interval))

    def _due(self, run_id: int, now: float) -> bool:
        """Whether a woken run may publish now (a feed publishes at most once per `min_interval`)."""
        feed = self._feeds.get(run_id)
        return feed is None or now - feed.published_at >= self.min_interval

    async def _sleep(self, until: float) -> None:
        """Sleep until `until` (monotonic), a woken run's next publishing moment, or a wake-up."""
        for run_id in self._woken:
            feed = self._feeds.get(run_id)
            if feed is not None:
                until = min(until, feed.published_at + self.min_interval)
        self._wakeup.clear()
        delay = until - time.monotonic()
        if delay > 0 and not any(self._due(r, time.monotonic()) for r in self._woken):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), delay)

    async def _poll_runs(self, run_ids: list[int]) -> None:
        """Publish what is new of `run_ids` (those past their `min_interval` stay woken for later)."""
        self._woken.difference_update(run_ids)
        if not run_ids:
            return
        heads = await asyncio.to_thread(self.store.last_seqs, run_ids)
        for run_id in run_ids:
            feed = self._feeds.get(run_id)
            if feed is None or feed.gone:
                continue
            head = heads.get(run_id)
            if head is None:
                self._gone(feed)
            elif head > feed.read:
                if time.monotonic() - feed.published_at >= self.min_interval:
                    await self._advance(run_id, feed, head)
                else:  # coalesced into the delta of this feed's next publishing moment
                    self._woken.add(run_id)

    def _gone(self, feed: _Feed) -> None:
        feed.gone = True
        feed.publish(_Published("gone", feed.sent, feed.sent))

    async def _advance(self, run_id: int, feed: _Feed, head: int) -> None:
        """Read the run's new rows once, serialise them once, hand the text to every viewer."""
        try:
            changes, run, text = await asyncio.to_thread(self._read_delta, run_id, feed.read, feed.step)
        except RunNotFound:
            self._gone(feed)
            return
        await self._publish_samples(run_id, feed)
        if changes.empty:
            # rows up to `head` are committed; none left means they were deleted (a resume
            # truncates the crashed attempt's tail): skip ahead; the next delta still starts at
            # `sent`, so it is exact for every viewer
            feed.read = max(feed.read, changes.seq, head)
            return
        self.lagged += feed.publish(_Published("delta", feed.sent, changes.seq, text, changes, run))
        feed.sent = feed.read = changes.seq
        feed.published_at = time.monotonic()
        if run is not None:
            feed.step = run.step
        if changes.resumed:  # rows viewers hold past the checkpoint were deleted
            seq, text = await self._shared_snapshot(run_id, feed, fresh=True)
            self.lagged += feed.publish(_Published("snapshot", feed.sent, seq, text))
            feed.sent = feed.read = max(feed.read, seq)

    async def _publish_samples(self, run_id: int, feed: _Feed) -> None:
        """A {"type": "samples"} message (GET /samples?view=lowest of the latest snapshot) when a
        new sample snapshot landed; outside the seq cursor: each one replaces the previous."""
        text = await asyncio.to_thread(self._samples_text, run_id, feed)
        if text:
            self.lagged += feed.publish(_Published("samples", feed.sent, feed.sent, text))

    def _samples_text(self, run_id: int, feed: _Feed) -> str:
        seq = self.store.last_sample_seq(run_id)
        if seq <= feed.samples_seq:
            return ""
        feed.samples_seq = seq
        view = samples_view(self.store, self.store.get_run(run_id), "lowest", limit=500)
        return _dumps({"type": "samples", **view.model_dump()})

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
                self._broadcast_list(run)
            since = run.status_changed_at if since is None else max(since, run.status_changed_at)
        return since

    async def _poll_progress(self) -> None:
        runs, _ = await asyncio.to_thread(self.store.list_runs, status=RunStatus.RUNNING.value,
                                          limit=200)
        for run in runs:
            if self._progress.get(run.id) != run.step:
                self._progress[run.id] = run.step
                self._broadcast_list(run)

    def _broadcast_list(self, run: Run) -> None:
        if not self._list_viewers:
            return
        text = _dumps({"type": "run", "run": run_json(run)})  # once, for every list client
        for viewer in list(self._list_viewers):
            self.lagged += not viewer.offer(run.id, text)

    # ------------------------------------------------------------------ one run: reading (threads)

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

    def _snapshot_text(self, run_id: int) -> tuple[int, str]:
        seq, message = self._snapshot(run_id)
        return seq, _dumps(message)

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

    def _read_delta(self, run_id: int, since: int, last_step: int | None) -> tuple[Changes, Run | None, str]:
        changes, run = self._changes(run_id, since, last_step)
        return changes, run, ("" if changes.empty else _dumps(self._delta(changes, run)))

    async def _shared_snapshot(self, run_id: int, feed: _Feed, *, fresh: bool = False) -> tuple[int, str]:
        """A snapshot at a seq >= everything `feed` has published: the cached one when it is recent
        and nothing was published after it (viewers joining together share it), else a new one."""
        async with feed.snapshot_lock:
            cached = feed.snapshot
            if not fresh and cached is not None and cached[0] >= feed.sent and \
                    time.monotonic() - cached[2] < self.snapshot_max_age:
                return cached[0], cached[1]
            seq, text = await asyncio.to_thread(self._snapshot_text, run_id)
            feed.snapshot = (seq, text, time.monotonic())
            return seq, text

    # ------------------------------------------------------------------ one run: serving

    async def serve_run(self, websocket: WebSocket, run_id: int, since: int | None) -> None:
        """Accept, send a snapshot (unless `since` can be caught up), then deltas until disconnect."""
        from fastapi import WebSocketException, status

        try:
            run = await asyncio.to_thread(self.store.get_run, run_id)
        except RunNotFound:
            raise WebSocketException(status.WS_1008_POLICY_VIOLATION, reason=f"run {run_id} not found")
        await websocket.accept()
        feed = self._feeds.get(run_id)
        if feed is None or feed.gone:
            feed = self._feeds[run_id] = _Feed(sent=run.last_seq, read=run.last_seq, step=run.step,
                                               samples_seq=run.last_seq)
        viewer = _Viewer(self.viewer_queue)
        feed.viewers.add(viewer)  # before catching up: every message published from now on is queued
        receiver = asyncio.create_task(_drain(websocket))
        closing = asyncio.create_task(self.closing.wait())
        code = 1000
        try:
            if since is None or since > run.last_seq:
                cursor = await self._send_snapshot(websocket, run_id, feed)
            else:
                cursor = await self._catch_up(websocket, run_id, feed, since)
            while True:
                getter = asyncio.create_task(viewer.queue.get())
                if not await _wait_for(getter, receiver, closing):
                    break
                message = getter.result()
                if message is _LAGGED:
                    viewer.lagging = False  # queue again from here; the snapshot covers the rest
                    cursor = await self._send_snapshot(websocket, run_id, feed)
                elif message.kind == "gone":
                    code = RUN_DELETED
                    break
                elif message.kind == "samples":
                    await websocket.send_text(message.text)
                elif message.seq < cursor or (message.kind == "delta" and message.seq == cursor):
                    continue  # the viewer holds it already
                elif message.kind == "snapshot" or message.since == cursor:
                    await websocket.send_text(message.text)
                    cursor = message.seq
                elif message.since < cursor and message.changes is not None:
                    await websocket.send_text(_dumps(self._delta(_after(message.changes, cursor),
                                                                 message.run)))
                    cursor = message.seq
                else:  # rows between the cursor and this delta were deleted: start over
                    cursor = await self._send_snapshot(websocket, run_id, feed)
            if closing.done():
                code = GOING_AWAY
        except RunNotFound:
            code = RUN_DELETED
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client went away mid-send
        finally:
            receiver.cancel()
            closing.cancel()
            feed.viewers.discard(viewer)
            if not feed.viewers and self._feeds.get(run_id) is feed:
                del self._feeds[run_id]
            await _close(websocket, code)

    async def _send_snapshot(self, websocket: WebSocket, run_id: int, feed: _Feed) -> int:
        seq, text = await self._shared_snapshot(run_id, feed)
        await websocket.send_text(text)
        return seq

    async def _catch_up(self, websocket: WebSocket, run_id: int, feed: _Feed, since: int) -> int:
        """Send this viewer the rows after `since` (its own reads: once, when it reconnects)."""
        cursor, step = since, None
        while True:
            changes, run, text = await asyncio.to_thread(self._read_delta, run_id, cursor, step)
            if changes.empty:
                return cursor
            await websocket.send_text(text)
            cursor, step = changes.seq, (run.step if run is not None else step)
            if changes.resumed:
                return await self._send_snapshot(websocket, run_id, feed)
            if not changes.more:
                return cursor

    # ------------------------------------------------------------------ all runs

    async def serve_runs(self, websocket: WebSocket) -> None:
        """Accept, send the current runs, then one message per status change (and progress)."""
        await websocket.accept()
        viewer = _ListViewer(self.list_queue)
        self._list_viewers.add(viewer)
        receiver = asyncio.create_task(_drain(websocket))
        closing = asyncio.create_task(self.closing.wait())
        code = 1000
        try:
            await self._send_runs(websocket)
            last_sent = time.monotonic()
            while True:
                getter = asyncio.create_task(viewer.queue.get())
                if not await _wait_for(getter, receiver, closing):
                    break
                first = getter.result()
                delay = last_sent + self.min_interval - time.monotonic()
                if delay > 0 and not await _wait_for(asyncio.sleep(delay), receiver, closing):
                    break
                pending = dict([first])
                while not viewer.queue.empty():  # coalesce: keep only the latest message per run
                    run_id, text = viewer.queue.get_nowait()
                    pending[run_id] = text
                if -1 in pending:  # fell behind: start over from the current runs
                    viewer.lagging = False
                    await self._send_runs(websocket)
                else:
                    for text in pending.values():
                        await websocket.send_text(text)
                last_sent = time.monotonic()
            if closing.done():
                code = GOING_AWAY
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            receiver.cancel()
            closing.cancel()
            self._list_viewers.discard(viewer)
            await _close(websocket, code)

    async def _send_runs(self, websocket: WebSocket) -> None:
        runs, _ = await asyncio.to_thread(self.store.list_runs, sort="-created_at", limit=200)
        await websocket.send_text(_dumps({"type": "snapshot", "runs": [run_json(r) for r in runs]}))


def scalar_columns(rows: Sequence[ScalarRow]) -> ScalarColumns:
    """Scalar rows as the websocket sends them, in snapshots and deltas alike:
    {key: {"step": [...], "epoch": [...], ..., "wall_time": [...], "value": [...]}}, one column per
    counter (marginscope.engine.events.COUNTER_KEYS) plus the value, points in the order they were written."""
    columns: ScalarColumns = {}
    for row in rows:
        column = columns.get(row.key)
        if column is None:
            column = columns[row.key] = {name: [] for name in (*COUNTER_KEYS, "value")}
        for name in (*COUNTER_KEYS, "value"):
            column[name].append(getattr(row, name))
    return columns


def _after(changes: Changes, cursor: int) -> Changes:
    """`changes` without the rows a viewer at `cursor` already holds."""
    return replace(changes, since=cursor,
                   scalars=[r for r in changes.scalars if r.seq > cursor],
                   histograms=[r for r in changes.histograms if r.seq > cursor],
                   selection=[r for r in changes.selection if r.seq > cursor],
                   logs=[r for r in changes.logs if r.seq > cursor])


def _dumps(message: dict[str, Any]) -> str:
    """Strict JSON (non-finite floats as null), compact: the text every viewer is sent."""
    return json.dumps(json_safe(message), allow_nan=False, separators=(",", ":"))


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
