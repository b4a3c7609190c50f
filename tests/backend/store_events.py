"""Hand-made engine events for store tests (no training needed)."""

from __future__ import annotations

from marginscope.engine.events import (
    CheckpointSaved,
    ClassSelection,
    Counters,
    Evaluation,
    Event,
    Histogram,
    LogMessage,
    RunFinished,
    RunStarted,
    StepMetrics,
)

EDGES = [0.0, 0.5, 1.0, 2.0, 4.0]
CLASSES = [str(i) for i in range(10)]


def counters(step: int) -> Counters:
    return Counters(step=step, epoch=step / 10, samples_forwarded=step * 64,
                    samples_backpropagated=step * 16, wall_time=step * 0.1)


def run_started(total_steps: int = 30, resumed_from_step: int = 0) -> RunStarted:
    return RunStarted(config={"dataset": "digits"},
                      dataset={"name": "digits", "num_train": 1257, "num_classes": 10,
                               "class_names": CLASSES},
                      model={"name": "small-cnn", "parameters": 1000}, device="cpu",
                      total_steps=total_steps, steps_per_epoch=10, hist_edges=EDGES,
                      resumed_from_step=resumed_from_step)


def step_metrics(step: int, loss: float | None = None) -> StepMetrics:
    return StepMetrics(counters=counters(step), lr=0.1, loss=1.0 / step if loss is None else loss,
                       accuracy=0.5, samples_per_s=100.0, score_time=0.01, step_time=0.02)


def histogram(step: int, population: str = "candidates", threshold: float | None = None) -> Histogram:
    return Histogram(counters=counters(step), population=population,  # type: ignore[arg-type]
                     counts=[step, 1, 2, 3], mean=0.3 + step / 1000, count=step + 6,
                     quantiles={"p5": 0.1, "p25": 0.2, "p50": 0.3, "p75": 0.4, "p95": 0.5},
                     threshold=threshold)


def selection(step: int) -> ClassSelection:
    return ClassSelection(counters=counters(step), candidate_counts=[step] * 10,
                          selected_counts=[1] * 10, selected_misclassified=0.25)


def evaluation(step: int, accuracy: float, split: str = "val") -> Evaluation:
    return Evaluation(counters=counters(step), split=split, loss=1 - accuracy,  # type: ignore[arg-type]
                      accuracy=accuracy, per_class_accuracy=[accuracy] * 10, samples=100)


def full_run(steps: int = 30, val: tuple[float, ...] = (0.5, 0.7, 0.6)) -> list[Event]:
    """A plausible event stream: start, step metrics every step, histograms + selection every 5,
    validation every 10 (accuracies from `val`), a checkpoint, then finished."""
    events: list[Event] = [run_started(steps), LogMessage(step=0, level="info", message="hello")]
    for s in range(1, steps + 1):
        events.append(step_metrics(s))
        if s % 5 == 0:
            events += [histogram(s), histogram(s, "selected", threshold=0.2), selection(s)]
        if s % 10 == 0 and s // 10 - 1 < len(val):
            events.append(evaluation(s, val[s // 10 - 1]))
            events.append(CheckpointSaved(counters=counters(s), path=f"/tmp/ckpt-{s}.pt"))
    events.append(evaluation(steps, 0.65, "test"))
    events.append(RunFinished(counters=counters(steps), status="finished", summary={"best": max(val)}))
    return events
