"""The data order: which training samples each step draws, as a pure function of (seed, pass)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["PassSampler"]


class PassSampler:
    """Candidate indices drawn without replacement within a pass over the data.

    A pass is a permutation that depends only on (seed, pass number); the state is two integers,
    so checkpoints stay small and resume is exact. A draw that runs past the end of a pass
    continues into the next one, unless it is asked to stop there (`within_pass`).

    `plan(order, pass_index)` (a selector's `plan_pass`, InfoBatch at matched epochs) may shorten a
    pass to the samples it keeps, in the permutation's order. A pass is planned when its first sample
    is drawn, not when the previous pass ends, so the plan sees every step of the previous pass; the
    selector keeps the plan of the current pass in its own state, so a resume finds the same one.

    `population` (sorted dataset indices) restricts the passes to those samples: a pass is then a
    permutation of them (the label-noise oracle trains on the intact samples only, `clean_only`).
    """

    def __init__(self, n: int, seed: int, pass_index: int = 0, cursor: int = 0,
                 plan: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                 population: torch.Tensor | None = None):
        self.n, self.seed, self.pass_index, self.cursor, self.plan = n, seed, pass_index, cursor, plan
        self.population = population
        self._order: torch.Tensor | None = None  # the current pass, planned when first needed

    def _permutation(self, pass_index: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + pass_index)
        if self.population is None:
            return torch.randperm(self.n, generator=g)
        return self.population[torch.randperm(len(self.population), generator=g)]

    def order(self) -> torch.Tensor:
        """The samples of the current pass, in the order they are drawn."""
        if self._order is None:
            perm = self._permutation(self.pass_index)
            self._order = perm if self.plan is None else self.plan(perm, self.pass_index)
        return self._order

    def draw(self, size: int, *, within_pass: bool = False) -> torch.Tensor:
        """The next `size` samples; with `within_pass`, fewer if the current pass ends first."""
        parts, need = [], size
        while need > 0:
            order = self.order()
            take = min(need, len(order) - self.cursor)
            parts.append(order[self.cursor:self.cursor + take])
            self.cursor += take
            need -= take
            if self.cursor == len(order):
                self.pass_index += 1
                self.cursor = 0
                self._order = None
                if within_pass:
                    break
        return torch.cat(parts)

    def position(self, batch: int) -> tuple[int, int, int]:
        """(passes done, draws of `batch` done in the current pass, draws the pass takes): where a run
        that draws `batch` at a time within each pass stands."""
        if self.cursor == 0:
            return self.pass_index, 0, 1
        return self.pass_index, math.ceil(self.cursor / batch), math.ceil(len(self.order()) / batch)

    def rewind(self, count: int) -> None:
        """Put the last `count` drawn indices back, to be drawn again next (a selector that streams
        stops early). Only the current pass can be rewound: indices drawn before its start stay
        drawn."""
        self.cursor -= min(max(count, 0), self.cursor)

    def state_dict(self) -> dict[str, int]:
        return {"pass_index": self.pass_index, "cursor": self.cursor}
