"""engine/data/arrays.py reads and splits the files the way torch, torchvision and scikit-learn do:
its seeded permutation is torch.randperm's, its digits are load_digits', its image folders are in
torchvision's order. (The dashboard's thumbnails against the engine's loader, sample for sample:
tests/backend/test_sample_pixels.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from marginscope.engine.data.arrays import digits_splits, find_classes, image_files, read_digits, seeded_perm


@pytest.mark.parametrize("seed", [0, 1, 7, 2**32 + 5])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 10, 1797, 50_000, 60_000])
def test_seeded_perm_is_torchs_randperm(n: int, seed: int) -> None:
    expected = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    assert np.array_equal(seeded_perm(n, seed), expected)


def test_digits_are_scikit_learns() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = read_digits()
    assert images.dtype == np.float32 and images.shape == (len(digits.target), 1, 8, 8)
    assert np.array_equal(images, (digits.images.astype(np.float32) / 16.0)[:, None])
    assert np.array_equal(labels, digits.target)
    train, val, test = digits_splits(0)
    assert (len(train[1]), len(val[1]), len(test[1])) == (1257, 270, 270)


def test_image_folders_are_in_torchvisions_order(tmp_path: Path) -> None:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes as tv_find_classes, make_dataset

    for rel in ("b/2.png", "b/10.PNG", "b/inner/1.jpg", "b/notes.txt", "a/z.webp", "a/A.jpeg", "c/deep/er/x.bmp",
                "a/.hidden.png", "d/readme.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    classes, class_to_idx = tv_find_classes(str(tmp_path))
    assert find_classes(tmp_path) == classes
    expected = make_dataset(str(tmp_path), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    assert image_files(tmp_path, classes) == expected
    # a split folder holding only some classes keeps the training split's class indices
    (tmp_path / "b").rename(tmp_path / "only-b")
    assert image_files(tmp_path, classes) == make_dataset(str(tmp_path), class_to_idx, extensions=IMG_EXTENSIONS,
                                                          allow_empty=True)
