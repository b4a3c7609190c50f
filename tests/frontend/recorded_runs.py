"""Recorded runs for the browser tests: plausible engine event streams written through the
project's own recording layer and store, so a page shows what it would after real training
without minutes of it on 2 CPU cores."""

from __future__ import annotations

import bisect
import math
import random
from typing import Any

from marginscope.backend.recording import write_events
from marginscope.backend.store import AbstractStore
from marginscope.engine.config import TrainConfig
from marginscope.engine.events import (
    ClassSelection, Counters, Evaluation, Histogram, RunFinished, RunStarted, Scalars, StepMetrics,
)
from marginscope.engine.monitoring import histogram_edges
from marginscope.engine.timing import remaining_seconds, validations_left

STEPS, EVERY, EVAL_EVERY, BINS, B, b = 2000, 10, 100, 60, 640, 64
# real time beside the training: start-up, each validation (its 5,000 samples), the 10,000-sample test
START_UP, VALIDATION, TEST = 3.0, 0.5, 1.0
SYSTEM_EVERY = 50  # steps between system readings


def time_values(step: int, steps: int, trained: float) -> dict[str, float]:
    """The time/ scalars the engine would report at `step` (engine/timing.py's formula)."""
    done = step // EVAL_EVERY
    left = remaining_seconds(step=step, total_steps=steps, trained_seconds=trained, validations=done,
                             validation_seconds=done * VALIDATION, evaluated_samples=done * 5000,
                             evaluation_seconds=done * VALIDATION,
                             validations_due=validations_left(step, steps, EVAL_EVERY), test_samples=10_000)
    return {"time/elapsed": START_UP + trained + done * VALIDATION, "time/remaining": left or 0.0}


def recorded_run(seed: int, selector: str, steps: int = 2000, *, finished: bool = True) -> list[Any]:
    """A training run's events: accuracy rises towards ~99%, margins grow by orders of magnitude.
    Not `finished`: without the test's time and RunFinished (a run still training at its last step)."""
    rng = random.Random(seed)
    edges = histogram_edges(BINS).tolist()
    pool = b if selector == "uniform" else B
    speed = 350 if selector == "uniform" else 220 + 20 * seed
    events: list[Any] = [RunStarted(
        config={}, dataset={"name": "mnist", "num_train": 45000, "num_classes": 10,
                            "class_names": [str(i) for i in range(10)]},
        model={"name": "small-cnn", "parameters": 151402}, device="cpu", total_steps=steps,
        steps_per_epoch=45000 // b, hist_edges=edges)]

    def counters(step: int) -> Counters:
        return Counters(step=step, epoch=step * b / 45000, samples_forwarded=step * (pool + b if pool > b else b),
                        samples_backpropagated=step * b, wall_time=step * (0.01 if pool == b else 0.045))

    for step in range(EVERY, steps + 1, EVERY):
        c = counters(step)
        acc = 0.99 - 0.89 * math.exp(-step / speed)
        events.append(StepMetrics(counters=c, lr=0.1 if step < 1500 else 0.01, loss=-math.log(max(acc, 0.05)) + 0.02,
                                  accuracy=min(1.0, acc + rng.uniform(-0.02, 0.02)), samples_per_s=1500.0,
                                  score_time=0.03, step_time=0.045))
        centre = -2.5 + 3 * (1 - math.exp(-step / speed))  # log10 of the typical margin
        for population, shift in (("candidates", 0.0), ("selected", -0.7 if selector != "uniform" else 0.0)):
            n = pool if population == "candidates" else b
            scores = [10 ** rng.gauss(centre + shift, 0.6) for _ in range(n)]
            counts = [0] * BINS
            for s in scores:
                counts[min(BINS - 1, bisect.bisect_right(edges, s) - 1)] += 1
            srt = sorted(scores)
            q = {f"p{p}": srt[min(n - 1, int(p / 100 * n))] for p in (5, 25, 50, 75, 95)}
            events.append(Histogram(counters=c, population=population, counts=counts, quantiles=q,
                                    mean=sum(scores) / n, count=n,
                                    threshold=srt[-1] if population == "selected" and selector != "uniform" else None))
        events.append(ClassSelection(counters=c, candidate_counts=[pool // 10] * 10,
                                     selected_counts=[b // 10] * 10, selected_misclassified=max(0.0, 0.5 - acc / 2)))
        if step % EVAL_EVERY == 0:
            events.append(Evaluation(counters=c, split="val", loss=-math.log(max(acc, 0.05)), accuracy=acc,
                                     per_class_accuracy=[acc] * 10, samples=5000))
        if step % SYSTEM_EVERY == 0:
            events.append(Scalars(counters=c, values={
                "system/cpu_percent": 180 + rng.uniform(-15, 15), "system/cpu_machine_percent": 92 + rng.uniform(-5, 5),
                "system/memory_mb": 700 + step * 0.02, "system/memory_machine_percent": 41 + step * 0.001}))
        events.append(Scalars(counters=c, values=time_values(step, steps, c.wall_time)))
    if not finished:
        return events
    end = counters(steps)
    done = time_values(steps, steps, end.wall_time)
    events.append(Scalars(counters=end, values={"time/elapsed": done["time/elapsed"] + TEST, "time/remaining": 0.0}))
    events.append(RunFinished(counters=end, status="finished"))
    return events




def record(store: AbstractStore, name: str, seed: int, selector: str, *, steps: int = STEPS,
           tags: list[str] | None = None, finished: bool = True, dataset: str = "mnist") -> int:
    """A finished (or still running) recorded run of `dataset` in `store`; returns its id."""
    config = TrainConfig(dataset=dataset, selector=selector, candidates=B, batch_size=b, seed=seed,
                         hist_every=EVERY, log_every=EVERY).model_dump(mode="json")
    run = store.create_run(name=name, config=config, tags=tags or ["recorded"])
    store.set_status(run.id, "running")
    events = recorded_run(seed, selector, steps, finished=finished)
    for i in range(0, len(events), 500):
        write_events(store, run.id, events[i:i + 500])
    if finished:
        store.set_status(run.id, "finished")
    return run.id
