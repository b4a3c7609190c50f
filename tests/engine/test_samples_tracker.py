"""The sample tracker: snapshots at the configured steps, exact selection counts (against a
brute-force count of what the selector chose), bounded sizes, every selector, resume."""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import pytest
import torch

from marginscope.engine.callbacks import Recorder
from marginscope.engine.config import TrainConfig
from marginscope.engine.events import SAMPLE_COLUMNS, SampleSnapshot, event_from_dict
from marginscope.engine.samples import SUSPECTS_KEPT
from marginscope.engine.selection import Selection, list_selectors
from marginscope.engine.selection import selectors as selector_registry
from marginscope.engine.selection.selectors import MMSSelector
from marginscope.engine.loop import train

BASE = dict(dataset="digits", candidates=32, batch_size=16, steps=60, eval_every=60, eval_samples=50, hist_every=0,
            log_every=10, regime="constant", lr=0.01, seed=3, device="cpu", samples_every=20,
            samples_k=8, threads=1)


class SpyMMS(MMSSelector):
    """MMS that remembers the dataset indices it chose, step by step (the brute-force reference)."""

    name: ClassVar[str] = "test-spy-mms"
    chosen: ClassVar[list[list[int]]] = []

    def select(self, model: Any, inputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
               **kw: Any) -> Selection:
        selection = super().select(model, inputs, labels, indices, **kw)
        type(self).chosen.append(indices[selection.index.cpu()].tolist())
        return selection


def _snapshots(rec: Recorder) -> list[SampleSnapshot]:
    return rec.of(SampleSnapshot)


def test_snapshots_count_every_selection_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(selector_registry._SELECTORS, SpyMMS.name, SpyMMS)
    monkeypatch.setattr(SpyMMS, "chosen", [])
    rec = Recorder()
    train(TrainConfig(selector=SpyMMS.name, **BASE), [rec])
    snaps = _snapshots(rec)
    assert [s.counters.step for s in snaps] == [20, 40, 60]
    assert len(SpyMMS.chosen) == 60
    for n, snap in enumerate(snaps):
        expected = Counter(i for step in SpyMMS.chosen[20 * n:20 * (n + 1)] for i in step)
        got = dict(zip(snap.selected["index"], snap.selected["count"]))
        assert got == dict(expected)
        assert sum(snap.selected["count"]) == 20 * 16
        assert all(0 <= w <= c for w, c in zip(snap.selected["misclassified"], snap.selected["count"]))
        assert snap.scored == "candidates"


def test_snapshot_shapes_and_bounds() -> None:
    rec = Recorder()
    train(TrainConfig(selector="mms", **BASE), [rec])
    for snap in _snapshots(rec):
        for table, columns in SAMPLE_COLUMNS.items():
            data = getattr(snap, table)
            assert tuple(data) == columns
            assert len({len(v) for v in data.values()}) == 1, table
        assert len(snap.lowest["index"]) == 8  # k
        assert snap.lowest["mms"] == sorted(snap.lowest["mms"])
        assert len(snap.selected["index"]) <= min(20 * 16, 1257)  # samples_every x b, N
        assert len(snap.suspects["index"]) <= SUSPECTS_KEPT
        scores = snap.suspects["score"]
        assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)
        # the event survives JSON
        assert event_from_dict(snap.to_dict()) == snap


def test_uniform_scores_the_trained_batch() -> None:
    rec = Recorder()
    train(TrainConfig(selector="uniform", **BASE), [rec])
    snaps = _snapshots(rec)
    assert snaps and all(s.scored == "batch" for s in snaps)
    # uniform draws b samples without replacement within a pass: each is selected once per pass
    assert all(set(s.selected["count"]) == {1} for s in snaps)
    assert all(len(s.lowest["index"]) == 8 for s in snaps)


@pytest.mark.parametrize("selector", [s for s in list_selectors() if s not in ("uniform", "mms")])
def test_every_selector_gets_snapshots(selector: str) -> None:
    rec = Recorder()
    train(TrainConfig(selector=selector, **dict(BASE, steps=20, eval_every=20)), [rec])
    snaps = _snapshots(rec)
    assert len(snaps) == 1 and sum(snaps[0].selected["count"]) == 20 * 16


def test_off_means_no_snapshots() -> None:
    rec = Recorder()
    train(TrainConfig(selector="mms", **dict(BASE, samples_every=0)), [rec])
    assert not _snapshots(rec)


def test_flipped_indices_come_with_the_first_snapshot() -> None:
    rec = Recorder()
    train(TrainConfig(selector="mms", label_noise=0.2, **BASE), [rec])
    snaps = _snapshots(rec)
    assert len(snaps[0].flipped) == round(0.2 * 1257)
    assert all(not s.flipped for s in snaps[1:])


@pytest.mark.slow
def test_flipped_samples_become_suspects() -> None:
    """On digits with 20% flipped labels, most of the top suspects are flipped samples."""
    rec = Recorder()
    train(TrainConfig(selector="mms", label_noise=0.2, **dict(BASE, steps=200, samples_every=200, eval_every=200)), [rec])
    snap = _snapshots(rec)[-1]
    flipped = set(_snapshots(rec)[0].flipped)
    top = snap.suspects["index"][:50]
    assert len(top) == 50
    assert sum(i in flipped for i in top) / 50 > 0.5  # 20% by chance


def test_a_resumed_run_counts_what_its_checkpoint_held(tmp_path: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoint at step 30 (between snapshots at 20 and 40): the resumed run's snapshot at 40
    holds the same counts as the uninterrupted run's."""
    cfg = dict(BASE, checkpoint_every=30, steps=40, eval_every=40)
    full = Recorder()
    train(TrainConfig(selector="mms", out_dir=str(tmp_path / "a"), **cfg), [full])

    saved: list[Any] = []

    def note_checkpoint(event: Any) -> None:
        if getattr(event, "kind", "") == "checkpoint":
            saved.append(event)

    train(TrainConfig(selector="mms", out_dir=str(tmp_path / "b"), **cfg), [note_checkpoint],
          should_stop=lambda: bool(saved))
    second = Recorder()
    train(TrainConfig(selector="mms", out_dir=str(tmp_path / "b"),
                      resume_from=str(tmp_path / "b" / "checkpoint.pt"), **cfg), [second])
    a, b = _snapshots(full)[-1], _snapshots(second)[-1]
    assert a.counters.step == b.counters.step == 40
    assert a.selected == b.selected and a.suspects == b.suspects
