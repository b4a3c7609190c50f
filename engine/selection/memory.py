"""`mms-memory`: MMS selection from a per-sample score memory instead of a fresh candidate forward.

Why: fresh MMS scores B candidates with a forward pass every step, so one step costs about
(1 + B/3b)x a uniform step (the cost model in docs/method.md): on 2 CPU cores the step savings of MMS are
eaten by the scoring cost. This mode keeps one MMS value per training sample and reuses it:

- **unseen last** (default): the memory starts at +inf, so the ranking uses the scores known so far
  and never-scored samples fill the rest of the batch; `unseen=first` (-inf) explores every sample
  once before trusting any score, which spends the whole first epoch on what is in effect uniform
  sampling (measured: 0.6-0.8x uniform's steps to its best instead of 0.55x, lower final accuracy);
- **free updates**: after each training step the loop hands the training forward's logits to
  `observe()`, and the memory takes their MMS (train-mode logits, the head's weight just after the
  update: a slightly stale but free score);
- **rolling refresh**: `refresh()` re-scores the training split in eval mode, in blocks of `block`
  samples, at a pace that covers the whole split once every `refresh_epochs` epochs; the loop counts
  these forwards in `samples_forwarded` and their time in `wall_time` (they are real work);
- **selection**: the loop still draws a random pool of B candidates (no forward); the batch is the
  `1 - mix` share with the lowest stored scores plus a `mix` share drawn uniformly from the rest of
  the pool (without it, stale scores keep picking the same hard samples).

The faithful `mms` selector (fresh scores every step) stays the default; this is a separate, named
mode (its measured trade-off: docs/benchmarks.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from marginscope.engine.selection.scores import minimal_margin_scores
from marginscope.engine.selection.selectors import Selection, Selector, head_weight, register_selector

__all__ = ["ScoreMemorySelector"]


@register_selector
class ScoreMemorySelector(Selector, declared="mms-memory"):
    forwards_candidates = False  # the pool is ranked from memory, not forwarded
    threshold_is_mms = True  # the threshold is the largest stored MMS admitted by rank
    mix: float
    refresh_epochs: float
    block: int
    priority: float
    low_precision: bool
    unseen: str

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.memory = torch.empty(0)  # float32 [N] MMS per dataset index; +-inf = never scored
        self.cursor = 0  # next dataset index the rolling refresh re-scores
        self.owed = 0.0  # samples due for refresh but not yet re-scored
        self._weight: Tensor | None = None  # the head's weight, remembered for observe()

    def _ensure(self, n: int) -> None:
        """Grow the memory to at least n entries (new ones unseen)."""
        if self.memory.numel() < n:
            grown = torch.full((n,), float("-inf") if self.unseen == "first" else float("inf"))
            grown[: self.memory.numel()] = self.memory
            self.memory = grown

    def _select(
        self, model: nn.Module, inputs: Tensor, labels: Tensor, indices: Tensor, *, b: int, epoch: float
    ) -> Selection:
        if indices is None:
            raise ValueError("mms-memory needs the candidates' dataset indices")
        self._weight = head_weight(model)
        idx = indices.detach().long().cpu()
        self._ensure(int(idx.max()) + 1)
        scores = self.memory[idx]  # (B,)
        n_random = min(round(self.mix * b), b)
        n_ranked = b - n_random
        # A random key breaks ties (all unseen samples share one value) without favouring pool order.
        tiebreak = self._randperm(idx.numel(), torch.device("cpu"))
        order = torch.argsort(scores[tiebreak], stable=True)
        ranked = tiebreak[order[:n_ranked]]
        rest = tiebreak[order[n_ranked:]]
        extra = rest[self._randperm(rest.numel(), torch.device("cpu"))[:n_random]]
        index = torch.cat([ranked, extra])
        threshold = float(scores[ranked].max()) if n_ranked else None
        threshold = threshold if threshold is not None and math.isfinite(threshold) else None
        return Selection(index=index.to(inputs.device), scores=scores, logits=None, threshold=threshold)

    def observe(self, indices: Tensor, logits: Tensor, labels: Tensor) -> None:
        """Store the MMS of the samples just trained on, from the training forward's logits."""
        if self._weight is None or indices is None:
            return
        idx = indices.detach().long().cpu()
        self._ensure(int(idx.max()) + 1)
        self.memory[idx] = minimal_margin_scores(logits, self._weight).cpu()

    def refresh(self, model: nn.Module, fetch: Callable[[Tensor], Tensor], *, num_train: int,
                steps_per_epoch: int) -> int:
        """Re-score the whole blocks that have come due; returns the samples forwarded."""
        self._ensure(num_train)
        self.owed += num_train / (self.refresh_epochs * steps_per_epoch)
        done = 0
        while self.owed >= min(self.block, num_train):
            size = min(self.block, num_train)
            n_low = min(round(self.priority * size), size - 1)
            idx = (self.cursor + torch.arange(size - n_low)) % num_train
            if n_low:  # the lowest stored scores outside the cyclic part (never-scored ones excluded)
                scores = self.memory[:num_train].clone()
                scores[idx] = float("inf")
                scores[~torch.isfinite(scores)] = float("inf")
                low = scores.topk(n_low, largest=False).indices
                idx = torch.cat([idx, low[torch.isfinite(scores[low])]])
            x = fetch(idx)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.low_precision):
                logits = self._logits(model, x)
            self.memory[idx] = minimal_margin_scores(logits, head_weight(model)).cpu()
            self.cursor = int((self.cursor + size - n_low) % num_train)
            self.owed -= size
            done += idx.numel()
        return done

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "memory": self.memory.clone(), "cursor": self.cursor,
                "owed": self.owed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.memory = state["memory"].detach().float().cpu().clone()
        self.cursor, self.owed = int(state["cursor"]), float(state["owed"])
