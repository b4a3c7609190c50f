"""Engine events → the store's rows and run updates (entities; the store never sees an event).

What each event becomes:
- StepMetrics → train/loss, train/accuracy, lr, samples_per_s, score_time, step_time, and the
  run's progress (step, epoch, the latest counters);
- Histogram → a histogram row, then mms/<population>/p5|p50|p95|mean and mms/threshold (when
  the selector reports one);
- ClassSelection → a selection row, then selection/misclassified_share;
- Evaluation → <split>/loss, <split>/accuracy, per-class accuracy in run_info, and for val also
  val/best_accuracy: the running maximum over the run (`best` carries it across batches);
- RunStarted → the histogram edges of every population, total_steps, the model built (a config's
  "auto" becomes the engine's choice, which the runs list shows), run_info (dataset facts
  with class_names, model, device, steps per epoch, the step resumed from). No log line: the
  engine logs its own "started ..." / "resumed at step ..." line. A resumed attempt's RunStarted
  (resumed_from_step > 0) also sets the batch's `resume_from_step`: the store drops the rows after
  that step (the earlier attempt's) before it writes the batch, so it must open its batch;
- Scalars (a user's own loop) → one scalar per key, and the run's progress;
- SampleSnapshot → a sample snapshot row (the store also updates the samples it names in place);
- LogMessage → a log line (an unknown level is logged as info);
- CheckpointSaved → checkpoint_path/step and a log line;
- RunFinished → the summary and the final progress; RunFailed → error and traceback. No log line
  and no status: `record_run` sets the final status, whose log line says how the run ended.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from marginscope.backend.store.entities import (
    LOG_LEVELS,
    HistogramPoint,
    LogEntry,
    MetricPoint,
    Position,
    RunBatch,
    SamplePoint,
    SelectionPoint,
)
from marginscope.engine.events import (
    POPULATIONS,
    CheckpointSaved,
    ClassSelection,
    Counters,
    Evaluation,
    Event,
    Histogram,
    LogMessage,
    RunFailed,
    RunFinished,
    RunStarted,
    SampleSnapshot,
    Scalars,
    StepMetrics,
)

log = logging.getLogger(__name__)

BEST_VAL_ACCURACY = "val/best_accuracy"


def needs_best(events: Sequence[Event]) -> bool:
    """Whether mapping these events needs the run's best validation accuracy so far."""
    return any(isinstance(e, Evaluation) and e.split == "val" for e in events)


def to_batch(events: Sequence[Event], best: float | None = None) -> tuple[RunBatch, float | None]:
    """(the batch for `events`, the best validation accuracy after them); `best` is the best
    before them (None: no validation yet)."""
    batch = RunBatch()
    rows, update = batch.rows, batch.update
    for i, e in enumerate(events):
        if isinstance(e, StepMetrics):
            at = _position(e.counters)
            rows += [MetricPoint("train/loss", e.loss, at), MetricPoint("train/accuracy", e.accuracy, at),
                     MetricPoint("lr", e.lr, at), MetricPoint("samples_per_s", e.samples_per_s, at),
                     MetricPoint("score_time", e.score_time, at), MetricPoint("step_time", e.step_time, at)]
            _advance(batch, at)
        elif isinstance(e, Histogram):
            at = _position(e.counters)
            rows.append(HistogramPoint(population=e.population, at=at, counts=list(e.counts),
                                       quantiles=dict(e.quantiles), mean=e.mean, count=e.count,
                                       threshold=e.threshold))
            rows += [MetricPoint(f"mms/{e.population}/{k}", e.quantiles.get(k), at)
                     for k in ("p5", "p50", "p95")]
            rows.append(MetricPoint(f"mms/{e.population}/mean", e.mean, at))
            if e.threshold is not None:
                rows.append(MetricPoint("mms/threshold", e.threshold, at))
        elif isinstance(e, ClassSelection):
            at = _position(e.counters)
            rows.append(SelectionPoint(at=at, candidate_counts=list(e.candidate_counts),
                                       selected_counts=list(e.selected_counts),
                                       misclassified_share=e.selected_misclassified))
            rows.append(MetricPoint("selection/misclassified_share", e.selected_misclassified, at))
        elif isinstance(e, SampleSnapshot):
            rows.append(SamplePoint(at=_position(e.counters), scored=e.scored, lowest=dict(e.lowest),
                                    selected=dict(e.selected), suspects=dict(e.suspects),
                                    flipped=list(e.flipped)))
        elif isinstance(e, Evaluation):
            at = _position(e.counters)
            rows += [MetricPoint(f"{e.split}/loss", e.loss, at), MetricPoint(f"{e.split}/accuracy", e.accuracy, at)]
            if e.split == "val":
                if math.isfinite(e.accuracy) and (best is None or e.accuracy > best):
                    best = float(e.accuracy)
                rows.append(MetricPoint(BEST_VAL_ACCURACY, best, at))
            per_class = update.run_info.setdefault("per_class_accuracy", {})
            per_class[e.split] = [float(x) for x in e.per_class_accuracy]
        elif isinstance(e, RunStarted):
            if e.resumed_from_step > 0:
                if i > 0:  # rows before it in this batch would escape the truncation
                    raise ValueError("a resumed attempt's RunStarted must open its batch")
                batch.resume_from_step = int(e.resumed_from_step)
            batch.edges = {pop: [float(x) for x in e.hist_edges] for pop in POPULATIONS}
            update.total_steps = int(e.total_steps)
            update.model = str(e.model["name"]) if e.model.get("name") else None
            update.run_info.update({"dataset": dict(e.dataset), "model": dict(e.model), "device": e.device,
                                    "steps_per_epoch": int(e.steps_per_epoch),
                                    "resumed_from_step": int(e.resumed_from_step)})
        elif isinstance(e, Scalars):
            at = _position(e.counters)
            rows += [MetricPoint(str(key), value, at) for key, value in e.values.items()]
            _advance(batch, at)
        elif isinstance(e, LogMessage):
            rows.append(LogEntry(e.level if e.level in LOG_LEVELS else "info", e.message, e.step))
        elif isinstance(e, CheckpointSaved):
            update.checkpoint_path = e.path
            update.checkpoint_step = int(e.counters.step)
            rows.append(LogEntry("info", f"checkpoint saved at step {e.counters.step}: {e.path}",
                                 e.counters.step))
        elif isinstance(e, RunFinished):
            update.summary = dict(e.summary)
            _advance(batch, _position(e.counters))
        elif isinstance(e, RunFailed):
            update.error, update.traceback = e.error, e.traceback
        else:
            log.warning("ignoring unknown event %r", type(e).__name__)
    return batch, best


def _position(c: Counters) -> Position:
    return Position(step=c.step, epoch=c.epoch, samples_forwarded=c.samples_forwarded,
                    samples_backpropagated=c.samples_backpropagated, wall_time=c.wall_time)


def _advance(batch: RunBatch, at: Position) -> None:
    """The run's progress is the furthest position seen (events of a batch arrive in order)."""
    progress = batch.update.progress
    if progress is None or at.step >= progress.step:
        batch.update.progress = at
