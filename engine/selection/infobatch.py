"""`infobatch`: InfoBatch (Qin et al., "InfoBatch: Lossless training speed up by unbiased dynamic
data pruning", ICLR 2024) in the selector API.

Why it is here: it is the strongest published "lossless" data saver, and it needs no scoring
forward at all, so it is the baseline a cheap MMS mode has to beat. What it does, as the paper and
its public code (NUS-HPC-AI-Lab/InfoBatch) run it:

- **a loss memory**: one stored loss per training sample, written from the training forward of
  every step (`observe`; free), starting at a constant so that nothing is pruned before it is seen;
- **soft pruning, once per epoch**: at the start of an epoch, the samples whose stored loss is below
  the mean of the memory ("well learned") lose a random share `prune` of their number for that
  epoch; the epoch is the rest, in a random order, b at a time, so a pruned epoch takes
  ceil(kept / b) iterations, not N/b;
- **rescaling**: a well-learned sample that is kept gets the loss weight 1 / (1 - prune), so the
  expected gradient over the data is that of plain training (`Selection.weights`);
- **annealing**: an epoch that ends after the first `anneal` share of the run's epochs (the paper's
  delta = 0.875) is not pruned and every weight is 1.

**Matched epochs** (the default, the reference's way): the run is its epochs, so InfoBatch's saving
shows as fewer iterations; the loop counts its schedule in passes (`plans_passes`, `plan_pass`;
engine/loop.py's `_Run.clock`), so the LR schedule spans InfoBatch's own iterations and reaches its
last value at its last one, as the reference rebuilds its schedule from each epoch's length.

`matched_epochs=false` keeps this project's earlier, step-matched form: the run is N/b steps an
epoch whatever is pruned; each step draws about b / (keep rate) samples and prunes each drawn
well-learned one with probability `prune` (the batch is b on average), and nothing is pruned in the
last (1 - anneal) share of the steps. It runs under torchrun, which matched epochs do not (the
memory is each rank's own).
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
    matched_epochs: bool

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.plans_passes = bool(self.matched_epochs)
        self.memory = torch.empty(0)  # float32 [N] last training loss per dataset index
        self.threshold = math.inf  # mean of the memory when last pruned; nothing is below +inf
        self.threshold_epoch = -1  # the epoch (pass, or N/b steps) the threshold was taken at
        self.keep_rate = 1.0  # expected share of drawn samples that are trained (step-matched form)
        self.step = 0
        # matched epochs: the current pass as planned, and its kept well-learned samples (weighted)
        self.plan = torch.empty(0, dtype=torch.long)
        self.upweighted = torch.empty(0, dtype=torch.bool)

    def begin(self, *, num_train: int, steps_per_epoch: int, total_steps: int) -> None:
        super().begin(num_train=num_train, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
        if self.memory.numel() != num_train:
            self.memory = torch.full((num_train,), UNSEEN_LOSS)
            self.upweighted = torch.zeros(num_train, dtype=torch.bool)

    # --- matched epochs (the reference's way)

    def prunes_pass(self, pass_index: int) -> bool:
        """Whether pass `pass_index` is pruned: it ends within the first `anneal` share of the run's
        epochs (the reference's rule; with 200 epochs, epochs 0-174 are pruned, 175-199 are not)."""
        epochs = self.total_steps / max(self.steps_per_epoch, 1)
        return pass_index + 1 <= self.anneal * epochs

    def plan_pass(self, order: Tensor, pass_index: int) -> Tensor:
        if pass_index == self.threshold_epoch:  # the current pass again (a resume): as planned
            return self.plan
        self.threshold_epoch = pass_index
        self.upweighted = torch.zeros(self.memory.numel(), dtype=torch.bool)
        self.threshold = math.inf
        dropped = torch.zeros(self.memory.numel(), dtype=torch.bool)
        if self.prunes_pass(pass_index) and self.memory.numel():
            self.threshold = float(self.memory.mean())
            well_learned = (self.memory < self.threshold).nonzero().squeeze(1)
            n_kept = int((1.0 - self.prune) * well_learned.numel())  # the reference rounds down
            shuffled = well_learned[torch.randperm(well_learned.numel(), generator=self.generator)]
            self.upweighted[shuffled[:n_kept]] = True
            dropped[shuffled[n_kept:]] = True
        self.plan = order[~dropped[order]]
        return self.plan

    # --- the step: which drawn samples train, with what weight

    def annealing(self, step: int) -> bool:
        return bool(self.total_steps) and step >= self.anneal * self.total_steps

    def pool_size(self, candidates: int, batch_size: int, step: int) -> int:
        self.step = step
        if self.plans_passes or self.annealing(step):
            return batch_size  # matched epochs: the pass is already pruned
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
        everything = torch.arange(n, device=device)
        if not self.memory.numel():
            return Selection(index=everything, scores=None, logits=None, threshold=None)
        idx = indices.detach().long().cpu()
        stored = self.memory[idx]
        threshold = None if math.isinf(self.threshold) else self.threshold
        if self.plans_passes:  # every drawn sample was kept by the pass's plan
            if threshold is None:
                return Selection(index=everything, scores=stored, logits=None, threshold=None)
            weights = torch.where(self.upweighted[idx], 1.0 / (1.0 - self.prune), 1.0)
            return Selection(index=everything, scores=stored, logits=None, threshold=threshold,
                             weights=weights.to(device))
        if self.annealing(self.step):
            return Selection(index=everything, scores=None, logits=None, threshold=None)
        well_learned = stored < self.threshold
        pruned = well_learned & (self._rand(n, torch.device("cpu")) < self.prune)
        if bool(pruned.all()):  # a tiny draw may lose everything; the step still trains on one
            pruned[0] = False
        index = (~pruned).nonzero().squeeze(1)
        weights = torch.where(well_learned[index], 1.0 / (1.0 - self.prune), 1.0)
        return Selection(index=index.to(device), scores=stored, logits=None, threshold=threshold,
                         weights=weights.to(device))

    def observe(self, indices: Tensor, logits: Tensor, labels: Tensor) -> None:
        """Store the training forward's per-sample loss (unweighted) of the samples just trained."""
        if indices is None or not self.memory.numel():
            return
        self.memory[indices.detach().long().cpu()] = cross_entropy_scores(logits, labels).cpu()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "memory": self.memory.clone(), "threshold": self.threshold,
                "threshold_epoch": self.threshold_epoch, "keep_rate": self.keep_rate,
                "plan": self.plan.clone(), "upweighted": self.upweighted.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.memory = state["memory"].detach().float().cpu().clone()
        self.threshold, self.threshold_epoch = float(state["threshold"]), int(state["threshold_epoch"])
        self.keep_rate = float(state["keep_rate"])
        self.plan = state.get("plan", torch.empty(0, dtype=torch.long)).detach().long().cpu().clone()
        self.upweighted = state.get("upweighted", torch.zeros(self.memory.numel(), dtype=torch.bool)).cpu().clone()
