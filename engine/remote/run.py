"""Train here, watch in a dashboard elsewhere: `train_remote`, `remote_run` and `sync`.

- `train_remote(config, server=...)`: the engine's training with an HttpReporter; `claim=<id>`
  takes over a run queued in the dashboard (a cluster executor's task does that).
- `remote_run(server, config)`: a context manager for a training loop of one's own. It announces
  the run, gives `run.log({...}, step=...)` for any scalar, builds the engine's events without
  hand-made Counters (`run.histogram(scores)`, `run.evaluation(...)`, `run.emit(...)`), and
  reports how the loop ended (finished; cancelled when `run.should_stop()` was honoured; failed
  on an exception).
- `sync(folder, server)`: upload a spooled run (trained offline, or whose dashboard was down
  when it ended).
"""

from __future__ import annotations

import logging
import time
import traceback as tb
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from marginscope.engine.config import TrainConfig
from marginscope.engine.events import (
    Callback,
    Counters,
    Evaluation,
    Event,
    LogMessage,
    RunFailed,
    RunFinished,
    RunStarted,
    Scalars,
)
from marginscope.engine.remote.http import IngestClient, SeqGap
from marginscope.engine.remote.reporter import MAX_BATCH_BYTES, HttpReporter
from marginscope.engine.remote.spool import Spool

log = logging.getLogger(__name__)


class RemoteRefused(RuntimeError):
    """The dashboard refused the run (a wrong token, an invalid config, an unknown run)."""


class EndSeen:
    """A callback noting whether the run reported its end (train() reports only Exceptions); the
    dashboard's trainer (backend/worker.py) uses it too."""

    def __init__(self) -> None:
        self.ended = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunFinished | RunFailed):
            self.ended = True


def train_remote(config: TrainConfig | None = None, *, server: str, token: str | None = None,
                 claim: int | None = None, spool_dir: Path | None = None,
                 callbacks: Sequence[Callback] = (), name: str | None = None,
                 tags: Sequence[str] = (), notes: str = "",
                 should_stop: Callable[[], bool] | None = None,
                 reporter_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train `config` on this machine, reporting to the dashboard at `server`; returns the run's
    summary (TrainResult.summary plus `run_id`). With `claim`, the queued run of that id is taken
    over and its stored config trained (unless `config` is given). A run without an out_dir keeps
    its checkpoints in its spool folder, so a cancel from the dashboard ends with one.
    `should_stop`: a stop of the caller's own (a signal), besides the dashboard's."""
    from marginscope.engine.loop import train

    options = dict(reporter_options or {})
    reporter = HttpReporter(server, token=token, claim=claim, spool_dir=spool_dir, name=name, tags=tags,
                            notes=notes, config=None if claim is not None or config is None
                            else config.model_dump(mode="json"), **options)
    if reporter.failed:
        reporter.close(timeout=0)
        raise RemoteRefused(f"{server} refused the run: {reporter.failed}")
    if config is None:
        if reporter.claimed_config is None:
            raise ValueError("train_remote needs a config, or claim=<run id> of a queued run")
        config = TrainConfig(**reporter.claimed_config)
    if config.out_dir is None:
        config = config.model_copy(update={"out_dir": str(reporter.spool.path / "checkpoints")})
    ended = EndSeen()
    try:
        def stop() -> bool:
            return reporter.should_stop() or (should_stop is not None and should_stop())

        result = train(config, [reporter, ended, *callbacks], should_stop=stop)
    except BaseException as exc:
        if not ended.ended:  # an interrupt
            reporter(RunFailed(step=0, error=f"{type(exc).__name__}: {exc}", traceback=tb.format_exc()))
        raise
    finally:
        reporter.close()
    return {**result.summary, "run_id": reporter.run_id, "spool": str(reporter.spool.path)}


class RemoteRun:
    """What `remote_run` yields: a user's loop reports through it (see the module docstring)."""

    def __init__(self, reporter: HttpReporter, config: TrainConfig, steps_per_epoch: int) -> None:
        self.reporter = reporter
        self.config = config
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.step = 0
        self.samples_forwarded = 0
        self.samples_backpropagated = 0
        self._start = time.perf_counter()
        from marginscope.engine.monitoring import histogram_edges

        self.edges = histogram_edges(config.hist_bins)

    @property
    def run_id(self) -> int | None:
        return self.reporter.run_id

    def should_stop(self) -> bool:
        """True when the dashboard asked the run to stop: save a checkpoint and leave the loop."""
        return self.reporter.should_stop()

    def advance(self, step: int, *, forwarded: int = 0, backpropagated: int = 0) -> None:
        """Move the run to `step`, adding the samples this stretch forwarded / back-propagated."""
        self.step = int(step)
        self.samples_forwarded += int(forwarded)
        self.samples_backpropagated += int(backpropagated)

    def counters(self, step: int | None = None) -> Counters:
        """The engine's Counters at `step` (default: the current one), timed since the start."""
        if step is not None:
            self.step = int(step)
        return Counters(step=self.step, epoch=self.step / self.steps_per_epoch,
                        samples_forwarded=self.samples_forwarded,
                        samples_backpropagated=self.samples_backpropagated,
                        wall_time=time.perf_counter() - self._start)

    def emit(self, event: Event) -> None:
        """Report any engine event (StepMetrics, Histogram, ClassSelection, ...)."""
        self.reporter(event)

    def log(self, values: Mapping[str, float], *, step: int | None = None) -> None:
        """Report scalars, e.g. run.log({"train/loss": 0.31, "val/accuracy": 0.9}, step=120)."""
        self.emit(Scalars(counters=self.counters(step), values={k: float(v) for k, v in values.items()}))

    def message(self, text: str, level: str = "info") -> None:
        self.emit(LogMessage(step=self.step, level=level, message=text))  # type: ignore[arg-type]

    def histogram(self, scores: Any, population: str = "candidates", *, step: int | None = None,
                  threshold: float | None = None) -> None:
        """The MMS histogram of `scores` (a tensor, e.g. `selection.scores` of an engine
        selector) on the run's fixed edges."""
        from marginscope.engine.monitoring import histogram_event

        self.emit(histogram_event(scores, self.edges, self.counters(step), population, threshold))

    def evaluation(self, accuracy: float, loss: float, *, split: str = "val", step: int | None = None,
                   per_class_accuracy: Sequence[float] = (), samples: int = 0) -> None:
        self.emit(Evaluation(counters=self.counters(step), split=split, loss=float(loss),  # type: ignore[arg-type]
                             accuracy=float(accuracy), per_class_accuracy=[float(a) for a in per_class_accuracy],
                             samples=int(samples)))


@contextmanager
def remote_run(server: str, config: TrainConfig | Mapping[str, Any], *, token: str | None = None,
               name: str | None = None, tags: Sequence[str] = (), notes: str = "",
               spool_dir: Path | None = None, total_steps: int | None = None,
               steps_per_epoch: int = 1, dataset: Mapping[str, Any] | None = None,
               model: Mapping[str, Any] | None = None, device: str = "cpu",
               reporter_options: Mapping[str, Any] | None = None) -> Iterator[RemoteRun]:
    """A run of one's own loop, streamed to the dashboard at `server`.

    `config`: TrainConfig fields describing the loop (dataset, model, selector, batch_size,
    candidates, steps...): they label the run in the dashboard and are validated as a launch's.
    `dataset` / `model`: facts the run page shows (e.g. {"class_names": [...]})."""
    config = config if isinstance(config, TrainConfig) else TrainConfig(**dict(config))
    reporter = HttpReporter(server, token=token, config=config.model_dump(mode="json"), name=name,
                            tags=tags, notes=notes, spool_dir=spool_dir, **dict(reporter_options or {}))
    if reporter.failed:
        reporter.close(timeout=0)
        raise RemoteRefused(f"{server} refused the run: {reporter.failed}")
    total = total_steps or config.steps or 0
    run = RemoteRun(reporter, config, steps_per_epoch)
    try:
        run.emit(RunStarted(config=config.model_dump(mode="json"), dataset=dict(dataset or {"name": config.dataset}),
                            model=dict(model or {"name": config.model}), device=device, total_steps=total,
                            steps_per_epoch=run.steps_per_epoch, hist_edges=run.edges.tolist()))
        try:
            yield run
        except BaseException as exc:
            run.emit(RunFailed(step=run.step, error=f"{type(exc).__name__}: {exc}", traceback=tb.format_exc()))
            raise
        status = "cancelled" if run.should_stop() else "finished"
        run.emit(RunFinished(counters=run.counters(), status=status,  # type: ignore[arg-type]
                             summary={"steps": run.step, "status": status}))
    finally:
        reporter.close()


def sync(folder: Path, *, server: str | None = None, token: str | None = None,
         batch: int = 500) -> dict[str, Any]:
    """Upload the spooled run in `folder` to `server` (default: the one it reported to); returns
    {run_id, sent, next_seq}. A run the dashboard never created is created first (running, then
    its own events end it). Safe to repeat: the dashboard keeps each event once."""
    spool = Spool(Path(folder))
    meta = spool.meta()
    target = (server or meta["server"]).rstrip("/")
    client = IngestClient(target, token=token)
    try:
        same_server = target == meta["server"].rstrip("/")
        # the run's id on the dashboard it reported to, or on another one it was synced to before
        synced: dict[str, list[int]] = meta.get("synced") or {}
        run_id, offset = meta.get("run_id"), 0
        if not same_server:
            run_id, offset = synced.get(target, (None, 0))
        first = int(meta.get("first_seq") or 0)
        events = [text for _, text in spool.read(first)]
        # the dashboard's number of the spool's event `seq` is seq + offset
        if run_id is None:
            create = meta.get("create")
            if not create or "config" not in create:
                raise RemoteRefused(f"{folder}: this run never started training: nothing to upload")
            answer = client.create_run(create)
            run_id = int(answer["run"]["id"])
            offset = int(answer["next_seq"]) - first
            meta = {**meta, "run_id": run_id} if same_server else \
                {**meta, "synced": {**synced, target: [run_id, offset]}}
            spool.write_meta(meta)
        acked = spool.acked() if same_server else None
        pos = acked if acked is not None else first  # the spool's next event to send
        sent = 0
        while pos < first + len(events):
            if pos < first:
                raise RemoteRefused(f"run {run_id} expects event {pos + offset}, before this spool's first")
            chunk, size = [], 0
            for text in events[pos - first:pos - first + batch]:
                if chunk and size + len(text) > MAX_BATCH_BYTES:
                    break
                chunk.append(text)
                size += len(text) + 1
            try:
                answer = client.post_events(run_id, pos + offset, chunk)
            except SeqGap as gap:
                pos = gap.expected - offset
                continue
            sent += len(chunk)
            pos = int(answer["next_seq"]) - offset
            if same_server:
                spool.write_acked(pos)
        return {"run_id": run_id, "sent": sent, "next_seq": pos + offset}
    finally:
        client.close()
