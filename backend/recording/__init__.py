"""Where engine events meet the store: the only module that knows both.

    engine (events) → recording (rows, run updates, statuses) → store (persists) → API / hub → page

- `mapping`: what each engine event becomes in the store (entity rows and run updates);
- `writer`: `BatchedWriter`, the engine callback that buffers events and writes them in batches
  (`write_events` writes one list at once, for tools and tests);
- `lifecycle`: `record_run`, one training from "running" to its final status (heartbeat, stop
  flag, the end rule), and `store_tracker`, the benchmark's way to record its trainings.

- `ingest`: events reported over HTTP (every run a launcher starts, and remote runs), written
  exactly once by sequence number; a resumed attempt's RunStarted drops the earlier tail.

Runs a dashboard starts report through the ingest API (backend/worker.py), so the server writes
them. The `marginscope bench` store option and the measurement scripts, which train in their own
process with no dashboard, record through `record_run` (and a BatchedWriter); they never resume.
"""

from marginscope.backend.recording.lifecycle import (
    END_MAY_REPLACE,
    Recorder,
    record_end,
    record_run,
    store_tracker,
)
from marginscope.backend.recording.mapping import to_batch
from marginscope.backend.recording.writer import BatchedWriter, write_events

__all__ = ["END_MAY_REPLACE", "BatchedWriter", "Recorder", "record_end", "record_run", "store_tracker",
           "to_batch", "write_events"]
