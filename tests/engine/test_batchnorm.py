"""BatchNorm running statistics from the candidate pool (engine/batchnorm.py).

The recorded update must equal what PyTorch's own train-mode update would do on the same samples,
the training forward must leave the statistics alone while they come from the pool, and runs whose
selector scores no candidates, or declares its scoring forward unfit, must be unaffected.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from marginscope.engine.batchnorm import PoolStatistics
from marginscope.engine.config import TrainConfig
from marginscope.engine.selection import score_logits
from marginscope.engine.selection import selectors as selector_registry
from marginscope.engine.loop import train

BASE = dict(dataset="digits", candidates=64, batch_size=16, steps=40, eval_every=40, hist_every=0,
            log_every=10, regime="constant", lr=0.05, seed=5)


def conv_bn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("chunk", [0, 5, 64])
def test_recorded_update_equals_pytorchs_update_on_the_first_samples(chunk: int, channels_last: bool) -> None:
    model = conv_bn()
    x = torch.randn(40, 1, 10, 10) * 3 + 1
    model(x)  # materialise the lazy layer
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    reference = copy.deepcopy(model)
    pool = PoolStatistics(model, samples=16)

    with pool.recording():
        score_logits(model, x, chunk=chunk)  # eval mode, in chunks: only the first 16 count
    assert pool.recorded
    pool.update()

    reference.train()
    with torch.no_grad():
        reference(x[:16])  # PyTorch's own running-statistics update from those 16 samples
    got, want = model[1], reference[1]
    torch.testing.assert_close(got.running_mean, want.running_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.running_var, want.running_var, rtol=1e-5, atol=1e-6)


def test_frozen_training_forward_keeps_the_statistics() -> None:
    model = conv_bn()
    x = torch.randn(8, 1, 10, 10)
    model(x)
    pool = PoolStatistics(model)
    before = model[1].running_mean.clone(), model[1].running_var.clone()
    model.train()
    with pool.frozen():
        model(x + 5).sum().backward()
    assert torch.equal(model[1].running_mean, before[0]) and torch.equal(model[1].running_var, before[1])
    assert model[1].momentum == 0.1  # restored
    model(x + 5)
    assert not torch.equal(model[1].running_mean, before[0])  # unfrozen: PyTorch's usual update


def bn_buffers(checkpoint: str) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, weights_only=False)["model"]
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


def test_pool_statistics_change_selective_runs_only(tmp_path) -> None:
    runs = {}
    for selector in ("uniform", "mms"):
        for bn in ("pool", "batch"):
            out = tmp_path / f"{selector}-{bn}"
            runs[selector, bn] = bn_buffers(train(TrainConfig(selector=selector, bn_stats=bn, out_dir=str(out),
                                                              **BASE)).checkpoint)
    # uniform scores no candidates: the setting has no effect at all
    for name, value in runs["uniform", "pool"].items():
        assert torch.equal(value, runs["uniform", "batch"][name]), name
    # mms: the statistics come from other samples
    assert any(not torch.equal(v, runs["mms", "batch"][k]) for k, v in runs["mms", "pool"].items())


class MMSOwnBatchNorm(selector_registry.MMSSelector):
    name = "test-mms-own-batchnorm"
    batchnorm_from_pool = False  # its scoring forward must not feed BatchNorm's statistics


def test_a_selector_can_keep_its_scoring_forward_out_of_the_statistics(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(selector_registry._SELECTORS, MMSOwnBatchNorm.name, MMSOwnBatchNorm)
    runs = {bn: bn_buffers(train(TrainConfig(selector=MMSOwnBatchNorm.name, bn_stats=bn,
                                             out_dir=str(tmp_path / bn), **BASE)).checkpoint)
            for bn in ("pool", "batch")}
    for name, value in runs["pool"].items():
        assert torch.equal(value, runs["batch"][name]), name
