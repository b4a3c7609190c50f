"""In-memory splits, the batched gather with augmentation, and the seeded hold-outs.

Why in memory: selective sampling draws a fresh random candidate pool of B indices every step;
gathering it from one tensor costs well under a millisecond, where a DataLoader with per-sample
transforms would cost more than the model's forward pass on a small CPU. Augmentation runs on the
batch, on its device, with the caller's generator, so runs are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from marginscope.engine.data.arrays import holdout_indices

AUGMENTATIONS = ("none", "crop", "crop-flip")


# --- containers


@dataclass(eq=False)
class Split(torch.utils.data.Dataset[tuple[int, Tensor, int]]):
    """One split held in memory. ``split[i]`` is ``(i, image, label)``, image normalised float.

    ``images`` is [N, C, H, W], uint8 (0..255) or float32 in [0, 1]; ``labels`` is [N] int64.
    ``__getitem__`` never augments: augmentation belongs to the batched path (`DatasetBundle.batch`).
    """

    images: Tensor
    labels: Tensor
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"images must be [N, C, H, W], got shape {tuple(self.images.shape)}")
        if self.images.dtype not in (torch.uint8, torch.float32):
            raise ValueError(f"images must be uint8 or float32, got {self.images.dtype}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must be [N] with N = number of images")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[int, Tensor, int]:
        i = int(i)
        x = _to_unit_float(self.images[i : i + 1])
        x = (x - _channel_view(self.mean, x)) / _channel_view(self.std, x)
        return i, x[0], int(self.labels[i])

    def to(self, device: torch.device | str) -> Split:
        """Copy of this split with its tensors on ``device`` (e.g. keep MNIST on the GPU)."""
        return Split(self.images.to(device), self.labels.to(device), self.mean, self.std)


@dataclass(eq=False)
class DatasetBundle:
    """A named dataset: train/val/test splits plus the facts the loop and the dashboard need."""

    name: str
    num_classes: int
    class_names: list[str]
    input_shape: tuple[int, int, int]  # (C, H, W)
    train: Split
    val: Split
    test: Split
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augmentation: str = "none"  # "none" | "crop" | "crop-flip" (see module docstring)
    aug_pad: int = 4  # pixels of zero padding before the random crop
    _consts: dict[Any, tuple[Tensor, Tensor]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {self.augmentation!r}; choose one of {AUGMENTATIONS}")
        for split in (self.train, self.val, self.test):
            split.mean, split.std = self.mean, self.std

    def info(self) -> dict[str, Any]:
        """JSON-able facts for the run-started event and the dashboard."""
        return {
            "name": self.name,
            "num_train": len(self.train),
            "num_val": len(self.val),
            "num_test": len(self.test),
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "input_shape": list(self.input_shape),
            "augmentation": self.augmentation,
        }

    def batch(
        self,
        split: Split,
        idx: Tensor | list[int],
        *,
        augment: bool,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> tuple[Tensor, Tensor]:
        """Gather ``split[idx]`` as a ready batch: (x float32 [n, C, H, W], y int64 [n]) on ``device``.

        The images travel to the device in their stored dtype (uint8: 4x less to copy), are
        augmented there if ``augment`` and this dataset has an augmentation, then scaled and
        normalised in one fused multiply-add. The random offsets and flips come from
        ``generator`` (drawn on the generator's own device), so a seeded generator reproduces
        the batch exactly.
        """
        device = torch.device(device)
        idx = torch.as_tensor(idx).to(split.images.device, torch.long)
        x = split.images.index_select(0, idx).to(device, non_blocking=True)
        y = split.labels.index_select(0, idx).to(device, non_blocking=True)
        if augment and self.augmentation != "none" and x.shape[0] > 0:
            x = random_crop_flip(
                x, self.aug_pad, flip=self.augmentation == "crop-flip", generator=generator
            )
        scale, shift = self._affine(x.dtype, device)
        x = x.float().mul_(scale).sub_(shift)  # (x/255 - mean)/std == x*scale - shift
        return x, y

    def _affine(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """Cached per-channel (scale, shift) that map stored pixels to normalised floats."""
        key = (dtype, str(device))
        if key not in self._consts:
            unit = 255.0 if dtype == torch.uint8 else 1.0
            std = torch.tensor(self.std, dtype=torch.float64)
            mean = torch.tensor(self.mean, dtype=torch.float64)
            scale = (1.0 / (unit * std)).float().view(1, -1, 1, 1).to(device)
            shift = (mean / std).float().view(1, -1, 1, 1).to(device)
            self._consts[key] = (scale, shift)
        return self._consts[key]


# --- augmentation


def random_crop_flip(
    x: Tensor, pad: int, *, flip: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Per-sample random crop (after zero padding by ``pad``) and optional horizontal flip.

    Vectorised: one gather with per-sample row/column indices, no Python loop over samples.
    Works on any dtype and device; ``x`` is [n, C, H, W].
    """
    n, c, h, w = x.shape
    gdev = generator.device if generator is not None else torch.device("cpu")
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device=gdev)
    flips = (
        torch.randint(0, 2, (n,), generator=generator, device=gdev).bool()
        if flip
        else torch.zeros(n, dtype=torch.bool, device=gdev)
    )
    offsets, flips = offsets.to(x.device), flips.to(x.device)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))  # (n, C, H+2p, W+2p)
    wp = w + 2 * pad
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (n, H)
    cols = torch.arange(w, device=x.device).expand(n, w)
    cols = torch.where(flips[:, None], cols.flip(1), cols) + offsets[:, 1:]  # (n, W)
    flat = (rows[:, :, None] * wp + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    out = padded.reshape(n, c, -1).gather(2, flat)  # (n, C, H*W)
    return out.view(n, c, h, w)


# --- helpers


def _to_unit_float(x: Tensor) -> Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def _channel_view(values: tuple[float, ...], like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def holdout(images: Tensor, labels: Tensor, fraction: float, seed: int) -> tuple[Split, Split]:
    """Seeded hold-out: (rest, held-out fraction); both keep the original order of samples (the
    indices are arrays.py's, which the dashboard server uses too)."""
    keep, out = (torch.from_numpy(i) for i in holdout_indices(images.shape[0], fraction, seed))
    return Split(images[keep], labels[keep]), Split(images[out], labels[out])


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = _to_unit_float(images).double()
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)
