"""Remote runs: train on any machine, watch the run in a MarginScope dashboard elsewhere.

    from marginscope.engine.remote import train_remote, remote_run, HttpReporter, sync

- `HttpReporter`: an engine callback streaming events to the dashboard's ingest API (batched,
  retried, spooled to a local file first: nothing is lost while the dashboard is down);
- `train_remote(config, server=...)`: the engine's training, reported that way (`claim=` takes
  over a run queued in the dashboard);
- `remote_run(server, config)`: the same for a training loop of one's own;
- `sync(folder)`: upload a spooled run later (`marginscope sync DIR`).

Only httpx and the engine: the engine never imports the backend.
"""

from marginscope.engine.remote.http import IngestClient, Refused, SeqGap, Unavailable
from marginscope.engine.remote.reporter import HttpReporter
from marginscope.engine.remote.run import RemoteRefused, RemoteRun, remote_run, sync, train_remote
from marginscope.engine.remote.spool import Spool, default_spool_dir

__all__ = ["HttpReporter", "IngestClient", "Refused", "RemoteRefused", "RemoteRun", "SeqGap", "Spool",
           "Unavailable", "default_spool_dir", "remote_run", "sync", "train_remote"]
