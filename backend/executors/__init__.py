"""Executors: where the launcher's queued runs train.

Both run the same trainer, `marginscope.backend.worker.train_run`: it claims the queued run through
this dashboard's ingest API with the run's own credential (minted by the launcher for this
attempt), trains it in the run's folder (resuming from its checkpoint when asked) and reports
every event over HTTP through `marginscope.engine.remote.HttpReporter` and the run's spool. No
trainer opens the database: the server is its only writer.

- `local` (the default, `LocalExecutor`): one worker process per run on the dashboard's machine
  (`python -m marginscope.backend.worker <id>`), reporting over loopback; the launcher supervises
  its process (pid, signals, exit code).
- `dask` (`DaskExecutor`, MARGINSCOPE_EXECUTOR=dask): each run is a task on an existing Dask
  cluster (MARGINSCOPE_DASK_SCHEDULER) calling `train_run` on a Dask worker, which reaches the
  dashboard at `Settings.public_url`; the run becomes a remote run, so the launcher watches it by
  its heartbeat and cancels it through the stop flag.

The launcher asks an executor for three things (`Executor`): start a run, say which started runs'
tasks ended and how, and forget a run (cancel). Pick one with `make_executor(settings)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from marginscope.backend.settings import Settings
    from marginscope.backend.store import Run


class ExecutorError(RuntimeError):
    """A run could not be started; the message says why (the run is marked failed with it)."""


class Executor(Protocol):
    kind: str  # "local" or "dask": the value of MARGINSCOPE_EXECUTOR

    def start(self, run: Run, run_dir: Path, *, resume: bool,
              credential: str) -> subprocess.Popen[bytes] | None:
        """Start queued run `run` in `run_dir` (from its checkpoint there when `resume`), its
        trainer reporting with `credential`. A local worker process is returned for the launcher
        to supervise; None means the run trains elsewhere and reports back itself. Raises
        ExecutorError when it cannot be started."""

    def ended(self) -> list[tuple[int, str | None]]:
        """Runs whose task ended since the last call: (run id, None or why it failed)."""

    def started(self) -> set[int]:
        """Ids of the runs whose task has not ended yet."""

    def cancel(self, run_id: int) -> None:
        """Stop caring for run `run_id`'s task (a queued run's task is dropped before it starts)."""

    def close(self) -> None:
        """Let go of the executor's resources (the runs keep going)."""


def make_executor(settings: Settings) -> Executor:
    """The executor `settings.executor` names (the Dask one connects to its scheduler first)."""
    if settings.executor == "dask":
        from marginscope.backend.executors.dask import DaskExecutor

        return DaskExecutor(settings)
    from marginscope.backend.executors.local import LocalExecutor

    return LocalExecutor(settings)
