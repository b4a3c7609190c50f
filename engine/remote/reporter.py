"""HttpReporter: an engine callback that streams a run to a dashboard over its ingest API.

    reporter = HttpReporter("http://dashboard:8000", token=..., config=config.model_dump())
    train(config, callbacks=[reporter], should_stop=reporter.should_stop)
    reporter.close()

The training loop's call only numbers the event, appends it to the run's spool file
(engine/remote/spool.py), queues it and wakes the background thread: training never waits on the
network. The thread sends like Nagle's algorithm: an event that finds it idle is posted at once
(a viewer sees a step as soon as the dashboard has it), and events that arrive while a post is
in flight wait for it and go together in the next one (at most `max_batch` events or
MAX_BATCH_BYTES): a busy run sends few large batches, an idle one no delay, with no interval to
tune. Each batch starts at its first event's sequence number, so the dashboard writes a batch
sent twice only once. When the dashboard cannot be reached, the thread retries with
exponential backoff (from `flush_interval` up to `max_backoff` s) and everything waits in the
spool; when it comes back, the thread resends from the number the dashboard expects (its 409
names it), from memory or from the spool file. Without events it wakes every `flush_interval`
and beats (`heartbeat_interval`); the answers of
both say whether the dashboard asked the run to stop: `should_stop()` then turns True (the loop
checkpoints and reports RunFinished(cancelled)).

`spool_path` names the run's own spool folder, kept across its attempts (a dashboard's launcher
gives each run one in its run folder). A resumed attempt opens it again and sends first the events
of the earlier attempt that the dashboard does not hold yet (from the number the claim answers),
then its own, numbered after them: with exactly-once numbers, the dashboard writes the earlier
attempt's events in order before the resumed attempt's RunStarted, which drops the rows after the
checkpoint (backend/recording/ingest.py). `make_durable()` flushes and fsyncs the spool: the
training loop calls it before publishing a checkpoint, so no checkpoint is ever ahead of the
events kept for its run.

`close()` sends what is left, waiting at most `close_timeout` s; what could not be sent stays in
the spool folder for `marginscope sync <folder>`. A refusal that retrying cannot cure (a wrong
token, a run deleted in the dashboard) stops sending (and training: the run cannot be recorded),
keeping the spool.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from marginscope.engine.events import Event
from marginscope.engine.remote.http import IngestClient, Refused, SeqGap, Unavailable, trainer
from marginscope.engine.remote.spool import Spool

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 512 * 1024  # half the server's default body limit (1 MiB)


class HttpReporter:
    """See the module docstring. Give `run_id` (a run created already), `claim` (a queued run to
    take over: its stored config is `claimed_config`), or neither: the run is created from
    `config` (else from the RunStarted event's config) with `name`, `tags`, `notes`."""

    def __init__(self, server: str, *, token: str | None = None, run_id: int | None = None,
                 claim: int | None = None, config: dict[str, Any] | None = None,
                 name: str | None = None, tags: Sequence[str] = (), notes: str = "",
                 spool_dir: Path | None = None, spool_path: Path | None = None,
                 pid: int | None = None, flush_interval: float = 0.5, max_batch: int = 1000,
                 heartbeat_interval: float = 2.0, max_backoff: float = 5.0,
                 close_timeout: float = 30.0) -> None:
        self.client = IngestClient(server, token=token)
        self.flush_interval, self.max_batch = flush_interval, max_batch
        self.heartbeat_interval, self.max_backoff = heartbeat_interval, max_backoff
        self.close_timeout = close_timeout
        self.claimed_config: dict[str, Any] | None = None
        self._create: dict[str, Any] | None = None
        first = 0
        if claim is not None:  # must succeed now: the config comes from the dashboard
            answer = self.client.claim(claim, pid)
            run_id, first, self.claimed_config = claim, int(answer["next_seq"]), answer["config"]
        elif run_id is None:
            self._create = {"name": name, "tags": list(tags), "notes": notes, **trainer(pid)}
            if config is not None:
                self._create["config"] = dict(config)
        self.run_id: int | None = run_id
        meta = {"server": self.client.server, "run_id": run_id, "create": self._create, "first_seq": first}
        earlier: list[tuple[int, str]] = []  # an earlier attempt's events the dashboard lacks
        if spool_path is not None:
            self.spool = Spool.open(spool_path, meta)
            earlier = list(self.spool.read(first))
        else:
            self.spool = Spool.create(spool_dir, meta)
        self._lock = threading.Lock()  # guards the queue and the counters below
        self._queue: list[tuple[int, str]] = earlier  # (seq, event JSON) not yet acknowledged
        self._next = earlier[-1][0] + 1 if earlier else first  # the number of the next event
        self._acked = first  # the dashboard holds every event before this
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._failed: str | None = None
        self._last_contact = time.monotonic()
        self._retry_at = 0.0
        self._backoff = 0.0
        self.batches = 0
        if self._create is not None and "config" in self._create:
            self._try(self._ensure_run)  # show the run in the dashboard at once when it is up
        self._thread = threading.Thread(target=self._run, name="marginscope-reporter", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the engine's side

    def __call__(self, event: Event) -> None:
        data = event.to_dict()
        if self._create is not None and "config" not in self._create and data["kind"] == "run_started":
            self._create["config"] = data["config"]
            self._save_meta()
        text = json.dumps(data, default=str)
        with self._lock:
            seq = self._next
            self._next += 1
            self.spool.append(seq, text)
            self._queue.append((seq, text))
        self._wake.set()  # idle: sent at once; a post in flight: sent with the next batch

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def make_durable(self) -> None:
        """Every event handed over so far is in the spool file, on disk (engine/events.py's
        `make_durable`: the loop calls it before publishing a checkpoint)."""
        with self._lock:
            self.spool.make_durable()

    @property
    def pending(self) -> int:
        """Events not yet acknowledged by the dashboard."""
        with self._lock:
            return self._next - self._acked

    @property
    def failed(self) -> str | None:
        """Why sending stopped for good (the events are in the spool), or None."""
        return self._failed

    def close(self, timeout: float | None = None) -> bool:
        """Send what is left (at most `timeout` s, default `close_timeout`); True when the
        dashboard holds every event. What it does not stays in the spool (`marginscope sync`)."""
        self._closing.set()
        self._wake.set()
        self._thread.join(self.close_timeout if timeout is None else timeout)
        self._failed = self._failed or "closed"  # a thread still retrying gives up now
        done = self.pending == 0 and self.run_id is not None
        if not done:
            log.warning("%d events of this run are not in the dashboard yet; they are kept in %s: "
                        "upload them with `marginscope sync %s`", self.pending, self.spool.path,
                        self.spool.path)
        self._thread.join(5)
        with self._lock:
            self.spool.close()
        self.client.close()
        return done

    # ------------------------------------------------------------------ the sending thread

    def _run(self) -> None:
        """Post whatever is queued as soon as the thread is free (`_send_all` keeps posting while
        events arrived during the previous post); sleep until an event, a retry or a heartbeat."""
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._failed is not None:
                return
            if time.monotonic() < self._retry_at:
                continue
            if self._try(self._send_all) and self._closing.is_set():
                return

    def _try(self, action: Any) -> bool:
        """Run `action`; False after a failure (a retry is scheduled, or sending has stopped)."""
        try:
            action()
        except Unavailable as exc:
            if not self._backoff:
                log.warning("dashboard unavailable (retrying, every %.1f s at most; events kept in %s): %s",
                            self.max_backoff, self.spool.path, exc)
            self._backoff = min(self.max_backoff, self._backoff * 2 if self._backoff else self.flush_interval)
            self._retry_at = time.monotonic() + self._backoff
            return False
        except Exception as exc:  # noqa: BLE001 - Refused, or a bug: never retried in a loop
            self._failed = str(exc)
            self._stop.set()  # the run cannot be recorded: stop training with a checkpoint
            log.error("the dashboard refused this run's events (%s); they are kept in %s", exc,
                      self.spool.path)
            return False
        if self._backoff:
            log.warning("dashboard reachable again: the spooled events are sent")
        self._backoff = 0.0
        return True

    def _ensure_run(self) -> None:
        if self.run_id is not None:
            return
        if self._create is None or "config" not in self._create:
            raise Unavailable("the run is created when training starts (its config)")
        answer = self.client.create_run(self._create)
        self.run_id = int(answer["run"]["id"])
        with self._lock:
            self._next += int(answer["next_seq"]) - self._acked  # 0 for a new run
            self._acked = int(answer["next_seq"])
        self._save_meta()
        self._last_contact = time.monotonic()

    def _save_meta(self) -> None:
        meta = self.spool.meta()
        meta.update({"run_id": self.run_id, "create": self._create})
        self.spool.write_meta(meta)

    def _send_all(self) -> None:
        """Send every queued event, batch by batch; beat when there was nothing to send."""
        self._ensure_run()
        assert self.run_id is not None
        sent = False
        while True:
            with self._lock:
                self.spool.flush()
                batch, size = [], 0
                for seq, text in self._queue:
                    if len(batch) >= self.max_batch or (batch and size + len(text) > MAX_BATCH_BYTES):
                        break
                    batch.append((seq, text))
                    size += len(text) + 1
            if not batch:
                break
            try:
                answer = self.client.post_events(self.run_id, batch[0][0], [t for _, t in batch])
            except SeqGap as gap:
                self._resume_from(gap.expected)
                continue
            self._acknowledge(int(answer["next_seq"]), bool(answer["stop"]))
            self.batches += 1
            sent = True
        if not sent and time.monotonic() - self._last_contact >= self.heartbeat_interval:
            answer = self.client.heartbeat(self.run_id)
            self._last_contact = time.monotonic()
            if answer["stop"]:
                self._stop.set()

    def _acknowledge(self, next_seq: int, stop: bool) -> None:
        with self._lock:
            self._acked = max(self._acked, next_seq)
            self._queue = [item for item in self._queue if item[0] >= self._acked]
        self.spool.write_acked(self._acked)
        self._last_contact = time.monotonic()
        if stop:
            self._stop.set()

    def _resume_from(self, expected: int) -> None:
        """The dashboard holds every event before `expected`: resend from there (from the spool
        when the queue no longer holds them)."""
        with self._lock:
            if expected > self._next:
                raise Refused(409, f"the dashboard expects event {expected}, but this run has "
                                   f"only {self._next}: it is not this run")
            first = self._queue[0][0] if self._queue else self._next
            if expected < first:
                self.spool.flush()
                self._queue = [item for item in self.spool.read(expected) if item[0] < first] + self._queue
            self._acked = expected
            self._queue = [item for item in self._queue if item[0] >= expected]
