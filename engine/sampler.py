"""The data order: which training samples each step draws, as a pure function of (seed, pass)."""

from __future__ import annotations

import torch

__all__ = ["PassSampler"]


class PassSampler:
    """Candidate indices drawn without replacement within a pass over the data.

    A pass is a permutation that depends only on (seed, pass number); the state is two integers,
    so checkpoints stay small and resume is exact. A draw that runs past the end of a pass
    continues into the next one.
    """

    def __init__(self, n: int, seed: int, pass_index: int = 0, cursor: int = 0):
        self.n, self.seed, self.pass_index, self.cursor = n, seed, pass_index, cursor
        self._perm = self._permutation(pass_index)

    def _permutation(self, pass_index: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + pass_index)
        return torch.randperm(self.n, generator=g)

    def draw(self, size: int) -> torch.Tensor:
        parts, need = [], size
        while need > 0:
            take = min(need, self.n - self.cursor)
            parts.append(self._perm[self.cursor:self.cursor + take])
            self.cursor += take
            need -= take
            if self.cursor == self.n:
                self.pass_index += 1
                self.cursor = 0
                self._perm = self._permutation(self.pass_index)
        return torch.cat(parts)

    def rewind(self, count: int) -> None:
        """Put the last `count` drawn indices back, to be drawn again next (a selector that streams
        stops early). Only the current pass can be rewound: indices drawn before its start stay
        drawn."""
        self.cursor -= min(max(count, 0), self.cursor)

    def state_dict(self) -> dict[str, int]:
        return {"pass_index": self.pass_index, "cursor": self.cursor}
