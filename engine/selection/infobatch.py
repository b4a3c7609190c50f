"""`infobatch`: InfoBatch (Qin et al., "InfoBatch: Lossless training speed up by unbiased dynamic
data pruning", ICLR 2024) in the selector API.

Why it is here: it is the strongest published "lossless" data saver, and it needs no scoring
forward at all, so it is the baseline a cheap MMS mode has to beat. What it does, as the paper and
its public code describe it:

- **a loss memory**: one stored loss per training sample, written from the training forward of
  every step (`observe`; free), starting at a constant so that nothing is pruned before it is seen;
- **soft pruning**: a sample whose stored loss is below the mean of the memory ("well learned") is
  skipped with probability `prune` when it is drawn; the threshold is recomputed once per epoch
  (N/b steps);
- **rescaling**: a well-learned sample that is kept gets the loss weight 1 / (1 - prune), so the
  expected gradient over the data is that of plain training (`Selection.weights`);
- **annealing**: in the last (1 - `anneal`) share of the steps nothing is pruned and every weight is
  1 (the paper's delta = 0.875).

In this loop a step draws about b / (keep rate) samples (`pool_size`, the keep rate being known
from the memory) and trains on every one that is not pruned, so the batch is b on average
(binomially spread), every drawn sample is either pruned or trained, and no sample is forwarded for
scoring. Runs here are counted in steps (N/b per epoch), so InfoBatch's saving shows as fewer steps
(and seconds) to an accuracy, not as a shorter schedule.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from marginscope.engine.selection.scores import cross_entropy_scores
from marginscope.engine.selection.selectors import Selection, Selector, register_selector

__all__ = ["InfoBatchSelector"]

UNSEEN_LOSS = 3.0  # the public code's starting score: above any learned loss, below nothing odd


@register_selector
class InfoBatchSelector(Selector, declared="infobatch"):
    forwards_candidates = False  # pruning reads the memory, not the model
    prune: float
    anneal: float

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.memory = torch.empty(0)  # float32 [N] last training loss per dataset index
        self.threshold = math.inf  # mean of the memory at the last epoch start; nothing is below +inf
        self.threshold_epoch = -1  # the epoch (in N/b steps) the threshold was taken at
        self.keep_rate = 1.0  # expected share of drawn samples that are trained
        self.step = 0

    def begin(self, *, num_train: int, steps_per_epoch: int, total_steps: int) -> None:
        super().begin(num_train=num_train, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
        if self.memory.numel() != num_train:
            self.memory = torch.full((num_train,), UNSEEN_LOSS)

    def annealing(self, step: int) -> bool:
        return bool(self.total_steps) and step >= self.anneal * self.total_steps

    def pool_size(self, candidates: int, batch_size: int, step: int) -> int:
        self.step = step
        if self.annealing(step):
            return batch_size
        epoch = step // max(self.steps_per_epoch, 1)
        if epoch != self.threshold_epoch and self.memory.numel():
            self.threshold = float(self.memory.mean())
            below = float((self.memory < self.threshold).float().mean())
            self.keep_rate = 1.0 - self.prune * below
            self.threshold_epoch = epoch
        return max(batch_size, round(batch_size / self.keep_rate))

    def _select(
        self, model: nn.Module, inputs: Tensor, labels: Tensor, indices: Tensor, *, b: int, epoch: float
    ) -> Selection:
        device = inputs.device
        n = inputs.shape[0]
        if indices is None:
            raise ValueError("infobatch needs the candidates' dataset indices")
        if self.annealing(self.step) or not self.memory.numel():
            return Selection(index=torch.arange(n, device=device), scores=None, logits=None, threshold=None)
        stored = self.memory[indices.detach().long().cpu()]
        well_learned = stored < self.threshold
        pruned = well_learned & (self._rand(n, torch.device("cpu")) < self.prune)
        if bool(pruned.all()):  # a tiny draw may lose everything; the step still trains on one
            pruned[0] = False
        index = (~pruned).nonzero().squeeze(1)
        weights = torch.where(well_learned[index], 1.0 / (1.0 - self.prune), 1.0)
        return Selection(index=index.to(device), scores=stored, logits=None,
                         threshold=None if math.isinf(self.threshold) else self.threshold,
                         weights=weights.to(device))

    def observe(self, indices: Tensor, logits: Tensor, labels: Tensor) -> None:
        """Store the training forward's per-sample loss (unweighted) of the samples just trained."""
        if indices is None or not self.memory.numel():
            return
        self.memory[indices.detach().long().cpu()] = cross_entropy_scores(logits, labels).cpu()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "memory": self.memory.clone(), "threshold": self.threshold,
                "threshold_epoch": self.threshold_epoch, "keep_rate": self.keep_rate}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.memory = state["memory"].detach().float().cpu().clone()
        self.threshold, self.threshold_epoch = float(state["threshold"]), int(state["threshold_epoch"])
        self.keep_rate = float(state["keep_rate"])
