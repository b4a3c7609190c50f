"""The training loop on the tiny bundled `digits` data: every selector learns, counters are exact,
events are complete, and a resumed run follows the uninterrupted trajectory exactly."""

from __future__ import annotations

import pytest
import torch

from engine.callbacks import JsonlWriter, Recorder
from engine.config import TrainConfig
from engine.events import (
    ClassSelection, Evaluation, Histogram, RunFinished, RunStarted, StepMetrics, StopTraining,
    event_from_dict,
)
from engine.selection import list_selectors
from engine.sampler import PassSampler
from engine.train import train

BASE = dict(dataset="digits", candidates=64, batch_size=16, steps=120, eval_every=40, hist_every=10,
            log_every=10, regime="constant", lr=0.01, seed=3)


@pytest.mark.parametrize("selector", list_selectors())
def test_every_selector_learns_digits(selector: str) -> None:
    rec = Recorder()
    result = train(TrainConfig(selector=selector, **BASE), [rec])
    # 10 classes: chance is 10%; the small CNN reaches far more in 120 steps of 16.
    assert result.best_val_accuracy > 0.5, result.summary
    assert result.test_accuracy is not None and result.test_accuracy > 0.5
    assert result.steps == 120
    assert result.samples_backpropagated == 120 * 16
    pool = 16 if selector == "uniform" else 64
    extra = 0 if selector == "uniform" else 120 * 64
    if selector == "mms-memory":  # no candidate forward: refresh blocks instead (test_memory_selector.py)
        extra = 1024  # digits: 1.5 epochs re-score 1,257 x 1.5 samples, i.e. one whole block of 1024
    # uniform forwards only its training batch; selectors also forward every candidate
    assert result.samples_forwarded == 120 * 16 + extra, (selector, pool)
    assert len(rec.of(RunStarted)) == 1 and len(rec.of(RunFinished)) == 1
    assert len(rec.of(StepMetrics)) == 12
    assert [e.split for e in rec.of(Evaluation)] == ["val"] * 3 + ["test"]


def test_histograms_use_fixed_edges_and_count_everything() -> None:
    rec = Recorder()
    train(TrainConfig(selector="mms", **BASE), [rec])
    edges = rec.of(RunStarted)[0].hist_edges
    hists = rec.of(Histogram)
    assert len(hists) == 2 * 12
    for h in hists:
        assert len(h.counts) == len(edges) - 1
        assert sum(h.counts) == h.count == (64 if h.population == "candidates" else 16)
        assert h.quantiles["p5"] <= h.quantiles["p50"] <= h.quantiles["p95"]
    selected = [h for h in hists if h.population == "selected"]
    candidates = [h for h in hists if h.population == "candidates"]
    # MMS keeps the smallest margins: the selected median lies below the candidates' median
    assert all(s.quantiles["p50"] <= c.quantiles["p50"] for s, c in zip(selected, candidates))
    assert all(s.threshold is not None and s.threshold >= s.quantiles["p95"] - 1e-6 for s in selected)
    sel = rec.of(ClassSelection)
    assert sum(sum(e.selected_counts) for e in sel) == 120 * 16
    assert sum(sum(e.candidate_counts) for e in sel) == 120 * 64


def test_resume_equals_uninterrupted(tmp_path) -> None:
    cfg = dict(BASE, selector="selective-backprop", steps=60, eval_every=20, hist_every=0)
    full = train(TrainConfig(out_dir=str(tmp_path / "full"), **cfg))

    calls = {"n": 0}

    def stop_after_40() -> bool:  # polled once per step, before the step
        calls["n"] += 1
        return calls["n"] > 40

    part = train(TrainConfig(out_dir=str(tmp_path / "part"), **cfg), should_stop=stop_after_40)
    assert part.status == "cancelled" and part.steps == 40
    resumed = train(TrainConfig(out_dir=str(tmp_path / "part"), resume_from=part.checkpoint, **cfg))
    assert resumed.steps == 60
    a = torch.load(full.checkpoint, weights_only=False)["model"]
    b = torch.load(resumed.checkpoint, weights_only=False)["model"]
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert resumed.test_accuracy == full.test_accuracy
    assert resumed.samples_forwarded == full.samples_forwarded


def test_callback_can_stop_and_events_round_trip(tmp_path) -> None:
    def stopper(event):
        if isinstance(event, StepMetrics) and event.counters.step >= 20:
            raise StopTraining

    path = tmp_path / "events.jsonl"
    result = train(TrainConfig(selector="mms", **BASE), [JsonlWriter(path), stopper])
    assert result.status == "cancelled" and result.steps == 20
    import json

    events = [event_from_dict(json.loads(line)) for line in path.read_text().splitlines()]
    assert isinstance(events[0], RunStarted)
    assert isinstance(events[-1], RunFinished) and events[-1].status == "cancelled"


def test_failure_is_reported_to_callbacks() -> None:
    rec = Recorder()
    with pytest.raises(Exception):
        train(TrainConfig(dataset="cifar10", data_dir="/nonexistent-marginscope", steps=5), [rec])
    assert rec.events and rec.events[-1].kind == "run_failed"
    assert "cifar10" in rec.events[-1].error.lower()


def test_pass_sampler_covers_each_pass_without_replacement() -> None:
    s = PassSampler(10, seed=1)
    first = torch.cat([s.draw(4), s.draw(4), s.draw(2)])
    assert sorted(first.tolist()) == list(range(10))
    again = PassSampler(10, seed=1)
    assert torch.equal(torch.cat([again.draw(7), again.draw(3)]), first)
