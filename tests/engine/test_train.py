"""The training loop on the tiny bundled `digits` data: every selector learns, counters are exact,
events are complete, a resumed run follows the uninterrupted trajectory exactly, and the loop goes
by what a selector declares, never by its name."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from marginscope.engine.callbacks import JsonlWriter, Recorder
from marginscope.engine.config import TrainConfig
from marginscope.engine.events import (
    ClassSelection, Evaluation, Histogram, RunFinished, RunStarted, StepMetrics, StopTraining,
    event_from_dict,
)
from marginscope.engine.selection import Selection, Selector, list_selectors
from marginscope.engine.selection import selectors as selector_registry
from marginscope.engine.sampler import PassSampler
from marginscope.engine.loop import train

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
    pool = 16 if selector == "uniform" else 64
    extra = 0 if selector == "uniform" else 120 * 64
    if selector == "mms-memory":  # no candidate forward: refresh blocks instead (test_memory_selector.py)
        extra = 1024  # digits: 1.5 epochs re-score 1,257 x 1.5 samples, i.e. one whole block of 1024
    if selector == "infobatch":  # b on average (binomial), no scoring forward (test_selectors_faithful.py)
        assert result.samples_forwarded == result.samples_backpropagated
    elif selector == "selective-backprop":  # primes its first epoch, then forwards its draws (test_selectors_faithful.py)
        assert result.samples_backpropagated == 120 * 16
        assert 0 < result.samples_forwarded - 120 * 16 < extra
    else:
        assert result.samples_backpropagated == 120 * 16
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
    # primed for 20 steps (a quarter of digits' 79-step epoch), then selecting with a carried queue
    cfg = dict(BASE, selector="selective-backprop", steps=60, eval_every=20, hist_every=0,
               selector_options={"prime_epochs": 0.25})
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


class EveryOtherCandidate(Selector):
    """A selector from outside the engine, with a name the loop cannot guess anything from: it
    trains on every other candidate without a forward, does upkeep after each step, and reports
    its threshold as an MMS value."""

    name = "test-every-other"
    help = "Every other candidate."
    forwards_candidates = False
    threshold_is_mms = True
    refreshes: ClassVar[list[tuple[Any, ...]]] = []

    def _select(self, model, inputs, labels, indices, *, b, epoch):  # type: ignore[no-untyped-def]
        index = torch.arange(0, 2 * b, 2, device=inputs.device)
        return Selection(index=index, scores=None, logits=None, threshold=0.25)

    def refresh(self, model, fetch, *, num_train, steps_per_epoch):  # type: ignore[no-untyped-def]
        self.refreshes.append((num_train, steps_per_epoch, tuple(fetch(torch.arange(3)).shape)))
        return 3  # samples it forwarded


def test_the_loop_asks_the_selector_not_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(selector_registry._SELECTORS, EveryOtherCandidate.name, EveryOtherCandidate)
    monkeypatch.setattr(EveryOtherCandidate, "refreshes", [])
    rec = Recorder()
    cfg = dict(BASE, steps=20, eval_every=20, hist_every=10)
    result = train(TrainConfig(selector=EveryOtherCandidate.name, **cfg), [rec])
    assert result.status == "finished" and result.samples_backpropagated == 20 * 16
    # a pool of 64 is drawn but not forwarded; each refresh's 3 samples are counted
    assert "B=64 b=16" in rec.events[1].message
    assert result.samples_forwarded == 20 * 16 + 20 * 3
    assert EveryOtherCandidate.refreshes == [(1257, 79, (3, 1, 8, 8))] * 20
    hists = rec.of(Histogram)
    assert [h.threshold for h in hists if h.population == "selected"] == [0.25, 0.25]
    assert all(h.threshold is None and h.count == 16 for h in hists if h.population == "candidates")


@pytest.mark.parametrize(("selector", "marked"), [("mms", True), ("hard-negative", False)])
def test_only_an_mms_threshold_marks_the_selected_histogram(selector: str, marked: bool) -> None:
    rec = Recorder()
    train(TrainConfig(selector=selector, **dict(BASE, steps=10, eval_every=10, hist_every=10)), [rec])
    (selected,) = [h for h in rec.of(Histogram) if h.population == "selected"]
    assert (selected.threshold is not None) is marked  # hard-negative ranks by loss, not by MMS
