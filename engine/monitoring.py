"""How the training loop measures what it trains: evaluation of a split, margin histograms, class
counts and the averages of StepMetrics (engine/loop.py emits them as events).

Measuring never changes the trajectory: it draws no random numbers, restores the model's mode and
keeps its sums on the device (no sync per step).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from marginscope.engine.data import DatasetBundle, Split
from marginscope.engine.events import QUANTILES, ClassSelection, Counters, Event, Histogram, StepMetrics
from marginscope.engine.selection import Selection, minimal_margin_scores

__all__ = ["Monitor", "StepClock", "StepRecord", "WorkTimes", "evaluate", "histogram_edges",
           "histogram_event"]


@torch.inference_mode()
def evaluate(model: torch.nn.Module, data: DatasetBundle, split: Split, *, device: torch.device,
             limit: int | None = None, channels_last: bool = False, chunk: int = 256) -> dict[str, Any]:
    """Loss, accuracy and per-class accuracy of `split` (its first `limit` samples).

    Chunks of 256: on CPU a forward of a few hundred samples is about twice as fast per sample as
    one of 1,000 (the candidate chunk sweep of the micro-benchmarks), and benchmarks validate often."""
    was_training = model.training
    model.eval()
    n = len(split) if limit is None else min(limit, len(split))
    k = data.num_classes
    loss_sum, correct = 0.0, torch.zeros(k, dtype=torch.long)
    total = torch.zeros(k, dtype=torch.long)
    for start in range(0, n, chunk):
        idx = torch.arange(start, min(n, start + chunk))
        x, y = data.batch(split, idx, augment=False, generator=None, device=device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        hit = (logits.argmax(1) == y).cpu()
        y = y.cpu()
        correct += torch.bincount(y[hit], minlength=k)
        total += torch.bincount(y, minlength=k)
    model.train(was_training)
    per_class = (correct.double() / total.clamp(min=1).double()).tolist()
    return {"loss": loss_sum / max(n, 1), "accuracy": correct.sum().item() / max(n, 1),
            "per_class_accuracy": per_class, "samples": n}


@torch.no_grad()
def network_health(model: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Two signs of a network that stopped learning, on a fixed probe batch `x`:

    - ``model/dead_features``: the share of the feature layer's units that are 0 (ReLU off) for
      every probe sample. A unit dead for all inputs gets no gradient and never comes back; a
      run whose curves sit at chance with most features dead has collapsed, not slowed down.
    - ``model/head_norm``: the Frobenius norm of the classifier head, which falls towards 0 when
      the gradients of contradictory labels cancel (the head then predicts the class prior).

    Needs a model of the engine's kind (``features`` and ``head``); others get an empty dict."""
    features, head = getattr(model, "features", None), getattr(model, "head", None)
    if not callable(features) or not isinstance(head, torch.nn.Linear):
        return {}
    was_training = model.training
    model.eval()
    f = features(x).float()
    model.train(was_training)
    dead = (f.reshape(f.shape[0], -1) <= 0).all(dim=0).float().mean().item()
    return {"model/dead_features": dead, "model/head_norm": head.weight.float().norm().item()}


@dataclass
class NoiseHarm:
    """What a run trained on under label noise, and how much of its training signal was wrong.

    Counting flipped samples says how often a selector trains on a wrong label, not how much that
    hurts: a flipped sample the model already predicts as its *true* class has a large loss and
    the largest gradient (it pulls the network away from what it knows). So beside the count this
    keeps, over the trained samples, the size of each sample's gradient at the logits,
    ||softmax(z) - onehot(label)|| (between 0 and sqrt 2), for all of them and for the flipped
    ones, and how many flipped ones were predicted as their true class before the update.
    """

    trained: int = 0
    flipped: int = 0
    flipped_true: int = 0  # flipped samples the model predicted as their true class
    push: float = 0.0  # sum of the gradient sizes of all trained samples
    flipped_push: float = 0.0  # ... of the flipped ones

    @classmethod
    def of(cls, logits: torch.Tensor, labels: torch.Tensor, true_labels: torch.Tensor,
           is_flipped: torch.Tensor) -> NoiseHarm:
        """One step's: the trained samples' logits (before the update), their training labels,
        their true labels and which of them label noise flipped."""
        p = torch.softmax(logits.float(), dim=1)
        p[torch.arange(len(labels), device=p.device), labels] -= 1.0
        size = p.norm(dim=1)
        return cls(trained=len(labels), flipped=int(is_flipped.sum()),
                   flipped_true=int((logits.argmax(1) == true_labels)[is_flipped].sum()),
                   push=float(size.sum()), flipped_push=float(size[is_flipped].sum()))

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([self.trained, self.flipped, self.flipped_true, self.push, self.flipped_push],
                            dtype=torch.float64)

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> NoiseHarm:
        trained, flipped, flipped_true, push, flipped_push = t.tolist()
        return cls(int(trained), int(flipped), int(flipped_true), push, flipped_push)

    def merge(self, other: NoiseHarm) -> None:
        self.trained += other.trained
        self.flipped += other.flipped
        self.flipped_true += other.flipped_true
        self.push += other.push
        self.flipped_push += other.flipped_push

    def shares(self) -> dict[str, float]:
        """The scalars a run reports: what share of trained samples and of the training signal
        had a flipped label, and what share of the flipped ones the model predicted as their true
        class (absent when none was trained)."""
        shares = {"noise/flipped_share": self.flipped / max(self.trained, 1),
                  "noise/flipped_gradient_share": self.flipped_push / max(self.push, 1e-12)}
        if self.flipped:  # of no flipped sample nothing can be said
            shares["noise/flipped_predicted_true"] = self.flipped_true / self.flipped
        return shares

    def state_dict(self) -> dict[str, float]:
        return asdict(self)


def histogram_edges(bins: int) -> torch.Tensor:
    """Fixed MMS bin edges for a whole run: [0, 1e-3) then log-spaced up to 100 (bins+1 edges).

    MMS is a distance in feature space: it starts near 0 and grows by orders of magnitude as the
    network gains confidence, so log spacing keeps both ends readable. Values beyond the last edge
    are counted in the last bin.
    """
    return torch.cat([torch.zeros(1), torch.logspace(-3, 2, bins)]).double()


def histogram_event(scores: torch.Tensor, edges: torch.Tensor, counters: Counters, population: str,
                    threshold: float | None) -> Histogram:
    """Histogram of scores on fixed edges, computed with torch ops on the scores' device."""
    scores = scores.detach().float()
    inner = edges[1:-1].to(scores.device, torch.float32)
    counts = torch.bincount(torch.bucketize(scores, inner, right=True), minlength=len(edges) - 1)
    q = torch.quantile(scores, torch.tensor(list(QUANTILES.values()), device=scores.device))
    return Histogram(
        counters=counters, population=population, counts=counts.cpu().tolist(),
        quantiles={k: float(v) for k, v in zip(QUANTILES, q.cpu().tolist())},
        mean=float(scores.mean()), count=int(scores.numel()), threshold=threshold,
    )


class StepClock:
    """Seconds spent in one step, read in laps (the loop adds each lap to the run's wall time and
    its CPU time)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()

    def lap(self, *, sync: bool) -> tuple[float, float]:
        """(wall, CPU) seconds since the start or the last lap. `sync` first waits for the queued
        CUDA work; the loop asks for it only before a reading is reported, so the GPU is not stalled
        each step. CPU seconds are this process's, all threads (time.process_time)."""
        if sync and self.cuda:
            torch.cuda.synchronize()
        now, cpu = time.perf_counter(), time.process_time()
        seconds, self.start = now - self.start, now
        cpu_seconds, self.cpu_start = cpu - self.cpu_start, cpu
        return seconds, cpu_seconds


@dataclass
class WorkTimes:
    """A run's training work in seconds beyond its wall-clock (kept in `_Run.wall`): CPU time of
    the process, and wall/CPU time of the selector's two phases. The training step is the rest.

    Why: on a machine shared with other work, wall-clock grows with the load while CPU time of the
    process grows far less; a benchmark reports both, and the phases say where a selector's cost is.
    """

    cpu: float = 0.0
    score_wall: float = 0.0
    score_cpu: float = 0.0
    refresh_wall: float = 0.0
    refresh_cpu: float = 0.0

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the block's wall and CPU seconds to `<name>_wall` and `<name>_cpu`."""
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            setattr(self, f"{name}_wall", getattr(self, f"{name}_wall") + time.perf_counter() - wall)
            setattr(self, f"{name}_cpu", getattr(self, f"{name}_cpu") + time.process_time() - cpu)

    def as_dict(self) -> dict[str, float]:
        """For evaluations and checkpoints: cpu_time and the phases' cumulative seconds."""
        d = asdict(self)
        return {"cpu_time": d.pop("cpu"), **{f"{k}_time": v for k, v in d.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> WorkTimes:
        return cls(cpu=d.get("cpu_time", 0.0), **{k: d.get(f"{k}_time", 0.0) for k in
                                                   ("score_wall", "score_cpu", "refresh_wall", "refresh_cpu")})


@dataclass
class StepRecord:
    """What one training step leaves for monitoring."""

    lr: float
    selection: Selection
    chosen: torch.Tensor  # positions of the trained batch among the candidates, on the device
    labels: torch.Tensor  # the candidates' labels
    batch_labels: torch.Tensor  # the trained batch's labels
    logits: torch.Tensor  # the training forward's logits, detached float32
    loss: torch.Tensor  # the training loss, detached
    score_time: float  # seconds in the selector
    refresh_time: float = 0.0  # seconds in the selector's refresh after the step
    indices: torch.Tensor | None = None  # the candidates' dataset indices (CPU), for the sample tracker

    # The candidates' scoring logits when the selector computed them (monitoring them is free);
    # otherwise the trained batch stands in for the candidates, with the training forward's logits.
    @property
    def scored(self) -> bool:
        return self.selection.logits is not None

    @property
    def candidate_logits(self) -> torch.Tensor:
        return self.selection.logits if self.scored else self.logits

    @property
    def candidate_labels(self) -> torch.Tensor:
        return self.labels if self.scored else self.batch_labels

    def selected(self, per_candidate: torch.Tensor) -> torch.Tensor:
        """The trained batch's rows of a per-candidate tensor."""
        return per_candidate[self.chosen] if self.scored else per_candidate


class Monitor:
    """Sums since the last report: the StepMetrics averages and the histograms' class counts."""

    def __init__(self, emit: Callable[[Event], None], *, device: torch.device, num_classes: int,
                 edges: torch.Tensor, histograms: bool) -> None:
        self.emit, self.edges, self.with_histograms = emit, edges, histograms
        self.loss_sum = torch.zeros((), device=device)
        self.correct_sum = torch.zeros((), device=device)
        self.steps, self.samples, self.score_time, self.wall = 0, 0, 0.0, 0.0
        self.refresh_time = 0.0
        self.cand_class = torch.zeros(num_classes, dtype=torch.long, device=device)
        self.sel_class = torch.zeros(num_classes, dtype=torch.long, device=device)
        self.sel_wrong = torch.zeros((), dtype=torch.long, device=device)

    def add(self, s: StepRecord) -> None:
        self.loss_sum += s.loss
        self.correct_sum += (s.logits.argmax(1) == s.batch_labels).sum()
        self.steps += 1
        self.samples += len(s.chosen)
        self.score_time += s.score_time
        self.refresh_time += s.refresh_time
        if self.with_histograms:
            k = len(self.cand_class)
            self.cand_class += torch.bincount(s.candidate_labels, minlength=k)
            self.sel_class += torch.bincount(s.batch_labels, minlength=k)
            self.sel_wrong += (s.selected(s.candidate_logits).argmax(1) != s.batch_labels).sum()

    def histograms(self, s: StepRecord, counters: Counters, head_weight: torch.Tensor,
                   threshold: float | None) -> None:
        """MMS histograms of this step's candidates and selected samples, then the class counts
        since the last report. `threshold` (an MMS value, or None) marks the selected histogram."""
        mms = minimal_margin_scores(s.candidate_logits, head_weight)
        self.emit(histogram_event(mms, self.edges, counters, "candidates", None))
        self.emit(histogram_event(s.selected(mms), self.edges, counters, "selected", threshold))
        n_sel = int(self.sel_class.sum())
        self.emit(ClassSelection(counters=counters, candidate_counts=self.cand_class.cpu().tolist(),
                                 selected_counts=self.sel_class.cpu().tolist(),
                                 selected_misclassified=int(self.sel_wrong) / max(n_sel, 1)))
        self.cand_class.zero_(); self.sel_class.zero_(); self.sel_wrong.zero_()  # noqa: E702

    def step_metrics(self, s: StepRecord, counters: Counters, cpu_time: float = 0.0) -> None:
        """StepMetrics averaged over the steps since the last one (`wall`: their time);
        `cpu_time` is the run's cumulative CPU time of training work."""
        self.emit(StepMetrics(
            counters=counters, lr=s.lr, loss=float(self.loss_sum) / self.steps,
            accuracy=float(self.correct_sum) / max(self.samples, 1),
            samples_per_s=self.samples / max(self.wall, 1e-9),
            score_time=self.score_time / self.steps, step_time=self.wall / self.steps,
            cpu_time=cpu_time, refresh_time=self.refresh_time / self.steps,
        ))
        self.loss_sum.zero_(); self.correct_sum.zero_()  # noqa: E702
        self.steps, self.samples, self.score_time, self.wall = 0, 0, 0.0, 0.0
        self.refresh_time = 0.0
