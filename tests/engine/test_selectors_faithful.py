"""The baselines as their papers define them: the reference code's runner-up score (bias folded in),
hard-negative's ramp and class balance, Selective-Backprop's priming, one forward per draw and
carried-over kept samples,
InfoBatch's soft pruning, rescaling and annealing; and the loop honouring what they declare
(per-sample loss weights, the forwards really run, the draw size)."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
import torch.nn.functional as F

from marginscope.engine import TrainConfig, train
from marginscope.engine.callbacks import Recorder
from marginscope.engine.events import StepMetrics
from marginscope.engine.selection import make_selector, minimal_margin_scores
from marginscope.engine.selection import selectors as selectors_module
from marginscope.engine.selection.selectors import Selection, Selector
from tests.engine.test_selectors import Linear


def test_mms_runner_up_folds_the_bias_into_the_norm() -> None:
    # Two classes' weight rows are equal-distance pairs; the bias decides the reference's denominator.
    weight = [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]
    bias = [0.0, 0.0, 3.0]
    model = Linear(weight, bias)
    torch.manual_seed(0)
    x = torch.randn(64, 2) * 2
    y = torch.zeros(64, dtype=torch.long)
    logits = model.head(x).detach()
    want = minimal_margin_scores(logits, model.head.weight, runner_up_only=True, bias=model.head.bias)
    plain = minimal_margin_scores(logits, model.head.weight, runner_up_only=True)
    sel = make_selector("mms-runner-up").select(model, x, y, None, batch_size=8)
    torch.testing.assert_close(sel.scores, want)
    old = make_selector("mms-runner-up-nobias").select(model, x, y, None, batch_size=8)
    torch.testing.assert_close(old.scores, plain)
    assert not torch.allclose(want, plain)  # the bias does enter the reference's score


def test_hard_negative_reference_ramp_and_balanced_hard_share() -> None:
    selector = make_selector("hard-negative", seed=3)  # the reference's procedure is the default
    assert [selector.hard_share(e) for e in (0.0, 0.99, 1.0, 4.5, 9.0, 30.0)] == pytest.approx(
        [0.1, 0.1, 0.2, 0.5, 1.0, 1.0])
    torch.manual_seed(0)
    model = Linear(torch.randn(4, 3).tolist())
    x = torch.randn(400, 3)
    y = torch.arange(400) % 4
    sel = selector.select(model, x, y, None, batch_size=40, epoch=9.0)  # all hard, balanced
    assert len(set(sel.index.tolist())) == 40
    counts = torch.bincount(y[sel.index], minlength=4)
    assert counts.tolist() == [10, 10, 10, 10]
    for c in range(4):  # each class gives its own hardest samples
        mine = (y == c).nonzero().squeeze(1)
        hardest = set(mine[sel.scores[mine].topk(10).indices].tolist())
        assert set(sel.index[y[sel.index] == c].tolist()) == hardest
    # epoch 0: 10% hard (4 of 40, one per class), the other 36 drawn class-balanced at random
    early = selector.select(model, x, y, None, batch_size=40, epoch=0.5)
    assert torch.bincount(y[early.index], minlength=4).tolist() == [10, 10, 10, 10]
    hard = early.index[:4]
    assert sorted(y[hard].tolist()) == [0, 1, 2, 3]
    for c in range(4):  # the hard one of each class is its largest loss
        mine = (y == c).nonzero().squeeze(1)
        assert int(hard[y[hard] == c]) == int(mine[early.scores[mine].argmax()])
    assert selector.select(model, x, y, None, batch_size=40, epoch=4.0).threshold is not None
    unbalanced = make_selector("hard-negative", ramp_rate=0.0, balanced=False).select(model, x, y, None, batch_size=40)
    assert torch.bincount(y[unbalanced.index], minlength=4).tolist() != [10, 10, 10, 10]


def test_selective_backprop_streaming_variant_stops_once_b_are_kept() -> None:
    torch.manual_seed(0)
    model = Linear(torch.randn(5, 4).tolist())
    sb = make_selector("selective-backprop", beta=1.0, stream_chunk=8, prime_epochs=0, slack=1.0, seed=1)
    assert sb.pool_size(640, 16, 0) == 64  # b x (1 + slack) / E[keep] = 16 x 2 x 2
    x, y = torch.randn(400, 4), torch.randint(0, 5, (400,))
    sel = sb.select(model, x, y, torch.arange(400), batch_size=16)
    assert sel.index.shape == (16,) and len(set(sel.index.tolist())) == 16
    assert sel.forwarded % 8 == 0 and sel.forwarded < 400  # stopped once 16 were kept
    assert sel.unused == 400 - sel.forwarded  # the loop puts the unreached tail back
    forwarded = torch.isfinite(sel.scores)
    assert int(forwarded.sum()) == sel.forwarded and bool(forwarded[:sel.forwarded].all())
    assert bool(forwarded[sel.index].all())  # only forwarded samples are trained
    assert sb.history.filled == sel.forwarded
    # keep probability = percentile^beta among the window
    sb2 = make_selector("selective-backprop", window=4, beta=2.0)
    sb2.history.push(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    torch.testing.assert_close(sb2.history.percentile(torch.tensor([0.5, 2.0, 4.0])).pow(2.0),
                               torch.tensor([0.0, 0.25, 1.0]))


class _CountingLinear(Linear):
    """Linear that records the batch size of every forward."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.calls: list[int] = []

    def forward(self, x):  # type: ignore[no-untyped-def]
        self.calls.append(x.shape[0])
        return super().forward(x)


def test_selective_backprop_primes_the_first_epoch() -> None:
    torch.manual_seed(0)
    model = _CountingLinear(torch.randn(5, 4).tolist())
    sb = make_selector("selective-backprop", seed=0)  # prime_epochs = 1, the reference's
    sb.begin(num_train=160, steps_per_epoch=10, total_steps=30)
    assert [sb.pool_size(640, 16, step) for step in (0, 9)] == [16, 16]  # the loop draws b
    x, y = torch.randn(16, 4), torch.randint(0, 5, (16,))
    sel = sb.select(model, x, y, torch.arange(16), batch_size=16, epoch=0.9)
    assert sel.index.tolist() == list(range(16)) and sel.forwarded == 0  # every drawn sample, no forward
    assert model.calls == [] and sb.history.filled == 0  # nothing scored, nothing in the window
    assert sb.pool_size(640, 16, 10) > 16  # epoch 1: selecting, the draw sized by the keep rate


def test_selective_backprop_forwards_the_draw_once_and_carries_the_extra_kept() -> None:
    torch.manual_seed(0)
    model = _CountingLinear(torch.randn(5, 4).tolist())
    sb = make_selector("selective-backprop", beta=1.0, prime_epochs=0, chunk=0, seed=2)  # keeps ~half
    x, y, idx = torch.randn(200, 4), torch.randint(0, 5, (200,)), torch.arange(1000, 1200)
    sel = sb.select(model, x[:44], y[:44], idx[:44], batch_size=16)
    assert model.calls == [44] and sel.forwarded == 44 and sel.unused == 0  # the whole draw, one forward
    carried = sb.carried()
    assert 0 < carried.numel() < 16  # kept beyond b wait for the next step (at most b)
    assert not set(carried.tolist()) & set(idx[sel.index].tolist())  # not trained twice
    # next step: the loop puts the carried samples first; they are trained, the fresh draw is forwarded
    c = carried.numel()
    nxt = torch.cat([carried - 1000, torch.arange(44, 44 + sb.pool_size(640, 16, 1))])
    sel2 = sb.select(model, x[nxt], y[nxt], idx[nxt], batch_size=16)
    assert model.calls[1:] == [nxt.numel() - c] and sel2.forwarded == nxt.numel() - c
    assert sel2.index[:c].tolist() == list(range(c))  # the carried ones, oldest first
    assert sel2.index.numel() == 16 and len(set(sel2.index.tolist())) == 16


def test_selective_backprop_keep_rate_and_state() -> None:
    torch.manual_seed(0)
    model = Linear(torch.randn(5, 4).tolist())
    batches = [(torch.randn(40, 4), torch.randint(0, 5, (40,))) for _ in range(40)]
    sb = make_selector("selective-backprop", beta=1.0, prime_epochs=0, seed=0)
    for i, (x, y) in enumerate(batches[:30]):
        sb.select(model, x, y, torch.arange(40) + 40 * i, batch_size=16)
    assert 0.4 < sb.keep_rate < 0.6  # E[U^1] = 1/2
    resumed = make_selector("selective-backprop", beta=1.0, prime_epochs=0, seed=0)
    resumed.load_state_dict(sb.state_dict())
    assert torch.equal(resumed.carried(), sb.carried())  # the queue is part of the state
    for i, (x, y) in enumerate(batches[30:]):
        a = sb.select(model, x, y, torch.arange(40) + 40 * i, batch_size=16)
        b = resumed.select(model, x, y, torch.arange(40) + 40 * i, batch_size=16)
        assert a.index.tolist() == b.index.tolist() and a.forwarded == b.forwarded
        assert torch.equal(resumed.carried(), sb.carried())


def test_loop_trains_the_carried_samples_at_the_next_step(monkeypatch: pytest.MonkeyPatch) -> None:
    from marginscope.engine.selection.baselines import SelectiveBackpropSelector

    steps = []
    original = SelectiveBackpropSelector._select

    def spy(self, model, inputs, labels, indices, *, b, epoch):  # type: ignore[no-untyped-def]
        waiting = self.queue.clone()
        sel = original(self, model, inputs, labels, indices, b=b, epoch=epoch)
        forwarded = None if self.priming(epoch) else sel.forwarded
        steps.append((waiting, indices.clone(), indices[sel.index.cpu()], self.queue.clone(), forwarded))
        return sel

    monkeypatch.setattr(SelectiveBackpropSelector, "_select", spy)
    result = train(TrainConfig(**{**BASE, "steps": 30}, selector="selective-backprop",
                               selector_options={"prime_epochs": 0.1}))
    assert result.samples_backpropagated == 30 * 16  # b every step, priming included
    assert steps[0][1].numel() == 16 and steps[-1][4] is not None  # primed at first, selecting later
    carried_any = False
    for (_, _, _, left, _), (waiting, candidates, trained, _, forwarded) in zip(steps, steps[1:]):
        assert torch.equal(waiting, left)  # what one step carries is the next step's queue
        assert torch.equal(candidates[:left.numel()], left)  # ... put first in its candidates
        assert set(left.tolist()) <= set(trained.tolist())  # ... and trained there
        if forwarded is not None:  # only the fresh draw is forwarded
            assert forwarded == candidates.numel() - left.numel()
        carried_any |= left.numel() > 0
    assert carried_any


def test_infobatch_step_matched_form_prunes_rescales_and_anneals() -> None:
    ib = make_selector("infobatch", prune=0.5, anneal=0.75, matched_epochs=False, seed=0)
    ib.begin(num_train=1000, steps_per_epoch=100, total_steps=400)
    assert ib.pool_size(640, 10, 0) == 10  # nothing seen: every stored loss equal, nothing below the mean
    # half the samples learned (loss 0.1), half not (loss 2.0)
    idx = torch.arange(1000)
    labels = torch.zeros(1000, dtype=torch.long)
    logits = torch.zeros(1000, 3)
    logits[:500, 0] = 5.0  # confident and right: small loss
    ib.observe(idx, logits, labels)
    assert ib.pool_size(640, 30, 100) == 40  # keep rate 1 - 0.5 x 0.5 = 0.75: 30 / 0.75
    x = torch.zeros(1000, 1)
    sel = ib.select(None, x, labels, idx, batch_size=30)
    learned = sel.index < 500
    assert bool((sel.index >= 500).sum() == 500)  # never prunes a sample above the mean
    assert 200 < int(learned.sum()) < 300  # prunes about half of the well-learned ones
    torch.testing.assert_close(sel.weights, torch.where(learned, 2.0, 1.0))  # 1 / (1 - 0.5)
    assert sel.logits is None  # no scoring forward
    # annealing: the last quarter trains on everything drawn, unweighted
    assert ib.pool_size(640, 30, 300) == 30
    late = ib.select(None, x[:30], labels[:30], idx[:30], batch_size=30)
    assert late.index.tolist() == list(range(30)) and late.weights is None


def test_infobatch_plans_an_epoch_as_the_reference_prunes_it() -> None:
    ib = make_selector("infobatch", prune=0.5, seed=0)  # matched epochs, anneal 0.875
    ib.begin(num_train=1000, steps_per_epoch=100, total_steps=800)  # 8 epochs: 0-6 pruned (7 <= 7)
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(5))
    assert torch.equal(ib.plan_pass(order, 0), order)  # nothing seen yet: nothing below the mean
    logits = torch.zeros(1000, 3)
    logits[:400, 0] = 5.0  # 400 well learned (small loss), 600 not
    ib.observe(torch.arange(1000), logits, torch.zeros(1000, dtype=torch.long))
    plan = ib.plan_pass(order, 1)
    assert plan.numel() == 600 + 200  # int(0.5 x 400) of the well learned kept, every other sample
    assert torch.equal(plan, order[torch.isin(order, plan)])  # the pass's random order, pruned
    assert set(range(400, 1000)) <= set(plan.tolist())  # never prunes a sample above the mean
    assert torch.equal(ib.plan_pass(order, 1), plan)  # the current pass again (resume): the same plan
    sel = ib.select(None, torch.zeros(8, 1), torch.zeros(8, dtype=torch.long), plan[:8], batch_size=8)
    assert sel.index.tolist() == list(range(8)) and sel.logits is None  # trains what it drew, no forward
    torch.testing.assert_close(sel.weights, torch.where(plan[:8] < 400, 2.0, 1.0))  # 1 / (1 - 0.5)
    assert [ib.prunes_pass(p) for p in (6, 7)] == [True, False]  # annealing: the last epoch is full
    assert torch.equal(ib.plan_pass(order, 7), order)
    assert ib.select(None, torch.zeros(8, 1), torch.zeros(8, dtype=torch.long), order[:8], batch_size=8).weights is None


def test_infobatch_runs_matched_epochs_with_fewer_iterations(monkeypatch: pytest.MonkeyPatch) -> None:
    from marginscope.engine.selection.infobatch import InfoBatchSelector

    plans, batches = [], []
    plan_pass, select = InfoBatchSelector.plan_pass, InfoBatchSelector._select

    def spy_plan(self, order, pass_index):  # type: ignore[no-untyped-def]
        plan = plan_pass(self, order, pass_index)
        plans.append((pass_index, plan.numel()))
        return plan

    def spy_select(self, model, inputs, labels, indices, *, b, epoch):  # type: ignore[no-untyped-def]
        batches.append(inputs.shape[0])
        return select(self, model, inputs, labels, indices, b=b, epoch=epoch)

    monkeypatch.setattr(InfoBatchSelector, "plan_pass", spy_plan)
    monkeypatch.setattr(InfoBatchSelector, "_select", spy_select)
    rec = Recorder()
    config = TrainConfig(**{**BASE, "steps": None, "log_every": 1, "eval_every": 1000}, epochs=4,
                         regime="1.5:0.1,3.5:0.1", selector="infobatch")
    result = train(config, [rec])
    n, b = 1257, 16  # digits' training split; 79 steps an epoch
    assert [p for p, _ in plans] == [0, 1, 2, 3]
    lengths = dict(plans)
    assert lengths[0] == lengths[3] == n  # nothing seen before epoch 0; epoch 3 anneals (4 > 0.875 x 4)
    assert lengths[1] < n and lengths[2] < n  # pruned epochs
    iterations = [math.ceil(lengths[p] / b) for p in range(4)]
    assert result.steps == sum(iterations) < 4 * 79  # the same epochs in fewer steps
    assert result.samples_backpropagated == sum(lengths.values())  # each kept sample once an epoch
    assert batches[iterations[0] - 1] == n - (iterations[0] - 1) * b  # an epoch ends with a short batch
    # the LR schedule follows the epochs: x0.1 from half-way through epoch 1 (in its own iterations)
    # and from half-way through epoch 3, the last value reached before the last iteration
    lrs = [e.lr for e in rec.of(StepMetrics)]
    start1 = iterations[0]
    drop = round(1.5 * 79)  # the regime's step of epoch 1.5, on the clock of N/b steps an epoch
    first_low = start1 + next(i for i in range(iterations[1]) if 79 + i * 79 / iterations[1] >= drop)
    assert first_low - start1 < 0.6 * iterations[1]  # about half-way through epoch 1's own iterations
    assert lrs[first_low - 1] == pytest.approx(0.05) and lrs[first_low] == pytest.approx(0.005)
    assert lrs[-1] == pytest.approx(0.0005) and lrs[-iterations[3] // 2 + 1] == pytest.approx(0.0005)
    epochs = [e.counters.epoch for e in rec.of(StepMetrics)]
    assert epochs[start1 - 1] == pytest.approx(1.0) and epochs[-1] == pytest.approx(4.0)


def test_infobatch_matched_epochs_resume_equals_uninterrupted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = dict(BASE, steps=None, epochs=3, eval_every=40, selector="infobatch")
    full = train(TrainConfig(out_dir=str(tmp_path / "full"), **cfg))
    calls = {"n": 0}

    def stop() -> bool:  # inside epoch 1, a pruned one
        calls["n"] += 1
        return calls["n"] > 100

    part = train(TrainConfig(out_dir=str(tmp_path / "part"), **cfg), should_stop=stop)
    assert part.status == "cancelled" and part.steps == 100
    resumed = train(TrainConfig(out_dir=str(tmp_path / "part"), resume_from=part.checkpoint, **cfg))
    assert resumed.steps == full.steps < 3 * 79
    a = torch.load(full.checkpoint, weights_only=False)["model"]
    b = torch.load(resumed.checkpoint, weights_only=False)["model"]
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert resumed.samples_backpropagated == full.samples_backpropagated


class _ZeroWeight(Selector):
    """A test selector: the first b candidates, every loss weighted 0 (so no gradient at all)."""

    name = "test-zero-weight"
    help = "test only"
    uses_candidates = False
    forwards_candidates = False

    def _select(self, model, inputs, labels, indices, *, b, epoch):  # type: ignore[no-untyped-def]
        index = torch.arange(b, device=inputs.device)
        return Selection(index=index, scores=None, logits=None, threshold=None,
                         weights=torch.zeros(b, device=inputs.device))


BASE = dict(dataset="digits", batch_size=16, candidates=64, lr=0.05, eval_every=10, hist_every=0,
            log_every=5, steps=20, device="cpu", threads=1)


def test_loop_applies_per_sample_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = importlib.import_module("marginscope.engine.loop")  # the training loop's module
    seen = {}
    original = loop._setup

    def keep_model(*args, **kwargs):  # type: ignore[no-untyped-def]  # a spy: the real setup, remembered
        run = original(*args, **kwargs)
        seen["bias0"], seen["run"] = run.model.head.bias.detach().clone(), run
        return run

    monkeypatch.setattr(loop, "_setup", keep_model)
    # registered for this test only (the registry is global: other tests list every selector)
    monkeypatch.setitem(selectors_module._SELECTORS, _ZeroWeight.name, _ZeroWeight)
    train(TrainConfig(**{**BASE, "steps": 5}, selector="test-zero-weight"))
    # zero weights: no gradient; biases carry no weight decay, so they stay exactly as initialised
    assert torch.equal(seen["run"].model.head.bias.detach(), seen["bias0"])


def test_sampler_rewind_puts_the_tail_back() -> None:
    from marginscope.engine.sampler import PassSampler

    a, b = PassSampler(100, seed=1), PassSampler(100, seed=1)
    first = a.draw(30)
    a.rewind(10)
    assert torch.equal(a.draw(10), first[20:])  # the unreached tail is drawn next
    assert torch.equal(torch.cat([b.draw(30), b.draw(10)]), torch.cat([first, a.draw(10)]))
    a.draw(65)  # crosses into the next pass at cursor 5: only those 5 can be put back
    a.rewind(50)
    assert a.cursor == 0 and a.pass_index == 1


def test_loop_counts_the_forwards_selectors_really_run() -> None:
    sb = train(TrainConfig(**BASE, selector="selective-backprop", selector_options={"prime_epochs": 0}))
    assert sb.samples_backpropagated == 20 * 16
    # streamed forwards (B does not apply): more than b a step, about b / keep rate
    scoring = sb.samples_forwarded - sb.samples_backpropagated
    assert 20 * 16 < scoring < 20 * 16 * 8
    ib = train(TrainConfig(**BASE, selector="infobatch"))
    assert ib.samples_forwarded == ib.samples_backpropagated  # no scoring forward at all
    assert ib.cpu_time > 0 and ib.evaluations[-1]["cpu_time"] == pytest.approx(ib.cpu_time)
    assert set(ib.phase_times) >= {"score_wall_time", "refresh_cpu_time", "cpu_time"}


def test_weighted_objective_is_the_weighted_mean() -> None:
    losses = F.cross_entropy(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), reduction="none")
    w = torch.tensor([2.0, 1.0, 2.0, 1.0])
    assert float((losses * w).mean()) == pytest.approx(float((2 * losses[0] + losses[1] + 2 * losses[2]
                                                               + losses[3]) / 4))
