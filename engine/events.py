"""Typed events the training loop hands to its callbacks.

A callback is any callable taking one event. This is the engine's single extension point: the
console progress bar, the JSON-lines writer, the backend's store writer are all callbacks.
Every event is a frozen dataclass with a `kind` tag and `to_dict()` for JSON; `event_from_dict`
turns such a dict back into the event (the backend and tests read JSON lines with it).

A callback may raise `StopTraining` to end the run cleanly: the loop saves a checkpoint and
emits `RunFinished(status="cancelled")`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, Sequence


class StopTraining(Exception):
    """Raised by a callback (or a signal handler) to stop the run after the current step."""


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        """{"kind": ..., field: value, ...}, nested dataclasses (Counters) as dicts. Not
        `dataclasses.asdict`, which deep-copies every list and took most of a remote run's cost
        per event: the dict shares the event's (frozen) lists and dicts, to be encoded, not changed."""
        return {"kind": self.kind, **_fields_dict(self)}


def _fields_dict(obj: Any) -> dict[str, Any]:
    names = _FIELD_NAMES.get(type(obj))
    if names is None:
        names = _FIELD_NAMES[type(obj)] = tuple(f.name for f in dataclasses.fields(obj))
    out = {}
    for name in names:
        value = getattr(obj, name)
        nested = type(value) in _FIELD_NAMES or (dataclasses.is_dataclass(value) and not isinstance(value, type))
        out[name] = _fields_dict(value) if nested else value
    return out


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # each dataclass's field names, read once


@dataclass(frozen=True)
class Counters:
    """Exact work counters, carried by most events so any event can be placed on any x axis."""

    step: int  # optimizer steps taken so far
    epoch: float  # step / (N / b)
    samples_forwarded: int  # every sample that went through the model in training (scoring + training forward)
    samples_backpropagated: int  # samples in training batches
    wall_time: float  # seconds of training since the run started (excludes evaluation)


@dataclass(frozen=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    config: dict[str, Any]  # the resolved TrainConfig
    dataset: dict[str, Any]  # name, num_train, num_val, num_test, num_classes, class_names, input_shape
    model: dict[str, Any]  # name, parameters, feature_dim
    device: str
    total_steps: int
    steps_per_epoch: int
    hist_edges: list[float]  # fixed MMS bin edges for the whole run (len = hist_bins + 1)
    resumed_from_step: int = 0


@dataclass(frozen=True)
class StepMetrics(Event):
    kind: ClassVar[str] = "step"
    counters: Counters
    lr: float
    loss: float  # mean cross-entropy on the selected (training) batch
    accuracy: float  # accuracy of the training batch, before the update
    samples_per_s: float  # samples back-propagated per second of wall time, over the last interval
    score_time: float  # seconds spent on candidate scoring over the last interval
    step_time: float  # seconds per step over the last interval
    # CPU seconds of this process spent on training work since the run started (all its threads;
    # what a shared machine distorts least), and seconds per step in the selector's refresh
    cpu_time: float = 0.0
    refresh_time: float = 0.0


@dataclass(frozen=True)
class Histogram(Event):
    """MMS histogram on the run's fixed edges; quantiles are exact (from the raw scores)."""

    kind: ClassVar[str] = "histogram"
    counters: Counters
    population: Literal["candidates", "selected"]
    counts: list[int]  # len = len(hist_edges) - 1; values below/above the range go in the end bins
    quantiles: dict[str, float]  # keys p5, p25, p50, p75, p95
    mean: float
    count: int
    threshold: float | None = None  # largest score admitted to the training batch (score-ranked selectors)


@dataclass(frozen=True)
class ClassSelection(Event):
    """Per-class counts of candidates and selected samples since the previous ClassSelection."""

    kind: ClassVar[str] = "class_selection"
    counters: Counters
    candidate_counts: list[int]
    selected_counts: list[int]
    selected_misclassified: float  # share of selected samples the model got wrong when scoring them


# The suspects of a snapshot: how many, and by what rule (defined here, with the event, so the
# dashboard server quotes them without importing engine/samples.py and torch).
SUSPECTS_KEPT = 500  # suspects in each snapshot (the API serves at most this many)
EMA_WEIGHT = 0.3  # weight of the newest observation in a sample's suspect score
SUSPECT_RULE = (
    "Each time a sample is scored, its signed margin is +MMS when the model predicts another class "
    "than its label and -MMS when it agrees; a sample's score is the moving average of its signed "
    f"margins (weight {EMA_WEIGHT} on the newest). Suspects are the samples with a positive score "
    "(on recent balance confidently predicted as another class), highest first.")


@dataclass(frozen=True)
class SampleSnapshot(Event):
    """Which training samples the run looks at, every `samples_every` steps (engine/samples.py).

    Columnar (a dict of equal-length lists) so that a snapshot stays compact on the wire:
    - `lowest`: the k lowest-margin samples scored at this step — index (dataset index in the
      training split), label, prediction, mms; ascending mms. `scored` says what was scored: the
      selector's "candidates", or the trained "batch" for selectors that score none;
    - `selected`: every sample selected since the previous snapshot — index, label, count (times
      selected since then), misclassified (of those times, how often the model's prediction when it
      was scored differed from its label), mms and prediction (at its latest scoring);
    - `suspects`: the run's current likely-mislabelled samples, best first (at most
      SUSPECTS_KEPT) — index, label, prediction, score, mean_mms, observed (times scored); the rule
      is SUSPECT_RULE (engine/samples.py computes it);
    - `flipped`: the training indices whose labels label_noise flipped (first snapshot of a run
      or a resume only; empty otherwise).
    """

    kind: ClassVar[str] = "samples"
    counters: Counters
    scored: Literal["candidates", "batch"]
    lowest: dict[str, list[Any]]
    selected: dict[str, list[Any]]
    suspects: dict[str, list[Any]]
    flipped: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Evaluation(Event):
    kind: ClassVar[str] = "evaluation"
    counters: Counters
    split: Literal["val", "test"]
    loss: float
    accuracy: float
    per_class_accuracy: list[float]
    samples: int


@dataclass(frozen=True)
class Scalars(Event):
    """Named scalar values at a position: what a user's own training loop logs (`run.log`); each
    key becomes a series of its own (at most 100 characters)."""

    kind: ClassVar[str] = "scalars"
    counters: Counters
    values: dict[str, float]


@dataclass(frozen=True)
class CheckpointSaved(Event):
    kind: ClassVar[str] = "checkpoint"
    counters: Counters
    path: str


@dataclass(frozen=True)
class LogMessage(Event):
    kind: ClassVar[str] = "log"
    step: int
    level: Literal["info", "warning", "error"]
    message: str


@dataclass(frozen=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    counters: Counters
    status: Literal["finished", "cancelled"]
    summary: dict[str, Any] = field(default_factory=dict)  # best/final val, test, counters


@dataclass(frozen=True)
class RunFailed(Event):
    kind: ClassVar[str] = "run_failed"
    step: int
    error: str
    traceback: str


Callback = Callable[[Event], None]


def make_durable(callbacks: Sequence[Callback]) -> None:
    """Return once every event handed to `callbacks` so far would survive this process being
    killed: each callback with a `make_durable()` method (a recorder that buffers, such as the
    remote reporter and its spool) is asked to persist what it holds.

    The training loop calls this before it publishes a checkpoint (renames it to its final name),
    so that a resume from that checkpoint never finds a gap: every event up to its step is kept
    somewhere a resumed attempt sends on to the store (docs/reliability.md, "Resume")."""
    for callback in callbacks:
        durable = getattr(callback, "make_durable", None)
        if durable is not None:
            durable()

# The vocabulary every consumer shares (store, API, page via /api/options): defined here, once.
COUNTER_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Counters))
POPULATIONS: tuple[str, ...] = ("candidates", "selected")  # the two MMS histograms of a step
QUANTILES: dict[str, float] = {"p5": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95}
QUANTILE_KEYS: tuple[str, ...] = tuple(QUANTILES)
# the columns of SampleSnapshot's three tables
SAMPLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "lowest": ("index", "label", "prediction", "mms"),
    "selected": ("index", "label", "count", "misclassified", "mms", "prediction"),
    "suspects": ("index", "label", "prediction", "score", "mean_mms", "observed"),
}

EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (RunStarted, StepMetrics, Histogram, ClassSelection, SampleSnapshot, Evaluation,
                CheckpointSaved, LogMessage, RunFinished, RunFailed, Scalars)
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Inverse of `Event.to_dict()`."""
    data = dict(data)
    cls = EVENT_TYPES[data.pop("kind")]
    if "counters" in data:
        data["counters"] = Counters(**data["counters"])
    return cls(**data)
