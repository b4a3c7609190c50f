"""Where the server's time goes when a run reports: the ingest route's stages, timed one by one.

    .venv/bin/python scripts/ingest_stages.py [--events 20000] [--batch 1000]

scripts/ingest_bench.py measures the whole path (client, HTTP, server, database) and calls
`stages()` to say which part of the server's work costs what. The same events it sends
(`run_events`) are encoded as the client encodes them, in batches of `--batch`, then on this
process, batch after batch into a fresh SQLite store, each stage timed on its own:

1. parse and check: the body's bytes to the checked models (`TypeAdapter(EventBatch).validate_json`,
   what the route does: backend/routes/json_body.py);
2. to events: the models to the engine's events (`parse_events`);
3. to rows: the events to the store's rows (`to_batch`);
4. store: `log_batch` (the rows to column tuples, one executemany per table, the latest values,
   the commit).

The HTTP layer (uvicorn, the middleware, the thread hand-off) is what the whole path costs
beyond these. `compare()` times the stages twice in one run: with CPython's default garbage
collector settings, then with those `marginscope serve` sets (backend/collector.py). Prints and
returns milliseconds per 1000 events for each stage.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from marginscope.backend import collector
from marginscope.backend.recording.ingest import parse_events
from marginscope.backend.recording.mapping import to_batch
from marginscope.backend.routes.ingest import EventBatch
from marginscope.backend.store.db import upgrade
from marginscope.backend.store.sqlalchemy_store import SqlAlchemyStore
from marginscope.engine.events import Event

STAGES = ("parse and check", "to events", "to rows", "store")


def stages(events: list[Event], config: dict[str, Any], batch: int = 1000) -> dict[str, Any]:
    """Milliseconds per 1000 events of each stage (STAGES), for `events` posted `batch` at a time."""
    bodies = ['{"seq": %d, "events": [%s]}' % (i, ",".join(json.dumps(e.to_dict()) for e in events[i:i + batch]))
              for i in range(0, len(events), batch)]
    adapter = TypeAdapter(EventBatch)
    seconds = dict.fromkeys(STAGES, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'marginscope.db'}"
        upgrade(url)
        store = SqlAlchemyStore(url, data_dir=Path(tmp))
        try:
            run = store.start_remote(None, host="bench", pid=1, name="stages", config=config, tags=[], notes="")
            for body in bodies:
                t0 = time.perf_counter()
                checked = adapter.validate_json(body)
                t1 = time.perf_counter()
                parsed = parse_events(checked.events)
                t2 = time.perf_counter()
                rows, _ = to_batch(parsed)
                t3 = time.perf_counter()
                store.log_batch(run.id, rows, expect_seq=checked.seq, next_seq=checked.seq + len(parsed))
                t4 = time.perf_counter()
                for stage, took in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    seconds[stage] += took
        finally:
            store.close()
    per_1000 = {stage: round(s * 1000 / len(events) * 1000, 1) for stage, s in seconds.items()}
    return {"events": len(events), "batch": batch, "ms_per_1000_events": per_1000,
            "events_per_s": round(len(events) / sum(seconds.values()))}


def compare(events: list[Event], config: dict[str, Any], batch: int = 1000) -> dict[str, Any]:
    """`stages()` with the collector's default settings, then with `marginscope serve`'s."""
    default_threshold = gc.get_threshold()
    out = {"default collector": stages(events, config, batch)}
    collector.tune()
    try:
        out["serve's collector"] = stages(events, config, batch)
    finally:
        gc.unfreeze()
        gc.set_threshold(*default_threshold)
    return out


def main() -> None:
    from ingest_bench import CONFIG, run_events

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    print(json.dumps(compare(run_events(args.events), CONFIG.model_dump(mode="json"), args.batch), indent=2))


if __name__ == "__main__":
    main()
