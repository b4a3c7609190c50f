"""The selectors MMS is compared with: hard negatives (largest loss), largest softmax entropy, and
Selective-Backprop (Jiang et al. 2019, "Accelerating deep learning by focusing on the biggest
losers"): keep with probability percentile(loss)^beta over a window of recent losses.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from engine.selection.scores import cross_entropy_scores, entropy_scores
from engine.selection.selectors import (
    Option, Selection, Selector, _at_least, _positive, ranked, register_selector,
)

__all__ = ["EntropySelector", "HardNegativeSelector", "SelectiveBackpropSelector"]


@register_selector
class HardNegativeSelector(Selector):
    name = "hard-negative"
    help = ("Hard negative mining: train on the b candidates with the largest cross-entropy loss "
            "(uses the labels).")
    options: ClassVar[dict[str, Option]] = {
        "ramp_epochs": Option(
            0.0, "Ramp the hard share of the batch from 10% to 100% over this many epochs, filling "
            "the rest class-balanced at random (0 = all hard from the start).", _at_least(0.0)),
    }

    ramp_epochs: float

    def hard_share(self, epoch: float) -> float:
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
        hard, threshold = ranked(scores, n_hard, largest=True)
        n_fill = b - n_hard
        if n_fill:
            hard = torch.cat([hard, self._balanced_fill(labels, hard, n_fill)])
        return Selection(index=hard.to(device), scores=scores, logits=logits, threshold=threshold)

    def _balanced_fill(self, labels: Tensor, taken: Tensor, n: int) -> Tensor:
        """n random candidates outside `taken`, as class-balanced as the pool allows.

        Each remaining candidate gets a random key; its rank within its class (by key) decides the
        round in which it is picked, so classes are taken round-robin in a random order.
        """
        device = labels.device
        rest = torch.ones(labels.shape[0], dtype=torch.bool, device=device)
        rest[taken] = False
        pool = rest.nonzero().squeeze(1)  # (P,)
        key = self._rand(pool.numel(), device)
        cls = labels[pool]
        order = torch.argsort(key)  # random order
        order = order[torch.argsort(cls[order], stable=True)]  # grouped by class, random within
        cls_sorted = cls[order]
        first = torch.searchsorted(cls_sorted, cls_sorted, right=False)  # start of each class group
        rank_in_class = torch.arange(pool.numel(), device=device) - first
        # Round-robin: all ranks 0 (in random class order), then ranks 1, ...
        pick = order[torch.argsort(rank_in_class.double() + key[order] * 0.5, stable=True)[:n]]
        return pool[pick]


@register_selector
class EntropySelector(Selector):
    name = "entropy"
    help = "Train on the b candidates whose softmax has the largest entropy (most uncertain)."

    def _select(
        self, model: nn.Module, inputs: Tensor, labels: Tensor, indices: Tensor, *, b: int, epoch: float
    ) -> Selection:
        logits = self._logits(model, inputs)
        scores = entropy_scores(logits)
        index, threshold = ranked(scores, b, largest=True)
        return Selection(index=index.to(inputs.device), scores=scores, logits=logits, threshold=threshold)


@register_selector
class SelectiveBackpropSelector(Selector):
    name = "selective-backprop"
    help = ("Selective-Backprop (Jiang et al. 2019): keep each candidate with probability "
            "(percentile of its loss among recent losses)^beta; a fixed b prefers high losses.")
    options: ClassVar[dict[str, Option]] = {
        "window": Option(1024, "Number of recent candidate losses the percentile is taken over.",
                         _at_least(1)),
        "beta": Option(1.0, "Selectivity: keep probability = percentile^beta (larger = pickier).",
                       _positive),
    }

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
                f"selective-backprop window {history.numel()} in the state, {self.history.numel()} configured"
            )
        self.history = history.clone()
        self.filled, self.pos = int(state["filled"]), int(state["pos"])
