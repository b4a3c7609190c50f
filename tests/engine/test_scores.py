"""Scores: exact MMS against a brute-force loop, its invariances and guards; loss and entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from marginscope.engine.selection import (
    cross_entropy_scores,
    entropy_scores,
    minimal_margin_scores,
    score_logits,
)


def brute_force_mms(logits: torch.Tensor, weight: torch.Tensor, runner_up_only: bool = False) -> list[float]:
    """The definition, one sample and one class at a time, in float64."""
    z, w = logits.double(), weight.double()
    out = []
    for row in z:
        i = int(row.argmax())
        if runner_up_only:
            j = int(row.topk(2).indices[1])
            out.append(float((row[i] - row[j]) / (w[i] - w[j]).norm()))
            continue
        best = math.inf
        for j in range(len(row)):
            if j != i:
                best = min(best, float((row[i] - row[j]) / (w[i] - w[j]).norm()))
        out.append(best)
    return out


def random_head(seed: int, batch: int, classes: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(classes, dim, generator=g)
    bias = torch.randn(classes, generator=g)
    h = torch.randn(batch, dim, generator=g) * 3
    return h @ weight.T + bias, weight


@pytest.mark.parametrize("classes", [2, 3, 10, 100])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("runner_up_only", [False, True])
def test_mms_matches_brute_force(classes: int, seed: int, runner_up_only: bool) -> None:
    logits, weight = random_head(seed, batch=16, classes=classes, dim=7)
    got = minimal_margin_scores(logits, weight, runner_up_only=runner_up_only)
    want = torch.tensor(brute_force_mms(logits, weight, runner_up_only), dtype=torch.float32)
    assert got.dtype == torch.float32 and got.shape == (16,)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 12),
    classes=st.integers(2, 20),
    dim=st.integers(1, 16),
    scale=st.floats(1e-2, 1e2),
)
def test_mms_matches_brute_force_hypothesis(seed: int, batch: int, classes: int, dim: int, scale: float) -> None:
    logits, weight = random_head(seed, batch, classes, dim)
    weight = weight * scale
    logits = logits * scale
    got = minimal_margin_scores(logits, weight)
    want = torch.tensor(brute_force_mms(logits, weight), dtype=torch.float32)
    assert torch.isfinite(got).all() and (got >= 0).all()
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4 * scale)


def test_exact_never_exceeds_runner_up() -> None:
    logits, weight = random_head(3, batch=200, classes=10, dim=5)
    exact = minimal_margin_scores(logits, weight)
    runner_up = minimal_margin_scores(logits, weight, runner_up_only=True)
    assert (exact <= runner_up + 1e-5).all()
    assert (exact < runner_up - 1e-5).any()  # they do disagree on some samples


def test_binary_margin() -> None:
    g = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(2, 5, generator=g), torch.randn(2, generator=g)
    h = torch.randn(32, 5, generator=g)
    w, b = weight[1] - weight[0], bias[1] - bias[0]
    want = (h @ w + b).abs() / w.norm()
    got = minimal_margin_scores(h @ weight.T + bias, weight)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("c", [1e-3, 0.5, 7.0, 1e3])
def test_invariant_under_scaling(c: float) -> None:
    logits, weight = random_head(5, batch=32, classes=10, dim=8)
    base = minimal_margin_scores(logits, weight)
    torch.testing.assert_close(minimal_margin_scores(c * logits, c * weight), base, rtol=1e-4, atol=1e-6)


def test_runner_up_differs_from_exact_by_hand() -> None:
    # Class 1 is the runner-up (gap 1) but its row is close to the winner's (distance 0.1):
    # margin 10. Class 2 has a larger gap (3) at distance 1: margin 3, the true minimum.
    weight = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 1.0]])
    logits = torch.tensor([[3.0, 2.0, 0.0]])
    assert minimal_margin_scores(logits, weight).item() == pytest.approx(3.0, rel=1e-5)
    assert minimal_margin_scores(logits, weight, runner_up_only=True).item() == pytest.approx(10.0, rel=1e-5)


def test_identical_rows_finite_and_ignored_when_others_compete() -> None:
    weight = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    logits = torch.tensor([[2.0, 1.0, 0.0], [5.0, 0.0, 4.0], [1.0, 1.0, 1.0]])
    got = minimal_margin_scores(logits, weight)
    assert torch.isfinite(got).all() and (got >= 0).all()
    # Row 1: class 1 shares the winner's weight row (can never be reached by moving h); the real
    # competitor is class 2 at gap 1 and distance sqrt(2).
    assert got[1].item() == pytest.approx(1 / math.sqrt(2), rel=1e-5)
    assert got[2].item() == 0.0  # tied logits
    # Scaling invariance holds even for the guarded pairs (the guard is relative to ||W||).
    torch.testing.assert_close(minimal_margin_scores(3 * logits, 3 * weight), got, rtol=1e-4, atol=0.0)


def test_all_rows_identical_and_zero_weight_are_finite() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    for weight in (torch.ones(3, 4), torch.zeros(3, 4)):
        got = minimal_margin_scores(logits, weight)
        assert torch.isfinite(got).all() and (got >= 0).all()
        assert got[1].item() == 0.0
        assert got[0].item() > 1e3  # "unreachable" means very far, not near


def test_tied_logits_score_zero() -> None:
    logits, weight = random_head(0, batch=4, classes=5, dim=3)
    top = logits.max(dim=1).values
    logits[:, 0], logits[:, 3] = top, top  # two classes tie at the top
    for ru in (False, True):
        assert (minimal_margin_scores(logits, weight, runner_up_only=ru) == 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_give_float32(dtype: torch.dtype) -> None:
    logits, weight = random_head(1, batch=16, classes=10, dim=8)
    lo_logits, lo_weight = logits.to(dtype), weight.to(dtype)
    got = minimal_margin_scores(lo_logits, lo_weight)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    torch.testing.assert_close(got, minimal_margin_scores(lo_logits.float(), lo_weight.float()))


def test_nan_logits_do_not_escape() -> None:
    logits, weight = random_head(1, batch=3, classes=4, dim=2)
    logits[1] = float("nan")
    assert torch.isfinite(minimal_margin_scores(logits, weight)).all()


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="weight"):
        minimal_margin_scores(torch.zeros(2, 3), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="2 classes"):
        minimal_margin_scores(torch.zeros(2, 1), torch.zeros(1, 5))


def test_cross_entropy_and_entropy() -> None:
    logits, _ = random_head(2, batch=10, classes=6, dim=4)
    labels = torch.arange(10) % 6
    torch.testing.assert_close(cross_entropy_scores(logits, labels),
                               F.cross_entropy(logits, labels, reduction="none"))
    p = logits.softmax(1)
    torch.testing.assert_close(entropy_scores(logits), -(p * p.log()).sum(1))
    # Stable at extremes: uniform -> ln K, one-hot-ish and -inf logits -> finite.
    assert entropy_scores(torch.zeros(1, 6)).item() == pytest.approx(math.log(6))
    extreme = torch.tensor([[1e4, -1e4, float("-inf")]])
    assert entropy_scores(extreme).item() == pytest.approx(0.0, abs=1e-6)
    assert entropy_scores(extreme.half()).dtype == torch.float32


class _Recorder(nn.Module):
    """Linear head that records its mode and the memory format of what it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.head = nn.Linear(4, 5)
        self.seen: list[tuple[bool, bool, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, x.is_contiguous(memory_format=torch.channels_last), x.shape[0]))
        return self.head(self.conv(x).mean((2, 3)))


@pytest.mark.parametrize("training", [True, False])
def test_score_logits_chunks_mode_and_memory_format(training: bool) -> None:
    torch.manual_seed(0)
    model = _Recorder().train(training)
    x = torch.randn(10, 3, 4, 4).to(memory_format=torch.channels_last)
    chunked = score_logits(model, x, chunk=4)
    assert [s[2] for s in model.seen] == [4, 4, 2]
    assert all(not s[0] and s[1] for s in model.seen)  # eval mode, channels-last kept
    assert model.training is training
    whole = score_logits(model, x, chunk=0)
    assert model.seen[-1][2] == 10
    torch.testing.assert_close(chunked, whole)
    assert chunked.dtype == torch.float32 and not chunked.requires_grad
    # An ordinary tensor (not an inference tensor): usable in later autograd graphs.
    weight = torch.ones(5, requires_grad=True)
    (chunked * weight).sum().backward()


def test_score_logits_restores_mixed_modes() -> None:
    model = _Recorder().train()
    model.conv.eval()  # e.g. a frozen part
    score_logits(model, torch.randn(2, 3, 2, 2))
    assert model.training and not model.conv.training and model.head.training


def brute_force_runner_up_folded(logits: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> list[float]:
    """The reference code's score, one sample at a time in float64: features with an appended 1,
    the bias as the last column of the weight, margin to the runner-up over ||[w_i; b_i] - [w_j; b_j]||."""
    w = torch.cat([weight.double(), bias.double()[:, None]], dim=1)
    out = []
    for row in logits.double():
        i, j = (int(k) for k in row.topk(2).indices)
        out.append(float((row[i] - row[j]) / (w[i] - w[j]).norm()))
    return out


@pytest.mark.parametrize("classes", [2, 3, 10, 100])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_runner_up_with_folded_bias_matches_brute_force(classes: int, seed: int) -> None:
    logits, weight = random_head(seed, batch=16, classes=classes, dim=7)
    bias = torch.randn(classes, generator=torch.Generator().manual_seed(seed + 100)) * 2
    got = minimal_margin_scores(logits, weight, runner_up_only=True, bias=bias)
    want = torch.tensor(brute_force_runner_up_folded(logits, weight, bias), dtype=torch.float32)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # folding the bias in only lengthens the norm: the folded score is never the larger one
    plain = minimal_margin_scores(logits, weight, runner_up_only=True)
    assert (got <= plain + 1e-5).all() and (got < plain - 1e-5).any()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 12), classes=st.integers(2, 20),
       dim=st.integers(1, 16))
def test_runner_up_with_folded_bias_hypothesis(seed: int, batch: int, classes: int, dim: int) -> None:
    logits, weight = random_head(seed, batch, classes, dim)
    bias = torch.randn(classes, generator=torch.Generator().manual_seed(seed))
    got = minimal_margin_scores(logits, weight, runner_up_only=True, bias=bias)
    want = torch.tensor(brute_force_runner_up_folded(logits, weight, bias), dtype=torch.float32)
    assert torch.isfinite(got).all() and (got >= 0).all()
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)


def test_folded_bias_shape_is_checked() -> None:
    logits, weight = random_head(0, batch=4, classes=5, dim=3)
    with pytest.raises(ValueError, match="bias must be"):
        minimal_margin_scores(logits, weight, runner_up_only=True, bias=torch.zeros(4))
