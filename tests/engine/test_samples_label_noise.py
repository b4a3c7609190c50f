"""label_noise: the exact share flips, each to another class, seeded by the run's seed, on the
training split only; the run reports it and the config refuses out-of-range shares."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from marginscope.engine.callbacks import Recorder
from marginscope.engine.config import TrainConfig
from marginscope.engine.data import flip_labels, load_dataset
from marginscope.engine.distributed import Ranks
from marginscope.engine.events import RunStarted
from marginscope.engine.loop import _setup, train


def _labels(n: int = 1000, k: int = 10) -> torch.Tensor:
    return torch.arange(n) % k


def test_flip_labels_flips_exactly_the_share_to_other_classes() -> None:
    labels = _labels()
    noisy, flipped = flip_labels(labels, 0.1, 10, seed=5)
    assert flipped.dtype == torch.int64 and len(flipped) == 100
    assert torch.equal(flipped, flipped.sort().values) and len(set(flipped.tolist())) == 100
    changed = (noisy != labels).nonzero().flatten()
    assert torch.equal(changed, flipped)  # every flipped label changed, no other did
    assert noisy.min() >= 0 and noisy.max() < 10
    assert torch.equal(labels, _labels())  # the input is left as it was


def test_flip_labels_is_symmetric_over_the_other_classes() -> None:
    labels = torch.zeros(20000, dtype=torch.long)
    noisy, flipped = flip_labels(labels, 0.5, 10, seed=1)
    counts = torch.bincount(noisy[flipped], minlength=10)
    assert counts[0] == 0
    share = counts[1:].double() / len(flipped)
    assert (share - 1 / 9).abs().max() < 0.02  # each of the 9 others ~ 1/9 of the flips


def test_flip_labels_is_seeded_and_leaves_the_global_stream_alone() -> None:
    labels = _labels()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = flip_labels(labels, 0.2, 10, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = flip_labels(labels, 0.2, 10, seed=7)
    c = flip_labels(labels, 0.2, 10, seed=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_no_noise_changes_nothing() -> None:
    labels = _labels()
    noisy, flipped = flip_labels(labels, 0.0, 10, seed=0)
    assert torch.equal(noisy, labels) and flipped.numel() == 0


@pytest.mark.parametrize("share", [-0.1, 0.9, 1.0])
def test_out_of_range_shares_are_refused(share: float) -> None:
    with pytest.raises(ValueError, match="label"):
        flip_labels(_labels(), share, 10, seed=0)
    with pytest.raises(ValidationError, match="label_noise"):
        TrainConfig(dataset="digits", label_noise=share)


def test_the_run_trains_on_noisy_labels_and_validates_on_clean_ones() -> None:
    config = TrainConfig(dataset="digits", label_noise=0.3, seed=4, steps=2, device="cpu")
    clean = load_dataset("digits")
    run = _setup(config, lambda event: None, Ranks())  # one process
    expected, flipped = flip_labels(clean.train.labels, 0.3, clean.num_classes, seed=4)
    assert torch.equal(run.data.train.labels, expected)
    assert torch.equal(run.flipped, flipped) and len(flipped) == round(0.3 * len(clean.train))
    assert torch.equal(run.data.val.labels, clean.val.labels)
    assert torch.equal(run.data.test.labels, clean.test.labels)


def test_run_started_reports_the_noise() -> None:
    rec = Recorder()
    train(TrainConfig(dataset="digits", label_noise=0.2, seed=2, steps=2, eval_every=2, device="cpu",
                      candidates=32, batch_size=16), [rec])
    started = rec.of(RunStarted)[0]
    n = started.dataset["num_train"]
    assert started.dataset["label_noise"] == {"share": 0.2, "count": round(0.2 * n), "seed": 2}
    assert started.config["label_noise"] == 0.2
    rec = Recorder()
    train(TrainConfig(dataset="digits", seed=2, steps=2, eval_every=2, device="cpu", candidates=32,
                      batch_size=16), [rec])
    assert "label_noise" not in rec.of(RunStarted)[0].dataset
