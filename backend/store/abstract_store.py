"""The store interface that routes, the live hub, the launcher, the worker and the CLI see.

Follows MLflow's `mlflow/store/tracking/abstract_store.py`: required operations are abstract with
their contract in the docstring; `sqlalchemy_store.SqlAlchemyStore` implements them. Everything
returns `entities` values, never ORM rows; errors are `exceptions` (RunNotFound → 404, ...).

Ordering guarantee (the hub relies on it): every data row of a run (scalar, histogram, selection,
log line) carries a per-run `seq` assigned in the writing transaction; seqs of a run are unique and
strictly increasing in commit order, across all kinds. `changes_since(run_id, s)` therefore returns
exactly the rows a client that has seen everything up to `s` is missing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from marginscope.backend.store.abstract_samples import AbstractSamplesStore
from marginscope.backend.store.entities import (
    Changes,
    HistogramRow,
    HistogramSeries,
    LogLine,
    NewRun,
    Run,
    RunBatch,
    RunStatus,
    ScalarRow,
    SelectionRow,
    SelectionSeries,
    Series,
    TargetReached,
)

# sort keys accepted by list_runs (prefix "-" for descending)
RUN_SORT_KEYS = ("id", "name", "status", "created_at", "started_at", "finished_at", "dataset",
                 "model", "selector", "candidates", "batch_size", "step")


class AbstractStore(AbstractSamplesStore, ABC):
    """Runs and their rows; the samples reads are declared in abstract_samples.py."""

    # ------------------------------------------------------------------ runs

    def create_run(self, *, name: str | None, config: dict[str, Any], tags: Sequence[str] = (),
                   notes: str = "", launcher: str | None = None) -> Run:
        """Insert a queued run (`create_runs` of one)."""
        return self.create_runs([NewRun(name=name, config=config, tags=tags, notes=notes)],
                                launcher=launcher)[0]

    @abstractmethod
    def create_runs(self, runs: Sequence[NewRun], *, launcher: str | None = None) -> list[Run]:
        """Insert queued runs, all or none (one transaction: a sweep never half-launches).
        Each `config` is the validated TrainConfig as a dict (model_dump()). `launcher`: the
        launcher that is to start them (None: the first that claims each).

        dataset/model/selector/candidates/batch_size are copied from it for filtering. A missing
        name becomes "run-<id>". Text no backend can keep raises InvalidArgument naming the field."""

    @abstractmethod
    def check_new_runs(self, runs: Sequence[NewRun]) -> None:
        """Raise InvalidArgument, as `create_runs` would, for text no backend can keep; inserts
        nothing (a sweep's preview refuses what its launch would)."""

    @abstractmethod
    def get_run(self, run_id: int) -> Run:
        """The run with its `latest` scalars filled in. Raises RunNotFound."""

    @abstractmethod
    def list_runs(self, *, status: str | Sequence[str] | None = None, dataset: str | None = None,
                  model: str | None = None, selector: str | None = None, tag: str | None = None,
                  sort: str = "-created_at", limit: int = 50, offset: int = 0,
                  filter_string: str | None = None,
                  order_by: str | None = None) -> tuple[list[Run], int]:
        """(one page of runs with `latest` and `queue_position` filled, total count matching the
        filters).

        sort: one of RUN_SORT_KEYS, "-" prefix = descending; ties broken by id. Unknown sort,
        negative limit/offset → InvalidArgument. `tag` matches runs having that exact tag.
        `filter_string` and `order_by`: MLflow's search syntax (search.py), evaluated by the
        database; order_by, when given, replaces `sort`. A string the grammar refuses raises
        search.SearchError (an InvalidArgument naming the token)."""

    @abstractmethod
    def update_run(self, run_id: int, *, name: str | None = None, tags: Sequence[str] | None = None,
                   notes: str | None = None) -> Run:
        """Change only the given fields (None = unchanged). Raises RunNotFound."""

    @abstractmethod
    def delete_run(self, run_id: int) -> None:
        """Delete the run, every row of it, and its folder <data_dir>/runs/<id>.

        Raises RunNotFound; Conflict when the run is running (cancel it first)."""

    @abstractmethod
    def set_status(self, run_id: int, status: RunStatus | str, *, pid: int | None = None,
                   host: str | None = None, error: str | None = None,
                   traceback: str | None = None, message: str | None = None,
                   expect: Sequence[RunStatus | str] | None = None) -> Run:
        """Change the status; stamps started_at (the first → running; a resume keeps it),
        finished_at (→ an ended status; cleared on → queued/running), status_changed_at, and
        heartbeat_at (→ running). pid/host/error/traceback are set when given (→ queued/running clears error,
        traceback; → queued clears pid/host). Writes a log line (with a new seq) describing the
        change, and records that seq as `status_seq`, so the hub notices status changes through
        `changes_since`. `expect`: the statuses the run may be in, checked atomically with the
        change — Conflict otherwise (e.g. the worker starts only a queued run; a cancel of a run
        that just finished fails). Free text (host, error, traceback, message) is kept as given
        except NUL, which becomes U+FFFD. Raises RunNotFound, InvalidArgument (unknown status)."""

    @abstractmethod
    def start_remote(self, run_id: int | None, *, host: str, pid: int, name: str | None = None,
                     config: dict[str, Any] | None = None, tags: Sequence[str] = (),
                     notes: str = "", executor: str | None = "remote") -> Run:
        """A run whose trainer reports over HTTP, marked running (with the trainer's host and
        pid) in one transaction. `executor` "remote": it trains elsewhere, watched by heartbeat
        only, so the launcher never spawns a worker for it; None: the launcher's own worker
        process claims it (supervised by pid). `run_id` None: a new run from
        name/config/tags/notes (as create_run checks them); an id: that queued run is taken over
        (Conflict unless queued; RunNotFound)."""

    @abstractmethod
    def set_credential(self, run_id: int, digest: str | None) -> None:
        """Store the digest of the run's credential (None: the run has none); RunNotFound."""

    @abstractmethod
    def credential_digest(self, run_id: int) -> str | None:
        """The digest `set_credential` stored for the run (None: none); RunNotFound."""

    @abstractmethod
    def request_stop(self, run_id: int) -> Run:
        """Ask a running remote run to stop: sets `stop_requested` (its heartbeat's answer carries
        it) and logs the request. Conflict unless it is running and remote; RunNotFound."""

    @abstractmethod
    def heartbeat(self, run_id: int) -> RunStatus:
        """Set heartbeat_at = now (the worker calls it every heartbeat_interval seconds) and return
        the run's status: a worker whose run is no longer `running` stops (someone who could not
        signal it ended the run). Raises RunNotFound (deleted: the worker stops too)."""

    @abstractmethod
    def claim_queued(self, run_id: int, launcher: str, *, take: bool = False) -> bool:
        """Make `launcher` the one that starts queued run `run_id`, atomically: only when no other
        launcher has it (`take`: whoever had it, e.g. a resume from this dashboard). True when the
        run is queued and now this launcher's; False otherwise (RunNotFound for an unknown id)."""

    @abstractmethod
    def next_queued(self, limit: int = 1, *, launcher: str | None = None) -> list[Run]:
        """The oldest queued runs (FIFO by id), for the launcher's scheduler; with `launcher`, only
        those it may start (its own and those no launcher has claimed)."""

    @abstractmethod
    def runs_changed_since(self, since: datetime | None) -> list[Run]:
        """Runs whose status changed at or after `since` (all runs when None), oldest change first.

        For WS /ws/runs: poll with the largest status_changed_at seen and de-duplicate on
        (id, status, status_seq) — times from several processes can tie."""

    @abstractmethod
    def last_seq(self, run_id: int) -> int:
        """The run's highest seq (one indexed read: the hub polls it). Raises RunNotFound."""

    @abstractmethod
    def last_seqs(self, run_ids: Sequence[int]) -> dict[int, int]:
        """{run id: highest seq} for these runs in one query; unknown (deleted) ids are absent."""

    # ------------------------------------------------------------------ writing

    @abstractmethod
    def log_batch(self, run_id: int, batch: RunBatch, *, expect_seq: int | None = None,
                  next_seq: int | None = None) -> int:
        """Persist a batch in one transaction and return the run's last_seq after it.

        `expect_seq`/`next_seq` (the ingest API): the batch holds a remote run's reported events
        expect_seq..next_seq-1. In the same transaction the run's `ingest_seq` must equal
        `expect_seq` (else SeqMismatch naming it, nothing written) and becomes `next_seq`, and
        heartbeat_at is set (a reporting run is alive), so a batch is written at most once.

        Every row of `batch.rows` gets the next seq, in order; metric points also become the
        latest value of their key (by step; the last written wins a tie), and so does each counter
        of `batch.update.progress`. Edges are stored once per run and population (a resume sends
        them again). Rows are kept as given: what they mean (which keys, which log lines) is the
        writer's business (marginscope.backend.recording), and statuses are NOT changed here (`set_status`).
        Text is kept except NUL (→ U+FFFD); non-finite floats are stored as NULL (read as NaN).
        Raises RunNotFound."""

    @abstractmethod
    def append_log(self, run_id: int, level: str, message: str, *, step: int | None = None) -> int:
        """Add one log line (level: one of entities.LOG_LEVELS); returns its seq."""

    @abstractmethod
    def truncate_after_step(self, run_id: int, step: int) -> int:
        """Delete the run's scalar/histogram/selection rows with step > `step` (log lines stay),
        and rebuild its latest values and progress from what remains. Used before a resume from a
        checkpoint at `step`, so the series continue without the crashed attempt's tail.
        Marks the resume: `attempt` + 1, a log line ("resuming from the checkpoint at step ...")
        whose seq becomes `resumed_at_seq` (so `changes_since` reports `resumed`).
        Returns the number of rows deleted. (A reported resume does this inside `log_batch`, for
        a batch whose `resume_from_step` is set.)"""

    # ------------------------------------------------------------------ reading

    @abstractmethod
    def latest(self, run_id: int) -> dict[str, float]:
        """{key: latest value} (by step; the last written wins a tie)."""

    @abstractmethod
    def metric_keys(self, run_id: int) -> list[str]:
        """The scalar keys this run has, sorted."""

    @abstractmethod
    def get_series(self, run_id: int, keys: Sequence[str], *, x: str = "step",
                   max_points: int = 2000) -> dict[str, Series]:
        """{key: Series} ordered by step, downsampled to at most max_points per key keeping the
        first, the last, and each bucket's min and max (`downsample.downsample_indices`).
        x ∈ entities.X_AXES, else InvalidArgument. Unknown keys give empty series.
        Raises RunNotFound."""

    @abstractmethod
    def get_scalars(self, run_id: int, *, keys: Sequence[str] | None = None,
                    max_points: int | None = None) -> list[ScalarRow]:
        """Scalar rows with every counter, ordered by key then step: all of them (export), or at
        most `max_points` per key chosen as `get_series` chooses them (the live snapshot)."""

    @abstractmethod
    def iter_scalars(self, run_id: int, *, until_seq: int) -> Iterator[ScalarRow]:
        """Every scalar row with seq <= until_seq, ordered as `get_scalars`, read in chunks: the
        export streams a run of any size in bounded memory. Raises RunNotFound (on first next())."""

    @abstractmethod
    def iter_histograms(self, run_id: int, population: str, *,
                        until_seq: int) -> Iterator[HistogramRow]:
        """Every histogram row of one population with seq <= until_seq, by step, in chunks."""

    @abstractmethod
    def iter_selection(self, run_id: int, *, until_seq: int) -> Iterator[SelectionRow]:
        """Every selection row with seq <= until_seq, by step, in chunks."""

    @abstractmethod
    def get_edges(self, run_id: int) -> dict[str, list[float]]:
        """{population: edges} for the populations this run has (empty before RunStarted)."""

    @abstractmethod
    def get_histograms(self, run_id: int, population: str, *, start: int | None = None,
                       end: int | None = None, stride: int = 1,
                       max_rows: int = 500) -> HistogramSeries:
        """Histogram rows of one population with start <= step <= end, every `stride`-th row; if
        more than max_rows remain, thinned evenly (the last row is always kept).
        population ∈ {candidates, selected}, stride >= 1, else InvalidArgument."""

    @abstractmethod
    def latest_histograms(self, run_id: int) -> dict[str, HistogramSeries]:
        """{population: HistogramSeries with only the latest row} — for the websocket snapshot."""

    @abstractmethod
    def get_selection(self, run_id: int, *, max_points: int = 500) -> SelectionSeries:
        """Per-class selection rows over steps (evenly thinned to max_points, last kept),
        with the run's class names."""

    @abstractmethod
    def get_logs(self, run_id: int, *, after: int = 0, limit: int = 500) -> list[LogLine]:
        """Log lines with seq > after, oldest first, at most limit."""

    @abstractmethod
    def changes_since(self, run_id: int, seq: int, *, limit: int = 5000) -> Changes:
        """All rows of every kind with seq > `seq` (at most `limit` rows in all, in seq order;
        `more` says if cut). See entities.Changes. Raises RunNotFound."""

    @abstractmethod
    def time_to_target(self, run_id: int, key: str, target: float, *,
                       higher_is_better: bool = True) -> TargetReached:
        """The first logged row of `key` whose value reaches `target` (>= or <=), with its
        counters, and the best value over the run."""

    # ------------------------------------------------------------------ housekeeping

    @abstractmethod
    def run_dir(self, run_id: int) -> str:
        """<data_dir>/runs/<id> (not created): checkpoints and the worker's log go here."""

    def close(self) -> None:
        """Release the database connections (optional)."""

