"""The local copy of a remote run's events: written before anything is sent.

One folder per run (under the spool directory, `~/.marginscope/spool` unless told otherwise):

    run.json       where the run reports: server, run id (null until the dashboard created it),
                   the body that creates it, the sequence number of its first event
    events.jsonl   every event, one line each: {"seq": n, "event": Event.to_dict()}
    acked.json     {"next_seq": n}: the dashboard holds every event before n

The events file is appended before an event is queued for sending, and handed to the operating
system before each send (not per event: the training loop's call stays cheap), so a dashboard
that is down, restarts or is unreachable loses nothing: the reporter resends from the file, and
`marginscope sync DIR` uploads a run whose trainer is gone. A line cut short by a crash is the
only one that can be damaged; it is skipped.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_SPOOL = Path("~/.marginscope/spool")
RUN_FILE, EVENTS_FILE, ACKED_FILE = "run.json", "events.jsonl", "acked.json"


def default_spool_dir() -> Path:
    return Path(os.environ.get("MARGINSCOPE_SPOOL_DIR") or DEFAULT_SPOOL).expanduser()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def encode(seq: int, event_json: str) -> str:
    return '{"seq": %d, "event": %s}\n' % (seq, event_json)


class Spool:
    """One run's folder (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._events = None  # the open events file, appended by one writer

    @classmethod
    def create(cls, parent: Path | None, meta: dict[str, Any]) -> Spool:
        parent = Path(parent) if parent is not None else default_spool_dir()
        path = parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        path.mkdir(parents=True, exist_ok=False)
        spool = cls(path)
        spool.write_meta(meta)
        return spool

    @classmethod
    def open(cls, path: Path, meta: dict[str, Any]) -> Spool:
        """The folder `path`, created with `meta` or opened again (an earlier attempt of the run):
        its run.json is updated with `meta`, and a last line cut short by a kill is cut off, so
        that the next event appended starts a line of its own."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        spool = cls(path)
        old = spool.meta() if (path / RUN_FILE).exists() else {}
        # the folder's first event stays its first: `marginscope sync` uploads from there
        spool.write_meta({**old, **meta, **({"first_seq": old["first_seq"]} if "first_seq" in old else {})})
        events = path / EVENTS_FILE
        if events.exists():
            data = events.read_bytes()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                with events.open("r+b") as fh:
                    fh.truncate(end)
        return spool

    def last_seq(self) -> int | None:
        """The sequence number of the last whole event in the file (None: no event)."""
        last = None
        for seq, _ in self.read(0):
            last = seq
        return last

    # --- run.json / acked.json
    def meta(self) -> dict[str, Any]:
        return json.loads((self.path / RUN_FILE).read_text())  # type: ignore[no-any-return]

    def write_meta(self, meta: dict[str, Any]) -> None:
        _write_json(self.path / RUN_FILE, meta)

    def acked(self) -> int | None:
        try:
            return int(json.loads((self.path / ACKED_FILE).read_text())["next_seq"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write_acked(self, next_seq: int) -> None:
        _write_json(self.path / ACKED_FILE, {"next_seq": int(next_seq)})

    # --- events.jsonl
    def append(self, seq: int, event_json: str) -> None:
        if self._events is None:
            self._events = (self.path / EVENTS_FILE).open("a", encoding="utf-8")
        self._events.write(encode(seq, event_json))

    def flush(self) -> None:
        """Hand what was appended to the operating system (the reporter does before every send:
        what the dashboard may hold is in the file, and a resend can read it back)."""
        if self._events is not None:
            self._events.flush()

    def make_durable(self) -> None:
        """Flush and fsync the events file: what was appended survives a kill of this process
        (and of the machine). Called before a checkpoint is published."""
        if self._events is not None:
            self._events.flush()
            os.fsync(self._events.fileno())

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None

    def read(self, since: int = 0) -> Iterator[tuple[int, str]]:
        """(seq, event JSON) of every stored event with seq >= since, in order."""
        try:
            fh = (self.path / EVENTS_FILE).open(encoding="utf-8")
        except FileNotFoundError:
            return
        with fh:
            for line in fh:
                try:
                    item = json.loads(line)
                    seq = int(item["seq"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a crash
                if seq >= since:
                    yield seq, json.dumps(item["event"])
