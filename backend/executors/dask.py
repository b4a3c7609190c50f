"""The Dask executor: each queued run becomes a task on an existing Dask cluster.

The task is `marginscope.backend.worker.train_run(<run id>, server=<this dashboard>,
credential=<the run's>, run_dir=<its folder>, resume=...)`, what a local worker process runs: on
whichever Dask worker runs it, it takes the queued run over through the ingest API (the run
becomes a remote run: running, with that worker's host and pid) and trains it there, reporting
back over HTTP. The task carries the run's own credential, never the dashboard's token: leaked
from the cluster, it reports that run's current attempt and opens nothing else. Checkpoints and
the spool go to the run's folder under the dashboard's data dir, as for a local run, so a resume
finds them when the Dask workers share that folder (a cluster's shared filesystem); a run folder
the workers cannot create fails the run, naming it. From then on the launcher treats it like any remote run: it watches its heartbeat
(stale: crashed) and a cancel sets its stop flag, which the run reads in its next heartbeat answer
and ends with a checkpoint. A queued run's task is cancelled in Dask before it starts.

A task that ends with an error (the claim refused, training failed before it could report, or the
Dask worker died: Dask retries the task on another worker, whose claim is refused since the run
is already running) is reported by `ended()`; the launcher marks a run still queued or running as
crashed with that error, without waiting for the heartbeat to go stale.

Resource hints pass through as Dask resources: `dask_gpus_per_run` > 0 asks for `GPU` units, so
only workers started with `--resources GPU=<n>` run the task.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from marginscope.backend.executors import ExecutorError
from marginscope.backend.extras import MissingExtra, require
from marginscope.backend.settings import Settings
from marginscope.backend.store import Run

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0


def task_key(run_id: int) -> str:
    """The task's name in the Dask dashboard: the run it trains."""
    return f"marginscope-run-{run_id}"


class DaskExecutor:
    """Submits runs to the scheduler at `settings.dask_scheduler`; keeps one future per run."""

    kind = "dask"

    def __init__(self, settings: Settings) -> None:
        if not settings.dask_scheduler:
            raise ExecutorError("MARGINSCOPE_EXECUTOR=dask needs MARGINSCOPE_DASK_SCHEDULER, the "
                                "scheduler's address (tcp://host:8786)")
        try:  # at start-up, not at the first run: the server says at once what it lacks
            require("distributed", "dask", "MARGINSCOPE_EXECUTOR=dask")
        except MissingExtra as exc:
            raise ExecutorError(str(exc)) from exc
        self.settings = settings
        self.server = settings.public_url
        self._client: Any = None  # connected on the first run: a command that only cancels never does
        self._lock = threading.Lock()
        self._futures: dict[int, Any] = {}  # run id -> distributed.Future

    def _connect(self) -> Any:
        from distributed import Client

        if self._client is None:
            try:
                self._client = Client(self.settings.dask_scheduler, timeout=CONNECT_TIMEOUT_S,
                                      set_as_default=False)
            except OSError as exc:
                raise ExecutorError(f"cannot reach the Dask scheduler at {self.settings.dask_scheduler}: "
                                    f"{exc}") from exc
        return self._client

    def start(self, run: Run, run_dir: Path, *, resume: bool, credential: str) -> None:
        from marginscope.backend.worker import train_run

        gpus = self.settings.dask_gpus_per_run
        client = self._connect()
        try:
            future = client.submit(
                train_run, run.id, server=self.server, credential=credential, run_dir=str(run_dir),
                resume=resume, heartbeat_interval=self.settings.heartbeat_interval,
                key=task_key(run.id), pure=False, resources={"GPU": gpus} if gpus > 0 else None)
        except Exception as exc:  # noqa: BLE001 - a scheduler gone away: the run fails, saying why
            raise ExecutorError(f"cannot submit to the Dask scheduler at "
                                f"{self.settings.dask_scheduler}: {exc}") from exc
        with self._lock:
            self._futures[run.id] = future
        log.info("run %d submitted to Dask (%s)%s", run.id, self.settings.dask_scheduler,
                 f", {gpus:g} GPU" if gpus > 0 else "")
        return None

    def ended(self) -> list[tuple[int, str | None]]:
        out: list[tuple[int, str | None]] = []
        with self._lock:
            for run_id, future in list(self._futures.items()):
                if not future.done():
                    continue
                del self._futures[run_id]
                error: str | None = None
                if future.status == "error":
                    exc = future.exception()
                    error = f"Dask task {task_key(run_id)} failed: {type(exc).__name__}: {exc}"
                elif future.status == "cancelled":
                    error = f"Dask task {task_key(run_id)} was cancelled (its worker or scheduler gone)"
                out.append((run_id, error))
        return out

    def started(self) -> set[int]:
        with self._lock:
            return set(self._futures)

    def cancel(self, run_id: int) -> None:
        with self._lock:
            future = self._futures.pop(run_id, None)
        if future is not None:
            future.cancel()

    def close(self) -> None:
        with self._lock:
            self._futures.clear()
        if self._client is not None:
            self._client.close(timeout=CONNECT_TIMEOUT_S)
            self._client = None
