"""Selectors: given the model and a candidate batch of B samples, choose the b to train on.

One small interface (`Selector.select`) behind a registry (`make_selector`, `list_selectors`,
`selector_help`), after timm's `_registry.py`/`_factory.py`; a duplicate name raises, as in
torchvision. Each selector scores the candidates with the current model in eval mode without
gradients (fresh every step, as in the paper's reference code) and returns positions into the
candidate batch plus the scores it ranked by, so the training loop can monitor them for free.

Selectors here:
- uniform: the first b candidates (the loop draws only b; no scoring).
- mms: the b smallest minimal margin scores (Weinstein et al. 2019), exact minimum over classes.
- mms-runner-up: the reference code's score (runner-up class, bias folded into the weight norm);
  mms-runner-up-nobias: the same margin with the weight rows only (this project's former variant).
The baselines they are compared with (hard-negative, entropy, top-loss, selective-backprop) are in
baselines.py, InfoBatch in infobatch.py; the cheap score-memory mode (mms-memory) in memory.py.

What a config needs to know about a selector (name, help, whether it draws a pool of B, its options)
is declared in engine/vocabulary.py, without torch, so the dashboard server can validate a launch
without loading this module; a class here names its declaration (`declared="mms"`). A selector from
outside the engine subclasses `Selector`, sets `name`, `help` and `options` itself, declares what the
loop needs to know (see its docstring) and registers itself.

Everything random draws from the selector's own seeded CPU generator, saved in `state_dict`, so
a resumed run makes the same choices as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from marginscope.engine.selection.scores import minimal_margin_scores, score_logits
from marginscope.engine.vocabulary import (
    SELECTORS,
    Option,
    SelectorDeclaration,
    list_selectors,
    selector_declaration,
    selector_help,
)

__all__ = [
    "Option",
    "Selection",
    "Selector",
    "head_bias",
    "head_layer",
    "head_weight",
    "list_selectors",
    "make_selector",
    "register_selector",
    "registered_declarations",
    "selector_help",
]


@dataclass
class Selection:
    """What a selector chose from a candidate batch of B samples."""

    index: Tensor  # int64 [b] positions into the candidate batch (not dataset indices)
    scores: Tensor | None  # float32 [B] the score ranked by (None for uniform)
    logits: Tensor | None  # float32 [B, K] eval-mode candidate logits, when computed
    threshold: float | None  # largest (smallest for largest-wanted selectors) score admitted by rank
    # per-sample weights of the training loss, aligned with `index` (None = plain mean); InfoBatch
    # rescales the kept well-learned samples this way
    weights: Tensor | None = None
    # samples the selector actually forwarded to choose (None = all B if `forwards_candidates`);
    # Selective-Backprop forwards only its fresh draw, and nothing while it primes
    forwarded: int | None = None
    # drawn candidates at the tail the selector never reached (streaming Selective-Backprop stopped
    # once b were kept): the loop puts them back into the data order, to be drawn next
    unused: int = 0


def head_layer(model: nn.Module) -> nn.Linear:
    """The model's final linear layer (`model.head`, MarginScope's models).

    Looks through DDP's `.module` and torch.compile's `._orig_mod`; falls back to the last
    `nn.Linear` of the model for third-party models.
    """
    inner = model
    for attr in ("module", "_orig_mod"):
        while isinstance(getattr(inner, attr, None), nn.Module):
            inner = getattr(inner, attr)
    head = getattr(inner, "head", None)
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in inner.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("MMS needs a final nn.Linear layer (model.head) to measure margins")
    return linears[-1]


def head_weight(model: nn.Module) -> Tensor:
    """The weight [K, d] of the model's final linear layer (see `head_layer`)."""
    return head_layer(model).weight


def head_bias(model: nn.Module) -> Tensor:
    """The bias [K] of the model's final linear layer (zeros when it has none)."""
    head = head_layer(model)
    return head.bias if head.bias is not None else head.weight.new_zeros(head.weight.shape[0])


# --- registry (the names and help: engine/vocabulary.py's `list_selectors` and `selector_help`)

_SELECTORS: dict[str, type[Selector]] = {}


def register_selector(cls: type[Selector]) -> type[Selector]:
    """Class decorator adding a selector under `cls.name`; raises on a duplicate name."""
    if cls.name in _SELECTORS:
        raise ValueError(f"selector {cls.name!r} is already registered")
    _SELECTORS[cls.name] = cls
    return cls


def registered_declarations() -> dict[str, SelectorDeclaration]:
    """The declaration of every registered class, in registration order: the vocabulary's for the
    engine's own (tests/engine/test_vocabulary.py), and those of selectors from outside the engine."""
    return {name: cls.declaration() for name, cls in _SELECTORS.items()}


def make_selector(name: str, **options: Any) -> Selector:
    """Build a selector by name; an unknown name or option raises ValueError naming the choices."""
    if name not in _SELECTORS:
        selector_declaration(name)  # raises, naming the choices
    return _SELECTORS[name](**options)


# --- base class


class Selector:
    """Base class. A subclass names its declaration (`declared="<name>"`, engine/vocabulary.py) or,
    from outside the engine, sets `name`, `help`, `options` (and `uses_candidates`) itself; it
    implements `_select`.

    Everything the training loop (engine/loop.py) needs to know about a selector is declared
    here; the loop never looks at a selector's name. The defaults describe a selector that scores
    a fresh random pool every step (mms); a subclass overrides what differs:

    - `uses_candidates`: the loop draws a pool of B candidates; False: it draws only the b to train.
    - `forwards_candidates`: `select` runs the model on the whole pool, so a step forwards B samples
      besides the b it trains on (counted in `samples_forwarded`, the cost model of docs/method.md);
      False when the pool is chosen from without a forward (uniform, mms-memory).
    - `batchnorm_from_pool`: with `bn_stats="pool"` BatchNorm's running statistics come from the
      forward that `select` runs (engine/batchnorm.py), which must see a uniform sample of the data,
      as the pool is; set False if it forwards anything else. A `select` that runs no forward leaves
      PyTorch's usual update in place either way.
    - `threshold_is_mms`: `Selection.threshold` is a minimal margin score, so monitoring draws it on
      the MMS histogram of the selected samples (otherwise that histogram has no threshold line).
    - `refresh`: work after each training step beyond the pool (mms-memory re-scores the training
      split); it returns the samples it forwarded, which the loop counts as real work.
    - `begin`: told the run's size once before the first step (InfoBatch anneals near the end).
    - `pool_size`: how many samples the loop draws this step (default: B, or b without a pool);
      Selective-Backprop and InfoBatch size their draw from their running keep rate.
    - `plans_passes` / `plan_pass`: the run is counted in passes over the data (matched epochs), and
      each pass is the samples `plan_pass` keeps of the pass's random order, drawn b at a time with
      a short last batch: InfoBatch prunes an epoch so it takes fewer steps, and the LR schedule,
      the curves' epoch and the run's end follow the passes (engine/loop.py's `_Run.clock`).
    - `carried`: dataset indices the selector kept at an earlier step and trains at this one
      (Selective-Backprop's queue); the loop puts them before the fresh draw in the candidates.
    - `Selection.weights` / `Selection.forwarded` / `Selection.unused`: per-sample loss weights, the
      forwards the selector really ran (when they differ from the plain mean and from B), and the
      drawn samples it never reached (put back into the data order).
    """

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    uses_candidates: ClassVar[bool] = True
    forwards_candidates: ClassVar[bool] = True
    batchnorm_from_pool: ClassVar[bool] = True
    threshold_is_mms: ClassVar[bool] = False
    plans_passes: bool = False  # an instance may decide (InfoBatch's matched_epochs option)
    options: ClassVar[dict[str, Option]] = {}  # besides the vocabulary's COMMON_OPTIONS (chunk, seed)
    chunk: int  # option values are set as attributes by __init__
    seed: int

    def __init_subclass__(cls, declared: str | None = None, **kwargs: Any) -> None:
        """`class MMSSelector(Selector, declared="mms")`: name, help, pool and options are the
        vocabulary's declaration of that name (engine/vocabulary.py), written nowhere else."""
        super().__init_subclass__(**kwargs)
        if declared is not None:
            written = sorted({"name", "help", "uses_candidates", "options"} & set(vars(cls)))
            if written:
                raise TypeError(f"{cls.__name__} is declared={declared!r}: its {', '.join(written)} "
                                "are engine/vocabulary.py's, not the class's")
            d = SELECTORS[declared]
            cls.name, cls.help, cls.uses_candidates, cls.options = d.name, d.help, d.uses_candidates, d.options

    @classmethod
    def declaration(cls) -> SelectorDeclaration:
        return SelectorDeclaration(cls.name, cls.help, cls.uses_candidates, cls.options)

    def __init__(self, **options: Any) -> None:
        for key, value in self.declaration().resolve(options).items():
            setattr(self, key, value)
        self.generator = torch.Generator().manual_seed(int(self.seed))
        self.num_train = self.steps_per_epoch = self.total_steps = 0  # set by `begin`

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.declaration().all_options())
        return f"{type(self).__name__}({opts})"

    # The loop calls this once per step with a candidate batch of B samples.
    def select(
        self, model: nn.Module, inputs: Tensor, labels: Tensor, indices: Tensor,
        *, batch_size: int, epoch: float = 0.0,
    ) -> Selection:
        """Choose min(batch_size, B) candidates; `indices` are their dataset indices."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        b = min(batch_size, inputs.shape[0])
        return self._select(model, inputs, labels, indices, b=b, epoch=epoch)

    def _select(
        self, model: nn.Module, inputs: Tensor, labels: Tensor, indices: Tensor, *, b: int, epoch: float
    ) -> Selection:
        raise NotImplementedError

    def begin(self, *, num_train: int, steps_per_epoch: int, total_steps: int) -> None:
        """Hook before the first step (and on resume): the run's size. Default: remember it."""
        self.num_train, self.steps_per_epoch, self.total_steps = num_train, steps_per_epoch, total_steps

    def pool_size(self, candidates: int, batch_size: int, step: int) -> int:
        """Samples the loop draws at `step`: B with a candidate pool, else b."""
        return candidates if self.uses_candidates else batch_size

    def plan_pass(self, order: Tensor, pass_index: int) -> Tensor:
        """With `plans_passes`: the samples of pass `pass_index` (a subset of `order`, the pass's
        random permutation, in its order). Called when the pass's first sample is drawn, and again
        for the current pass on resume (return the same plan then). Default: the whole pass."""
        return order

    def carried(self) -> Tensor:
        """Dataset indices kept at an earlier step for this one's batch; the loop puts them first in
        the candidates, before the samples it draws. Default: none."""
        return torch.empty(0, dtype=torch.long)

    def observe(self, indices: Tensor, logits: Tensor, labels: Tensor) -> None:
        """Hook: the loop passes the training forward's detached logits. Default: nothing."""

    def refresh(self, model: nn.Module, fetch: Callable[[Tensor], Tensor], *, num_train: int,
                steps_per_epoch: int) -> int:
        """Hook after each training step; returns the samples it forwarded. Default: nothing, 0.

        `fetch(indices)` returns those training samples (no augmentation) ready for the model. The
        loop runs it under the step's autocast and counts its time in the step's wall time.
        """
        return 0

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name", self.name) != self.name:
            raise ValueError(f"state of selector {state['name']!r} cannot load into {self.name!r}")
        self.generator.set_state(state["generator"])

    # --- helpers for subclasses

    def _logits(self, model: nn.Module, inputs: Tensor) -> Tensor:
        return score_logits(model, inputs, chunk=int(self.chunk))

    def _randperm(self, n: int, device: torch.device) -> Tensor:
        return torch.randperm(n, generator=self.generator).to(device)

    def _rand(self, n: int, device: torch.device) -> Tensor:
        return torch.rand(n, generator=self.generator).to(device)


def ranked(scores: Tensor, k: int, *, largest: bool) -> tuple[Tensor, float | None]:
    """Positions of the k smallest (or largest) scores, best first, and the last score admitted
    (the selection threshold; None when k = 0)."""
    if k == 0:
        return scores.new_empty(0, dtype=torch.long), None
    vals, idx = scores.topk(k, largest=largest, sorted=True)
    return idx, float(vals[-1])


# --- selectors


@register_selector
class UniformSelector(Selector, declared="uniform"):
    forwards_candidates = False

    def _select(
        self, model: nn.Module, inputs: Tensor, labels: Tensor, indices: Tensor, *, b: int, epoch: float
    ) -> Selection:
        index = torch.arange(b, device=inputs.device)
        return Selection(index=index, scores=None, logits=None, threshold=None)


@register_selector
class MMSSelector(Selector, declared="mms"):
    threshold_is_mms = True
    runner_up_only: ClassVar[bool] = False
    fold_bias: ClassVar[bool] = False  # the reference code's norm over [w; b] (see scores.py)
    mix: float
    warmup_epochs: float
    late_candidates: int
    late_after: float

    def pool_size(self, candidates: int, batch_size: int, step: int) -> int:
        if self.late_candidates and self.total_steps and step >= self.late_after * self.total_steps:
            return max(batch_size, min(candidates, self.late_candidates))
        return candidates

    def _select(
        self, model: nn.Module, inputs: Tensor, labels: Tensor, indices: Tensor, *, b: int, epoch: float
    ) -> Selection:
        device = inputs.device
        if epoch < self.warmup_epochs:
            return Selection(index=torch.arange(b, device=device), scores=None, logits=None, threshold=None)
        logits = self._logits(model, inputs)
        scores = minimal_margin_scores(logits, head_weight(model), runner_up_only=self.runner_up_only,
                                       bias=head_bias(model) if self.fold_bias else None)
        n_random = min(round(self.mix * b), b)
        chosen, threshold = ranked(scores, b - n_random, largest=False)
        if n_random:
            # Draw the mixed-in share uniformly from the candidates not already ranked in.
            rest = torch.ones(scores.shape[0], dtype=torch.bool, device=device)
            rest[chosen] = False
            pool = rest.nonzero().squeeze(1)
            extra = pool[self._randperm(pool.numel(), device)[:n_random]]
            chosen = torch.cat([chosen, extra])
        return Selection(index=chosen, scores=scores, logits=logits, threshold=threshold)


@register_selector
class MMSRunnerUpSelector(MMSSelector, declared="mms-runner-up"):
    runner_up_only = True
    fold_bias = True


@register_selector
class MMSRunnerUpNoBiasSelector(MMSSelector, declared="mms-runner-up-nobias"):
    runner_up_only = True
