"""The selectors MMS is compared with: hard negatives (largest loss, optionally the reference
code's ramp and class balance), largest softmax entropy, top-loss, and Selective-Backprop (Jiang et
al. 2019, "Accelerating deep learning by focusing on the biggest losers"): stream samples, keep each
with probability percentile(loss)^beta over a window of recent losses, back-propagate once b are
kept.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from marginscope.engine.selection.scores import cross_entropy_scores, entropy_scores, score_logits
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
    window: int
    beta: float
    stream_chunk: int
    slack: float

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.history = _LossHistory(int(self.window))
        self.keep_rate = 1.0 / (1.0 + self.beta)  # E[U^beta] for a uniform percentile U

    def pool_size(self, candidates: int, batch_size: int, step: int) -> int:
        return math.ceil(batch_size * (1.0 + self.slack) / max(self.keep_rate, 0.02))

    def _select(
        self, model: nn.Module, inputs: Tensor, labels: Tensor, indices: Tensor, *, b: int, epoch: float
    ) -> Selection:
        device, n = inputs.device, inputs.shape[0]
        losses = torch.full((n,), float("nan"), device=device)
        kept: list[Tensor] = []
        n_kept = forwarded = 0
        while forwarded < n and n_kept < b:
            end = min(n, forwarded + int(self.stream_chunk))
            logits = score_logits(model, inputs[forwarded:end], chunk=0)
            chunk_losses = cross_entropy_scores(logits, labels[forwarded:end])
            self.history.push(chunk_losses)
            keep = self._rand(end - forwarded, chunk_losses.device) < self.history.percentile(
                chunk_losses).pow(self.beta)
            losses[forwarded:end] = chunk_losses.to(device)
            kept.append(keep.nonzero().squeeze(1).to(device) + forwarded)
            n_kept += int(keep.sum())
            forwarded = end
        # the running keep rate sizes the next draw (an exponential average over steps)
        self.keep_rate = 0.9 * self.keep_rate + 0.1 * (n_kept / forwarded)
        index = torch.cat(kept)[:b]
        if n_kept < b:  # the draw ran out first (losses falling faster than the window follows):
            # the batch is completed with the largest losses not kept, so a step still trains on b
            rest = torch.nan_to_num(losses, nan=-math.inf)
            rest[index] = -math.inf
            fill = rest.topk(min(b - n_kept, forwarded - n_kept)).indices
            index = torch.cat([index, fill])
        return Selection(index=index, scores=losses, logits=None, threshold=None, forwarded=forwarded)

    def state_dict(self) -> dict[str, Any]:
        h = self.history
        return {**super().state_dict(), "history": h.values.clone(), "filled": h.filled, "pos": h.pos,
                "keep_rate": self.keep_rate}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        values = state["history"].detach().float().cpu()
        if values.numel() != self.history.values.numel():
            raise ValueError(f"selective-backprop window {values.numel()} in the state, "
                             f"{self.history.values.numel()} configured")
        self.history.values = values.clone()
        self.history.filled, self.history.pos = int(state["filled"]), int(state["pos"])
        self.keep_rate = float(state["keep_rate"])
