"""How long a run has been running and how long it still needs: the `time/` scalars.

The training loop reports two scalars at each step it logs (after that step's validation, if
any), and once more, final, just before RunFinished:

- ``time/elapsed``: the seconds the run has spent running: from the start of `train()` (data
  loading and model building included) through training, validations, checkpoints and, at the
  end, the test. A resumed run adds the seconds its earlier attempts took to reach the checkpoint
  it resumed from (kept in the checkpoint), so the time a run sat queued, or cancelled before a
  resume, is never in it. Its final value is the run's duration, the one number both dashboard
  pages show.
- ``time/remaining``: the estimate of the seconds left (`remaining_seconds`), 0 at the end.

Why the engine and not the page: only the engine knows what the rest of the run holds (how many
validations are due, how large the test is) and how long its own validations took; a page that
divides elapsed time by steps counts the start-up as if it recurred every step, and one that uses
the training rate alone leaves out every evaluation and the final test (the ETA that said 26 s
for a run that took 41 s).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field


def validations_left(step: int, total_steps: int, every: int) -> int:
    """Validations due after `step` (the loop reports after validating at `step`): it validates
    at each multiple of `every` and at the last step."""
    if step >= total_steps:
        return 0
    multiples = total_steps // every - step // every
    return multiples + (0 if total_steps % every == 0 else 1)


def remaining_seconds(*, step: float, total_steps: int, trained_seconds: float, validations: int,
                      validation_seconds: float, evaluated_samples: int, evaluation_seconds: float,
                      validations_due: int, test_samples: int) -> float | None:
    """Seconds the run still needs, or None before its first step.

        training left   = (total_steps - step) x trained_seconds / step
        validations     = validations_due x validation_seconds / validations
        test            = test_samples x evaluation_seconds / evaluated_samples

    `trained_seconds` is the run's training time (the wall_time counter: steps and monitoring);
    `validation_seconds` the real time of its `validations` so far, each with the checkpoint
    written after it; `evaluation_seconds` the part of that spent evaluating its
    `evaluated_samples`, whose rate prices the final test. Before the first validation the
    validations and the test cannot be priced and count 0."""
    if step <= 0:
        return None
    left = max(0.0, total_steps - step) * trained_seconds / step
    if validations:
        left += validations_due * validation_seconds / validations
    if evaluated_samples:
        left += test_samples * evaluation_seconds / evaluated_samples
    return left


@dataclass
class RunTime:
    """The real time of a run across its attempts, and of its validations (saved in checkpoints,
    so that a resumed run goes on counting from its checkpoint)."""

    before: float = 0.0  # seconds the earlier attempts took to reach the checkpoint resumed from
    validations: int = 0
    validation_seconds: float = 0.0  # each validation with its checkpoint
    evaluated_samples: int = 0
    evaluation_seconds: float = 0.0  # the evaluation forwards alone
    started: float = field(default_factory=time.perf_counter, repr=False)  # this attempt's start

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.started

    def add_validation(self, seconds: float, evaluated_samples: int, evaluation_seconds: float) -> None:
        self.validations += 1
        self.validation_seconds += seconds
        self.evaluated_samples += evaluated_samples
        self.evaluation_seconds += evaluation_seconds

    def state_dict(self) -> dict[str, float]:
        """For a checkpoint: `before` becomes the elapsed time now."""
        state = asdict(self)
        del state["started"]
        return {**state, "before": self.elapsed()}

    @classmethod
    def resumed(cls, state: dict[str, float], started: float) -> RunTime:
        """A checkpoint's RunTime, for an attempt that started at `started` (perf_counter)."""
        return cls(**state, started=started)
