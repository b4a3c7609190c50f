"""mms-memory: ranking from a per-sample score memory (unseen last or first), free updates from the
training forward, rolling refreshes counted as real work, exact resume, and it learns digits."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from marginscope.engine.config import TrainConfig
from marginscope.engine.selection import make_selector, minimal_margin_scores
from marginscope.engine.loop import train


class Linear(nn.Module):
    """logits = x @ W.T: the model is its own head, so MMS of x is known in closed form."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.head = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.head.weight.copy_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def model_and_pool(n: int = 20, seed: int = 0) -> tuple[Linear, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    model = Linear(torch.randn(4, 3, generator=g))
    x = torch.randn(n, 3, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    return model, x, y, torch.arange(100, 100 + n)  # dataset indices 100..119


def test_unseen_samples_come_last_by_default() -> None:
    model, x, y, idx = model_and_pool()
    sel = make_selector("mms-memory", mix=0.0)
    sel._ensure(200)
    assert torch.isposinf(sel.memory).all()
    sel.memory[idx[[3, 9, 15]]] = torch.tensor([0.5, 0.2, 0.9])  # three scored, the rest unseen
    chosen = sel.select(model, x, y, idx, batch_size=5).index.tolist()
    assert chosen[:3] == [9, 3, 15]  # the scored ones, lowest first
    assert len(set(chosen[3:]) - {3, 9, 15}) == 2  # then unseen ones fill the batch


def test_unseen_samples_come_first_then_lowest_scores() -> None:
    model, x, y, idx = model_and_pool()
    sel = make_selector("mms-memory", mix=0.0, unseen="first")
    sel._ensure(200)
    sel.memory[idx] = torch.linspace(1.0, 2.0, 20)  # all seen ...
    sel.memory[idx[[4, 11]]] = float("-inf")  # ... except two
    sel.memory[idx[7]] = 0.01  # and one with the smallest stored score
    chosen = sel.select(model, x, y, idx, batch_size=5).index.tolist()
    assert set(chosen[:2]) == {4, 11}
    assert chosen[2] == 7
    assert set(chosen) == {4, 11, 7, 0, 1}  # then positions 0 and 1 (scores 1.0, 1.05)


def test_mix_draws_the_rest_uniformly_from_the_pool() -> None:
    model, x, y, idx = model_and_pool()
    seen = set()
    for seed in range(6):
        sel = make_selector("mms-memory", mix=0.5, seed=seed)
        sel._ensure(200)
        sel.memory[idx] = torch.arange(20, dtype=torch.float32)
        chosen = sel.select(model, x, y, idx, batch_size=8).index.tolist()
        assert chosen[:4] == [0, 1, 2, 3] and len(set(chosen)) == 8
        assert all(c >= 4 for c in chosen[4:])
        seen.add(tuple(chosen[4:]))
    assert len(seen) > 1  # the uniform share depends on the seed


def test_observe_stores_the_training_forward_margins() -> None:
    model, x, y, idx = model_and_pool()
    sel = make_selector("mms-memory")
    sel.select(model, x, y, idx, batch_size=4)  # remembers the head
    logits = model(x[:6]).detach()
    sel.observe(idx[:6], logits, y[:6])
    expected = minimal_margin_scores(logits, model.head.weight)
    torch.testing.assert_close(sel.memory[idx[:6]], expected)
    assert torch.isposinf(sel.memory[idx[6:]]).all()  # the rest still unseen


def test_refresh_covers_the_split_at_the_configured_pace() -> None:
    g = torch.Generator().manual_seed(1)
    model = Linear(torch.randn(4, 3, generator=g))
    data = torch.randn(100, 3, generator=g)
    fetched = []

    def fetch(i: torch.Tensor) -> torch.Tensor:
        fetched.append(i.clone())
        return data[i]

    sel = make_selector("mms-memory", block=30, refresh_epochs=1.0)
    done = [sel.refresh(model, fetch, num_train=100, steps_per_epoch=10) for _ in range(10)]
    # 10 samples owed per step; a block of 30 is forwarded every third step
    assert done == [0, 0, 30, 0, 0, 30, 0, 0, 30, 0]
    assert torch.cat(fetched).tolist() == list(range(90))
    torch.testing.assert_close(sel.memory[:90], minimal_margin_scores(model(data[:90]), model.head.weight))
    assert torch.isinf(sel.memory[90:]).all()
    sel.refresh(model, fetch, num_train=100, steps_per_epoch=10)  # 20 owed -> none; 30 -> wraps
    sel.refresh(model, fetch, num_train=100, steps_per_epoch=10)
    assert fetched[-1].tolist() == list(range(90, 100)) + list(range(20))
    assert torch.isfinite(sel.memory).all()


def test_state_dict_round_trip_makes_the_same_choices() -> None:
    model, x, y, idx = model_and_pool()
    a = make_selector("mms-memory", seed=5)
    a.select(model, x, y, idx, batch_size=6)
    a.observe(idx[:6], model(x[:6]).detach(), y[:6])
    a.refresh(model, lambda i: torch.randn(len(i), 3), num_train=130, steps_per_epoch=3)
    state = a.state_dict()
    b = make_selector("mms-memory", seed=99)
    b.load_state_dict(state)
    assert torch.equal(a.memory, b.memory) and (a.cursor, a.owed) == (b.cursor, b.owed)
    for _ in range(3):
        assert torch.equal(a.select(model, x, y, idx, batch_size=6).index,
                           b.select(model, x, y, idx, batch_size=6).index)
    with pytest.raises(ValueError, match="cannot load"):
        make_selector("mms").load_state_dict(state)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="mix"):
        make_selector("mms-memory", mix=1.0)
    with pytest.raises(ValueError, match="refresh_epochs"):
        make_selector("mms-memory", refresh_epochs=0.0)


BASE = dict(dataset="digits", selector="mms-memory", candidates=64, batch_size=16, steps=160,
            eval_every=40, hist_every=10, regime="constant", lr=0.01, seed=3,
            selector_options={"block": 256})


def test_learns_digits_and_counts_refreshes_as_forwarded() -> None:
    result = train(TrainConfig(**BASE))
    assert result.best_val_accuracy > 0.6 and result.test_accuracy > 0.6, result.summary
    # no candidate forward: 160 steps x 16 trained + whole refresh blocks of 256
    n_train, spe = 1257, math.ceil(1257 / 16)
    owed = 160 * n_train / spe
    assert result.samples_forwarded == 160 * 16 + int(owed // 256) * 256


def test_resume_equals_uninterrupted(tmp_path) -> None:
    cfg = dict(BASE, steps=60, hist_every=0, eval_every=20)
    full = train(TrainConfig(out_dir=str(tmp_path / "full"), **cfg))
    calls = {"n": 0}

    def stop_after_35() -> bool:
        calls["n"] += 1
        return calls["n"] > 35

    part = train(TrainConfig(out_dir=str(tmp_path / "part"), **cfg), should_stop=stop_after_35)
    resumed = train(TrainConfig(out_dir=str(tmp_path / "part"), resume_from=part.checkpoint, **cfg))
    a = torch.load(full.checkpoint, weights_only=False)
    b = torch.load(resumed.checkpoint, weights_only=False)
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert torch.equal(a["selector"]["memory"], b["selector"]["memory"])
    assert resumed.samples_forwarded == full.samples_forwarded


def test_priority_refresh_rescores_the_lowest_stored_margins() -> None:
    g = torch.Generator().manual_seed(2)
    model = Linear(torch.randn(4, 3, generator=g))
    data = torch.randn(100, 3, generator=g)
    fetched = []

    def fetch(i: torch.Tensor) -> torch.Tensor:
        fetched.append(i.clone())
        return data[i]

    sel = make_selector("mms-memory", block=20, refresh_epochs=1.0, priority=0.5)
    sel.refresh(model, fetch, num_train=100, steps_per_epoch=5)  # 20 owed: one block
    # nothing scored yet: the block is the cyclic half only (never-scored samples are not "lowest")
    assert fetched[-1].tolist() == list(range(10))
    stored = sel.memory.clone()
    sel.refresh(model, fetch, num_train=100, steps_per_epoch=5)
    block = fetched[-1].tolist()
    assert block[:10] == list(range(10, 20))  # the cursor moves by the cyclic half
    lowest = set(stored[:10].topk(10, largest=False).indices.tolist())
    assert set(block[10:]) == lowest  # the rest re-scores the lowest stored margins
    low = make_selector("mms-memory", block=20, low_precision=True)
    assert low.refresh(model, fetch, num_train=100, steps_per_epoch=5) == 20  # bfloat16 forwards
    torch.testing.assert_close(low.memory[:20], minimal_margin_scores(model(data[:20]), model.head.weight),
                               rtol=0.05, atol=0.05)
