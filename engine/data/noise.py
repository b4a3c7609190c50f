"""Symmetric label noise on the training split, so that a label-noise finder can be measured.

A share of the training labels is flipped, each to one of the other classes chosen uniformly
("symmetric" noise, as in the noisy-label literature). Which samples flip and what they become is
a pure function of (labels, share, number of classes, seed): a resumed run, or a second run with
the same seed, trains on exactly the same noisy labels, and the flipped indices can be recomputed
from the config alone. Validation and test splits are never touched: they measure the clean task.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["MAX_LABEL_NOISE", "flip_labels"]

MAX_LABEL_NOISE = 0.9  # exclusive: at 0.9 of 10 classes the flipped labels outnumber the true class

# Offsets the seed so that the noise stream never coincides with the data order's (seed * 1_000_003 +
# pass) or the augmentation's (seed + 1) generator for the same run seed.
_NOISE_STREAM = 7_919


def flip_labels(labels: Tensor, share: float, num_classes: int, seed: int) -> tuple[Tensor, Tensor]:
    """(noisy labels, sorted int64 indices of the flipped samples); `labels` is left unchanged.

    Exactly round(share * N) samples flip, each to a different class drawn uniformly from the
    other K - 1 classes. Draws from its own generator: the global random state is not touched.
    """
    if not 0.0 <= share < MAX_LABEL_NOISE:
        raise ValueError(f"label noise share must be in [0, {MAX_LABEL_NOISE}), got {share}")
    if num_classes < 2 and share > 0:
        raise ValueError("label noise needs at least 2 classes")
    labels = labels.long()
    n = labels.shape[0]
    count = round(share * n)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + _NOISE_STREAM)
    flipped = torch.randperm(n, generator=generator)[:count].sort().values
    noisy = labels.clone()
    if count:
        shift = torch.randint(1, num_classes, (count,), generator=generator)  # never 0: a real flip
        noisy[flipped] = (labels.cpu()[flipped] + shift).remainder(num_classes).to(labels.device)
    return noisy, flipped
