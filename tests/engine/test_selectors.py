"""Selectors: each picks the right candidates on hand-made batches; registry, options, modes, state."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from marginscope.engine.selection import Selection, head_weight, list_selectors, make_selector, selector_help

NAMES = ["uniform", "mms", "mms-runner-up", "mms-runner-up-nobias", "hard-negative", "entropy", "top-loss",
         "selective-backprop"]
# the selectors that forward the whole candidate pool and rank it (the contract test below)
POOL_RANKERS = ["mms", "mms-runner-up", "mms-runner-up-nobias", "hard-negative", "entropy", "top-loss"]


class Linear(nn.Module):
    """features = identity, logits = head(x): the margins are set by hand through the head."""

    def __init__(self, weight: list[list[float]], bias: list[float] | None = None) -> None:
        super().__init__()
        w = torch.tensor(weight)
        self.head = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(w)
            self.head.bias.copy_(torch.tensor(bias) if bias is not None else torch.zeros(w.shape[0]))
        self.modes: list[bool] = []

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return self.head(self.features(x))


def binary_batch() -> tuple[Linear, torch.Tensor, torch.Tensor]:
    """z0 - z1 = 2 x0 and ||w0 - w1|| = 2, so MMS = |x0|. Labels make 0 and 4 confidently wrong."""
    model = Linear([[1.0, 0.0], [-1.0, 0.0]])
    x0 = torch.tensor([3.0, -0.1, 2.0, 0.5, -4.0, 0.2, 1.0, -1.5])
    x = torch.stack([x0, torch.zeros_like(x0)], dim=1)
    y = torch.tensor([1, 1, 0, 0, 0, 0, 0, 1])
    return model, x, y


def picked(sel: Selection) -> set[int]:
    return set(sel.index.tolist())


def test_registry() -> None:
    # the paper's selectors come first, in this order; cheaper modes may follow
    assert list_selectors()[:len(NAMES)] == NAMES
    helps = {h["name"]: h for h in selector_help()}
    assert set(helps) == set(list_selectors())
    assert all(h["help"] and "chunk" in h["options"] for h in helps.values())
    assert helps["mms"]["options"]["mix"]["default"] == 0.0
    assert helps["selective-backprop"]["options"]["window"]["default"] == 1024
    assert helps["infobatch"]["options"]["prune"]["default"] == 0.5


def test_unknown_name_and_option() -> None:
    with pytest.raises(ValueError, match="unknown selector 'nope'.*mms"):
        make_selector("nope")
    with pytest.raises(ValueError, match="'mixx'.*selector 'mms'.*mix"):
        make_selector("mms", mixx=0.1)
    with pytest.raises(ValueError, match="'mix'.*must be in"):
        make_selector("mms", mix=1.5)
    with pytest.raises(ValueError, match="'window'.*int"):
        make_selector("selective-backprop", window="big")
    with pytest.raises(ValueError, match="'beta'"):
        make_selector("selective-backprop", beta=0)
    assert make_selector("mms", mix=0, chunk=64.0).mix == 0.0  # JSON-ish numbers are coerced


def test_duplicate_registration_raises() -> None:
    from marginscope.engine.selection.selectors import Selector, register_selector

    class Again(Selector):
        name = "mms"

    with pytest.raises(ValueError, match="already registered"):
        register_selector(Again)
    assert list_selectors()[:len(NAMES)] == NAMES


@pytest.mark.parametrize("name", ["uniform", *POOL_RANKERS])
@pytest.mark.parametrize("training", [True, False])
def test_every_selector_contract(name: str, training: bool) -> None:
    model, x, y = binary_batch()
    model.train(training)
    sel = make_selector(name).select(model, x, y, torch.arange(100, 108), batch_size=3)
    assert sel.index.dtype == torch.int64 and sel.index.shape == (3,)
    assert len(picked(sel)) == 3 and all(0 <= i < 8 for i in picked(sel))
    assert model.training is training
    assert all(mode is False for mode in model.modes)  # scoring ran in eval mode
    if name == "uniform":
        assert sel.scores is None and sel.logits is None and not model.modes
        assert sel.index.tolist() == [0, 1, 2]
    else:
        assert sel.scores.shape == (8,) and sel.scores.dtype == torch.float32
        assert sel.logits.shape == (8, 2) and sel.logits.dtype == torch.float32
        assert sel.threshold is not None
    # b larger than the pool: everything, once.
    assert sorted(make_selector(name).select(model, x, y, None, batch_size=50).index.tolist()) == list(range(8))


def test_uniform_does_not_use_candidates() -> None:
    assert make_selector("uniform").uses_candidates is False
    assert all(make_selector(n).uses_candidates for n in POOL_RANKERS)
    # these draw what their keep rate needs, not a pool of B
    assert not make_selector("selective-backprop").uses_candidates
    assert not make_selector("infobatch").uses_candidates


def test_mms_keeps_smallest_margins() -> None:
    model, x, y = binary_batch()
    sel = make_selector("mms").select(model, x, y, None, batch_size=3)
    assert sel.index.tolist() == [1, 5, 3]  # |x0| = 0.1, 0.2, 0.5, ascending
    torch.testing.assert_close(sel.scores, x[:, 0].abs())
    assert sel.threshold == pytest.approx(0.5)


def test_mms_exact_and_runner_up_disagree() -> None:
    # d = 2, K = 3; rows 0 and 1 are close (0.1 apart), row 2 is 1 away from row 0.
    model = Linear([[0.0, 0.0], [0.1, 0.0], [0.0, 1.0]])
    # Sample A: z = (0, -1, -3): exact min(10, 3) = 3, runner-up 10.
    # Sample B: z = (0, -0.5, -8): exact min(5, 8) = 5, runner-up 5.
    x = torch.tensor([[-10.0, -3.0], [-5.0, -8.0]])
    y = torch.tensor([0, 0])
    assert make_selector("mms").select(model, x, y, None, batch_size=1).index.tolist() == [0]
    assert make_selector("mms-runner-up-nobias").select(model, x, y, None, batch_size=1).index.tolist() == [1]
    # zero bias: folding it into the norm changes nothing
    assert make_selector("mms-runner-up").select(model, x, y, None, batch_size=1).index.tolist() == [1]


def test_mms_mix_and_warmup() -> None:
    model, x, y = binary_batch()
    sel = make_selector("mms", mix=0.5, seed=1).select(model, x, y, None, batch_size=4)
    assert sel.index[:2].tolist() == [1, 5]  # the ranked half
    assert len(picked(sel)) == 4 and not {1, 5} & set(sel.index[2:].tolist())
    assert sel.threshold == pytest.approx(0.2)
    draws = {tuple(make_selector("mms", mix=0.5, seed=s).select(model, x, y, None, batch_size=4).index.tolist())
             for s in range(8)}
    assert len(draws) > 1  # the seed matters
    warm = make_selector("mms", warmup_epochs=1.0)
    early = warm.select(model, x, y, None, batch_size=3, epoch=0.5)
    assert early.index.tolist() == [0, 1, 2] and early.scores is None
    assert warm.select(model, x, y, None, batch_size=3, epoch=1.0).index.tolist() == [1, 5, 3]


@pytest.mark.parametrize("spec", [("top-loss", {}), ("hard-negative", {"ramp_rate": 0.0, "balanced": False})])
def test_top_loss_keeps_largest_losses(spec: tuple[str, dict]) -> None:
    model, x, y = binary_batch()
    sel = make_selector(spec[0], **spec[1]).select(model, x, y, None, batch_size=2)
    # x0 = -4 labelled 0 and x0 = 3 labelled 1 are the most confidently wrong.
    assert sel.index.tolist() == [4, 0]
    torch.testing.assert_close(sel.scores, F.cross_entropy(model.head(x), y, reduction="none").detach())
    assert sel.threshold == pytest.approx(float(sel.scores[0]))


def test_hard_negative_ramp_fills_class_balanced() -> None:
    torch.manual_seed(0)
    model = Linear(torch.randn(4, 3).tolist())
    x = torch.randn(400, 3)
    y = torch.arange(400) % 4
    selector = make_selector("hard-negative", ramp_epochs=10.0, ramp_rate=0.0, balanced=False)
    assert selector.hard_share(0.0) == pytest.approx(0.1)
    assert selector.hard_share(5.0) == pytest.approx(0.55)
    assert selector.hard_share(20.0) == 1.0
    sel = selector.select(model, x, y, None, batch_size=40, epoch=0.0)
    hardest = set(sel.scores.topk(4).indices.tolist())
    assert set(sel.index[:4].tolist()) == hardest
    fill = sel.index[4:]
    assert len(picked(sel)) == 40
    counts = torch.bincount(y[fill], minlength=4)
    assert counts.max() - counts.min() <= 1  # 36 spread over 4 classes: 9 each
    late = selector.select(model, x, y, None, batch_size=40, epoch=10.0)
    assert set(late.index.tolist()) == set(late.scores.topk(40).indices.tolist())


def test_entropy_differs_from_mms() -> None:
    model = Linear([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # logits = x
    # a: top two nearly tied (small margin) but a third class is out: entropy ~ ln 2.
    # c: clear winner by 0.5 but three plausible classes: entropy ~ 1.07 > ln 2.
    x = torch.tensor([[1.0, 0.9, -10.0], [0.5, 0.0, 0.0], [5.0, 0.0, 0.0]])
    y = torch.zeros(3, dtype=torch.long)
    assert make_selector("entropy").select(model, x, y, None, batch_size=1).index.tolist() == [1]
    assert make_selector("mms").select(model, x, y, None, batch_size=1).index.tolist() == [0]
    sel = make_selector("entropy").select(model, x, y, None, batch_size=2)
    assert sel.index.tolist() == [1, 0] and sel.threshold == pytest.approx(float(sel.scores[0]))


def test_top_loss_percentiles_and_fixed_batch() -> None:
    sb = make_selector("top-loss", window=4, beta=2.0)
    sb._push(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    torch.testing.assert_close(sb.keep_probability(torch.tensor([0.5, 2.0, 4.0])), torch.tensor([0.0, 0.25, 1.0]))
    sb._push(torch.tensor([10.0]))  # ring buffer: the oldest (1.0) goes
    assert sorted(sb.history.tolist()) == [2.0, 3.0, 4.0, 10.0] and sb.filled == 4

    # With beta tiny everything is kept: the batch is the b largest losses.
    model, x, y = binary_batch()
    keep_all = make_selector("top-loss", beta=1e-9).select(model, x, y, None, batch_size=2)
    assert keep_all.index.tolist() == [4, 0]

    # Keep rate follows the percentile: about half the candidates for beta = 1 on a full window.
    torch.manual_seed(0)
    big = Linear(torch.randn(5, 4).tolist())
    xs, ys = torch.randn(4000, 4), torch.randint(0, 5, (4000,))
    sb = make_selector("top-loss", window=4000, beta=1.0)
    losses = F.cross_entropy(big(xs), ys, reduction="none").detach()
    sb._push(losses)
    kept = (torch.rand(4000, generator=torch.Generator().manual_seed(0)) < sb.keep_probability(losses)).float()
    assert 0.45 < kept.mean().item() < 0.55


def test_top_loss_state_round_trip() -> None:
    torch.manual_seed(0)
    model = Linear(torch.randn(5, 4).tolist())
    batches = [(torch.randn(32, 4), torch.randint(0, 5, (32,))) for _ in range(6)]
    first = make_selector("top-loss", window=50, beta=1.0, seed=7)
    for x, y in batches[:3]:
        first.select(model, x, y, None, batch_size=8)
    state = first.state_dict()
    resumed = make_selector("top-loss", window=50, beta=1.0, seed=7)
    resumed.load_state_dict(state)
    fresh = make_selector("top-loss", window=50, beta=1.0, seed=7)
    runs = {key: [sel.select(model, x, y, None, batch_size=8).index.tolist() for x, y in batches[3:]]
            for key, sel in (("first", first), ("resumed", resumed), ("fresh", fresh))}
    assert runs["resumed"] == runs["first"]
    assert runs["fresh"] != runs["first"]  # the state matters: without it the choices differ
    with pytest.raises(ValueError, match="window"):
        make_selector("top-loss", window=10, beta=1.0).load_state_dict(state)


def test_mms_mix_state_round_trip() -> None:
    model, x, y = binary_batch()
    first = make_selector("mms", mix=0.5, seed=3)
    first.select(model, x, y, None, batch_size=4)
    resumed = make_selector("mms", mix=0.5, seed=3)
    resumed.load_state_dict(first.state_dict())
    for _ in range(3):
        assert torch.equal(first.select(model, x, y, None, batch_size=4).index,
                           resumed.select(model, x, y, None, batch_size=4).index)
    with pytest.raises(ValueError, match="cannot load"):
        make_selector("entropy").load_state_dict(first.state_dict())


def test_head_weight_finds_wrapped_and_third_party_heads() -> None:
    model, _, _ = binary_batch()
    wrapper = nn.Module()
    wrapper.module = model  # as DistributedDataParallel does
    assert head_weight(wrapper) is model.head.weight
    plain = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert head_weight(plain) is plain[2].weight
    with pytest.raises(ValueError, match="nn.Linear"):
        head_weight(nn.Sequential(nn.ReLU()))


class _Indexed(Dataset):
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 1, 6, 6, generator=g)
        self.y = (self.x.mean((1, 2, 3)) > 0).long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        return i, self.x[i], self.y[i]


class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@pytest.mark.parametrize("name", NAMES)
def test_readme_snippet(name: str) -> None:
    torch.manual_seed(0)
    model = _TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(_Indexed(256), batch_size=64, shuffle=True)
    before = model.head.weight.detach().clone()

    selector = make_selector(name)
    for idx, x, y in loader:                      # a candidate batch of B samples
        sel = selector.select(model, x, y, idx, batch_size=16)
        loss = F.cross_entropy(model(x[sel.index]), y[sel.index])
        opt.zero_grad(); loss.backward(); opt.step()

    assert model.training and torch.isfinite(loss)
    assert not torch.equal(before, model.head.weight)
