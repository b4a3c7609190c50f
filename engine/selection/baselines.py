"""The selectors MMS is compared with, each by default as its reference runs it: hard negatives
(the mms-select reference code's ramp and class balance), largest softmax entropy, pure top-loss
(the b largest losses from step 0), and Selective-Backprop (Jiang et al. 2019, "Accelerating deep
learning by focusing on the biggest losers": a first epoch on everything, then each forwarded sample
kept with probability percentile(loss)^beta over a window of recent losses, the kept ones queued
and back-propagated b at a time).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from marginscope.engine.selection.scores import cross_entropy_scores, entropy_scores
from marginscope.engine.selection.selectors import Selection, Selector, ranked, register_selector

__all__ = ["EntropySelector", "HardNegativeSelector", "SelectiveBackpropSelector", "TopLossSelector"]


@register_selector
class HardNegativeSelector(Selector, declared="hard-negative"):

    ramp_epochs: float
    ramp_rate: float
    balanced: bool

    def hard_share(self, epoch: float) -> float:
        if self.ramp_rate > 0:
            return min(1.0, (math.floor(max(0.0, epoch)) + 1) * self.ramp_rate)
        if self.ramp_epochs <= 0:
            return 1.0
        return 0.1 + 0.9 * min(1.0, max(0.0, epoch) / self.ramp_epochs)

    def _select(
        self, model: nn.Module, inputs: Tensor, labels: Tensor, indices: Tensor, *, b: int, epoch: float
    ) -> Selection:
        device = inputs.device
        logits = self._logits(model, inputs)
        labels = labels.to(logits.device)
        scores = cross_entropy_scores(logits, labels)
        n_hard = max(1, min(b, round(self.hard_share(epoch) * b)))
        if self.balanced:
            hard = self._balanced_take(labels, scores, labels.new_empty(0), n_hard, by_score=True)
            threshold = float(scores[hard].min())
        else:
            hard, threshold = ranked(scores, n_hard, largest=True)
        n_fill = b - n_hard
        if n_fill:
            hard = torch.cat([hard, self._balanced_fill(labels, hard, n_fill)])
        return Selection(index=hard.to(device), scores=scores, logits=logits, threshold=threshold)

    def _balanced_fill(self, labels: Tensor, taken: Tensor, n: int) -> Tensor:
        """n random candidates outside `taken`, as class-balanced as the pool allows."""
        return self._balanced_take(labels, None, taken, n, by_score=False)

    def _balanced_take(self, labels: Tensor, scores: Tensor | None, taken: Tensor, n: int, *,
                       by_score: bool) -> Tensor:
        """n candidates outside `taken`, classes round-robin in a random order, each class giving
        its largest remaining score (`by_score`) or a random member.

        A candidate's rank within its class decides the round in which it is picked; within a
        round, a random key per class orders the classes.
        """
        device = labels.device
        rest = torch.ones(labels.shape[0], dtype=torch.bool, device=device)
        rest[taken] = False
        pool = rest.nonzero().squeeze(1)  # (P,)
        cls = labels[pool]
        if by_score:
            order = torch.argsort(scores[pool], descending=True, stable=True)  # hardest first
        else:
            order = torch.argsort(self._rand(pool.numel(), device))  # random order
        order = order[torch.argsort(cls[order], stable=True)]  # grouped by class, kept order within
        cls_sorted = cls[order]
        first = torch.searchsorted(cls_sorted, cls_sorted, right=False)  # start of each class group
        rank_in_class = torch.arange(pool.numel(), device=device) - first
        class_key = self._rand(int(labels.max()) + 1 if labels.numel() else 1, device)
        # Round-robin: all ranks 0 (classes in random order), then ranks 1, ...
        key = rank_in_class.double() + class_key[cls_sorted].double() * 0.5
        pick = order[torch.argsort(key, stable=True)[:n]]
        return pool[pick]


@register_selector
class EntropySelector(Selector, declared="entropy"):

    def _select(
        self, model: nn.Module, inputs: Tensor, labels: Tensor, indices: Tensor, *, b: int, epoch: float
    ) -> Selection:
        logits = self._logits(model, inputs)
        scores = entropy_scores(logits)
        index, threshold = ranked(scores, b, largest=True)
        return Selection(index=index.to(inputs.device), scores=scores, logits=logits, threshold=threshold)


@register_selector
class TopLossSelector(Selector, declared="top-loss"):

    window: int
    beta: float

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.history = torch.zeros(int(self.window), dtype=torch.float32)
        self.filled = 0  # valid entries in history
        self.pos = 0  # next write position (ring buffer)

    def _push(self, losses: Tensor) -> None:
        losses = losses.detach().float().cpu()[-self.history.numel():]
        n, size = losses.numel(), self.history.numel()
        slots = (self.pos + torch.arange(n)) % size
        self.history[slots] = losses
        self.pos = (self.pos + n) % size
        self.filled = min(size, self.filled + n)

    def keep_probability(self, losses: Tensor) -> Tensor:
        """percentile^beta of each loss among the window (which already holds this batch)."""
        window = self.history[: self.filled].sort().values.to(losses.device)
        pct = torch.searchsorted(window, losses.contiguous(), right=True).float() / max(self.filled, 1)
        return pct.pow(self.beta)

    def _select(
        self, model: nn.Module, inputs: Tensor, labels: Tensor, indices: Tensor, *, b: int, epoch: float
    ) -> Selection:
        logits = self._logits(model, inputs)
        losses = cross_entropy_scores(logits, labels)
        if self.beta <= 0:  # pure top-loss: the b largest losses
            index, threshold = ranked(losses, b, largest=True)
            return Selection(index=index.to(inputs.device), scores=losses, logits=logits, threshold=threshold)
        self._push(losses)
        prob = self.keep_probability(losses)
        kept = self._rand(losses.numel(), losses.device) < prob
        # Fixed b: kept candidates first, each group by descending loss.
        order = torch.argsort(losses, descending=True, stable=True)
        order = order[torch.argsort((~kept[order]).to(torch.uint8), stable=True)]
        index = order[:b]
        threshold = float(losses[index].min()) if b else None
        return Selection(index=index.to(inputs.device), scores=losses, logits=logits, threshold=threshold)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "history": self.history.clone(), "filled": self.filled,
                "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        history = state["history"].detach().float().cpu()
        if history.numel() != self.history.numel():
            raise ValueError(
                f"top-loss window {history.numel()} in the state, {self.history.numel()} configured"
            )
        self.history = history.clone()
        self.filled, self.pos = int(state["filled"]), int(state["pos"])


class _LossHistory:
    """A ring buffer of recent losses and the percentile of new ones among them."""

    def __init__(self, size: int) -> None:
        self.values = torch.zeros(size, dtype=torch.float32)
        self.filled = 0  # valid entries
        self.pos = 0  # next write position

    def push(self, losses: Tensor) -> None:
        losses = losses.detach().float().cpu()[-self.values.numel():]
        n, size = losses.numel(), self.values.numel()
        self.values[(self.pos + torch.arange(n)) % size] = losses
        self.pos, self.filled = (self.pos + n) % size, min(size, self.filled + n)

    def percentile(self, losses: Tensor) -> Tensor:
        window = self.values[: self.filled].sort().values.to(losses.device)
        return torch.searchsorted(window, losses.contiguous(), right=True).float() / max(self.filled, 1)


@register_selector
class SelectiveBackpropSelector(Selector, declared="selective-backprop"):
    """Selective-Backprop as its reference code runs it (Jiang et al. 2019, angelajiang/SelectiveBackprop).

    - **priming**: for the first `prime_epochs` epochs every drawn sample is back-propagated, with no
      scoring forward and nothing written to the loss window (the reference trains its first epoch
      on everything before it starts selecting);
    - **selecting**: the samples the loop draws are forwarded together (one scoring pass over the draw;
      the common `chunk` option only splits it for memory), each kept with probability
      percentile(loss among the last `window` losses)^beta; kept samples join a queue, the oldest first;
    - **carry-over**: a step trains on the first b of the queue, and kept samples beyond b wait in the
      queue for the next step (`carried`), as the reference's back-prop queue does, so no kept sample
      is forwarded for nothing. The queue holds at most b (a draw that keeps far more than asked drops
      the newest); it is part of the state, so a resumed run trains the same batches.

    The draw is sized from the running keep rate for what the queue lacks, with `slack` to spare, so a
    step rarely runs short; if it does, the batch is completed with the largest losses not kept.
    `stream_chunk` > 0 gives the earlier streaming variant: forward in chunks of that size and stop
    once b are kept, the samples not reached going back into the data order.
    """

    window: int
    beta: float
    prime_epochs: float
    stream_chunk: int
    slack: float

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.history = _LossHistory(int(self.window))
        self.keep_rate = 1.0 / (1.0 + self.beta)  # E[U^beta] for a uniform percentile U
        self.queue = torch.empty(0, dtype=torch.long)  # dataset indices kept, not yet trained (oldest first)

    def priming(self, epoch: float) -> bool:
        return epoch < self.prime_epochs

    def carried(self) -> Tensor:
        return self.queue

    def pool_size(self, candidates: int, batch_size: int, step: int) -> int:
        if self.priming(step / max(self.steps_per_epoch, 1)):
            return batch_size
        need = max(0, batch_size - self.queue.numel())
        return max(1, math.ceil(need * (1.0 + self.slack) / max(self.keep_rate, 0.02)))

    def _select(
        self, model: nn.Module, inputs: Tensor, labels: Tensor, indices: Tensor, *, b: int, epoch: float
    ) -> Selection:
        device, n, waiting = inputs.device, inputs.shape[0], self.queue.numel()
        if self.priming(epoch):  # no queue yet: the candidates are the b drawn samples
            return Selection(index=torch.arange(b, device=device), scores=None, logits=None, threshold=None,
                             forwarded=0)
        losses = torch.full((n,), float("nan"), device=device)
        queue = [torch.arange(waiting, device=device)]  # the carried samples come first (the loop put them there)
        n_queued, reached = waiting, waiting
        step_size = int(self.stream_chunk) or n
        while reached < n and n_queued < b:
            end = min(n, reached + step_size)
            logits = self._logits(model, inputs[reached:end])
            part = cross_entropy_scores(logits, labels[reached:end].to(logits.device))
            self.history.push(part)
            keep = self._rand(end - reached, part.device) < self.history.percentile(part).pow(self.beta)
            losses[reached:end] = part.to(device)
            queue.append(keep.nonzero().squeeze(1).to(device) + reached)
            n_queued += int(keep.sum())
            reached = end
        forwarded = reached - waiting
        if forwarded:  # the running keep rate sizes the next draw (an exponential average over steps)
            self.keep_rate = 0.9 * self.keep_rate + 0.1 * ((n_queued - waiting) / forwarded)
        order = torch.cat(queue)
        index, extra = order[:b], order[b:]
        if index.numel() < b:  # the draw ran short: complete the batch with the largest losses not kept
            rest = torch.nan_to_num(losses, nan=-math.inf)
            rest[index] = -math.inf
            index = torch.cat([index, rest.topk(min(b - index.numel(), forwarded)).indices])
        if indices is not None:
            self.queue = indices[extra.cpu()][: b].detach().long().cpu().clone()
        return Selection(index=index, scores=losses, logits=None, threshold=None, forwarded=forwarded,
                         unused=n - reached)

    def state_dict(self) -> dict[str, Any]:
        h = self.history
        return {**super().state_dict(), "history": h.values.clone(), "filled": h.filled, "pos": h.pos,
                "keep_rate": self.keep_rate, "queue": self.queue.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        values = state["history"].detach().float().cpu()
        if values.numel() != self.history.values.numel():
            raise ValueError(f"selective-backprop window {values.numel()} in the state, "
                             f"{self.history.values.numel()} configured")
        self.history.values = values.clone()
        self.history.filled, self.history.pos = int(state["filled"]), int(state["pos"])
        self.keep_rate = float(state["keep_rate"])
        self.queue = state.get("queue", torch.empty(0, dtype=torch.long)).detach().long().cpu().clone()
