"""System metrics (engine/system.py) in real training: `system/` Scalars every system_interval
seconds, through a long evaluation too, none after the run's last event, no thread left behind,
and none at all with system_interval 0."""

from __future__ import annotations

import threading
import time

import pytest

from marginscope.engine.callbacks import Recorder
from marginscope.engine.config import TrainConfig
from marginscope.engine.events import Evaluation, Event, RunFinished, Scalars, StepMetrics
from marginscope.engine.loop import train

TINY = dict(dataset="digits", selector="mms", candidates=64, batch_size=16, steps=120, eval_every=40,
            hist_every=10, log_every=10, regime="constant", lr=0.01, seed=3)
INTERVAL = 0.2
KEYS = {"system/cpu_percent", "system/cpu_machine_percent", "system/memory_mb",
        "system/memory_machine_percent"}  # no GPU keys: these runs train on the CPU


class Clocked(Recorder):
    """A Recorder that notes when each event arrived (perf_counter)."""

    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    def __call__(self, event: Event) -> None:
        super().__call__(event)
        self.at.append(time.perf_counter())


def readings(rec: Recorder) -> list[int]:
    """Positions in rec.events of the system readings."""
    return [i for i, e in enumerate(rec.events) if isinstance(e, Scalars) and "system/cpu_percent" in e.values]


def system_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "marginscope-system"]


def test_readings_come_at_the_interval_and_stop_with_the_run() -> None:
    rec = Clocked()
    start = time.perf_counter()
    result = train(TrainConfig(system_interval=INTERVAL, **TINY), [rec])
    took = time.perf_counter() - start
    found = readings(rec)
    assert len(found) >= 2, f"{len(found)} readings in a {took:.1f} s run"
    # never more often than asked (each waits its interval), and not fewer than the run's length allows
    gaps = [rec.at[j] - rec.at[i] for i, j in zip(found, found[1:])]
    assert min(gaps) >= INTERVAL * 0.95, gaps
    assert len(found) <= took / INTERVAL + 1
    for i in found:
        e = rec.events[i]
        assert set(e.values) == KEYS
        assert e.values["system/memory_mb"] > 10 and 0 <= e.values["system/memory_machine_percent"] <= 100
        assert e.values["system/cpu_percent"] >= 0 and e.counters.step <= result.steps
    # stamped with the loop's counters: on the same x axes as the curves, in order
    steps = [rec.events[i].counters.step for i in found]
    assert steps == sorted(steps) and steps[-1] > 0
    # stopped with the run: RunFinished is the last event, and no reading comes after it
    assert isinstance(rec.events[-1], RunFinished)
    assert not system_threads()
    n = len(rec.events)
    time.sleep(3 * INTERVAL)
    assert len(rec.events) == n


def test_interval_zero_turns_them_off() -> None:
    rec = Recorder()
    train(TrainConfig(system_interval=0, **{**TINY, "steps": 40}), [rec])
    assert not [k for e in rec.of(Scalars) for k in e.values if k.startswith("system/")]
    assert not system_threads()


def test_a_failed_run_stops_its_readings() -> None:
    def fail_at_step_20(event: Event) -> None:
        if isinstance(event, StepMetrics) and event.counters.step == 20:
            raise RuntimeError("the callback broke")

    rec = Recorder()
    with pytest.raises(RuntimeError, match="the callback broke"):
        train(TrainConfig(system_interval=INTERVAL, **TINY), [rec, fail_at_step_20])
    assert rec.events[-1].kind == "run_failed" and not system_threads()


@pytest.mark.slow
def test_readings_keep_coming_through_a_long_evaluation() -> None:
    """MNIST's validation split (6,000 samples) takes about a second and a half on a CPU core:
    readings come while it runs, stamped with the step it validates."""
    rec = Recorder()
    train(TrainConfig(dataset="mnist", selector="uniform", batch_size=32, steps=10, eval_every=10,
                      log_every=10, hist_every=0, samples_every=0, threads=1, system_interval=INTERVAL), [rec])
    last_step = next(i for i, e in enumerate(rec.events) if isinstance(e, StepMetrics) and e.counters.step == 10)
    validated = next(i for i, e in enumerate(rec.events) if isinstance(e, Evaluation) and e.split == "val")
    during = [i for i in readings(rec) if last_step < i < validated]
    assert len(during) >= 2, [e.kind for e in rec.events]
    assert {rec.events[i].counters.step for i in during} == {10}
