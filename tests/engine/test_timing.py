"""The time/ scalars (engine/timing.py): the ETA's formula, and in real training an elapsed time
that covers the whole run (its validations and final test included) and carries across a resume."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from marginscope.engine.callbacks import Recorder
from marginscope.engine.config import TrainConfig
from marginscope.engine.events import RunFinished, Scalars
from marginscope.engine.loop import train
from marginscope.engine.timing import remaining_seconds, validations_left

TINY = dict(dataset="digits", selector="mms", candidates=64, batch_size=16, steps=120, eval_every=40,
            hist_every=10, log_every=10, regime="constant", lr=0.01, seed=3, system_interval=0)


@pytest.mark.parametrize(("step", "total", "every", "left"), [
    (10, 120, 40, 3),  # at 40, 80 and 120
    (40, 120, 40, 2),  # the one at 40 is done when the loop reports
    (119, 120, 40, 1),
    (120, 120, 40, 0),
    (10, 100, 40, 3),  # at 40, 80, and the last step, 100
    (80, 100, 40, 1),
    (0, 5, 1, 5),
])
def test_validations_left(step: int, total: int, every: int, left: int) -> None:
    assert validations_left(step, total, every) == left
    # the same as walking the loop's rule step by step
    assert left == sum(1 for s in range(step + 1, total + 1) if s % every == 0 or s == total)


def test_the_eta_adds_the_validations_and_the_test_to_the_training_left() -> None:
    # 10% in: 12 s of training for 100 of 1,000 steps; one validation took 3 s (2.5 s of it
    # evaluating 5,000 samples); 9 validations and a 10,000-sample test are still due
    common = dict(step=100, total_steps=1000, trained_seconds=12.0, validations=1, validation_seconds=3.0,
                  evaluated_samples=5000, evaluation_seconds=2.5, validations_due=9, test_samples=10_000)
    assert remaining_seconds(**common) == pytest.approx(900 * 0.12 + 9 * 3.0 + 10_000 * 2.5 / 5000)
    # before any validation only the training can be priced
    before = {**common, "validations": 0, "validation_seconds": 0.0, "evaluated_samples": 0,
              "evaluation_seconds": 0.0}
    assert remaining_seconds(**before) == pytest.approx(900 * 0.12)
    assert remaining_seconds(**{**common, "step": 0}) is None
    # at the end of training only the test is left
    assert remaining_seconds(**{**common, "step": 1000, "validations_due": 0}) == pytest.approx(5.0)


def time_scalars(rec: Recorder) -> list[Scalars]:
    return [e for e in rec.of(Scalars) if "time/elapsed" in e.values]


def test_elapsed_covers_the_run_and_the_estimate_ends_at_zero() -> None:
    rec = Recorder()
    start = time.perf_counter()
    result = train(TrainConfig(**TINY), [rec])
    took = time.perf_counter() - start
    reports = time_scalars(rec)
    assert [e.counters.step for e in reports] == [*range(10, 121, 10), 120]  # each log, then the final one
    elapsed = [e.values["time/elapsed"] for e in reports]
    assert elapsed == sorted(elapsed)
    # the whole run: more than its training time (validations, test, start-up), less than the call
    assert result.wall_time < elapsed[-1] <= took
    assert reports[-1].values["time/remaining"] == 0.0
    assert isinstance(rec.events[-1], RunFinished) and rec.events[-2] is reports[-1]
    # after the first validation the estimate prices the validations and the test: it is more
    # than the training left at the rate so far
    at_50 = next(e for e in reports if e.counters.step == 50)
    training_left = (120 - 50) * at_50.counters.wall_time / 50
    assert at_50.values["time/remaining"] > training_left


def test_a_resumed_run_counts_on_from_its_checkpoint(tmp_path: Path) -> None:
    part = train(TrainConfig(out_dir=str(tmp_path / "a"), **{**TINY, "steps": 40, "checkpoint_every": 20}))
    before = torch.load(part.checkpoint, weights_only=False)["real_time"]["before"]
    assert before > 0
    time.sleep(0.5)  # time between the attempts is not the run's
    rec = Recorder()
    start = time.perf_counter()
    train(TrainConfig(out_dir=str(tmp_path / "b"), resume_from=part.checkpoint, **{**TINY, "steps": 80}), [rec])
    took = time.perf_counter() - start
    final = time_scalars(rec)[-1].values["time/elapsed"]
    assert before < final <= before + took
