"""Datasets: real offline MNIST and digits, splits, batch() reproducibility and augmentation,
missing torchvision data, imagefolder from a generated folder, train_subset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from marginscope.engine.data import (
    DatasetBundle,
    DatasetUnavailable,
    Split,
    list_datasets,
    load_dataset,
    random_crop_flip,
)


@pytest.fixture(scope="module")
def mnist() -> DatasetBundle:
    return load_dataset("mnist", "does-not-exist")


@pytest.fixture(scope="module")
def digits() -> DatasetBundle:
    return load_dataset("digits")


def _crop_flip_loop(x: torch.Tensor, pad: int, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Brute-force reference: one sample at a time."""
    h, w = x.shape[2:]
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    out = []
    for k in range(x.shape[0]):
        oy, ox = int(offsets[k, 0]), int(offsets[k, 1])
        crop = padded[k, :, oy : oy + h, ox : ox + w]
        out.append(crop.flip(-1) if flips[k] else crop)
    return torch.stack(out)


# --- MNIST


def test_mnist_offline_split_sizes_and_shapes(mnist: DatasetBundle) -> None:
    info = mnist.info()
    assert (info["num_train"], info["num_val"], info["num_test"]) == (50000, 10000, 10000)
    assert info["input_shape"] == [1, 28, 28] and info["num_classes"] == 10
    assert mnist.train.images.dtype == torch.uint8
    assert mnist.train.images.shape == (50000, 1, 28, 28)
    for split in (mnist.train, mnist.val, mnist.test):
        assert split.labels.dtype == torch.int64
        assert int(split.labels.min()) == 0 and int(split.labels.max()) == 9
    # Real data: every class present in roughly its usual share, digits are mostly background.
    counts = torch.bincount(mnist.test.labels, minlength=10)
    assert counts.min() > 800 and counts.max() < 1200
    assert 0.1 < mnist.train.images[:1000].float().div(255).mean() < 0.15


def test_mnist_getitem_yields_index_image_label(mnist: DatasetBundle) -> None:
    index, image, label = mnist.train[123]
    assert index == 123 and label == int(mnist.train.labels[123])
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    expected = (mnist.train.images[123].float() / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(image, expected)


def test_mnist_batch_normalises_on_whole_train(mnist: DatasetBundle) -> None:
    x, y = mnist.batch(mnist.train, torch.arange(len(mnist.train)), augment=True, generator=None,
                       device="cpu")
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 1) < 0.02
    assert mnist.augmentation == "none"


# --- digits


def test_digits_split_and_ranges(digits: DatasetBundle) -> None:
    n = len(digits.train) + len(digits.val) + len(digits.test)
    assert n == 1797
    assert len(digits.val) == len(digits.test) == 270
    assert digits.input_shape == (1, 8, 8)
    assert digits.train.images.dtype == torch.float32
    assert 0.0 <= float(digits.train.images.min()) and float(digits.train.images.max()) <= 1.0
    assert set(digits.train.labels.tolist()) == set(range(10))
    index, image, label = digits.val[5]
    assert index == 5 and image.shape == (1, 8, 8) and 0 <= label < 10


def test_digits_split_is_seeded(digits: DatasetBundle) -> None:
    same = load_dataset("digits", seed=0)
    other = load_dataset("digits", seed=1)
    assert torch.equal(same.test.images, digits.test.images)
    assert not torch.equal(other.test.images, digits.test.images)


# --- batch()


def test_batch_reproducible_with_generator_seed() -> None:
    bundle = load_dataset("digits", augmentation="crop-flip")
    idx = torch.arange(0, 200)

    def draw(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return bundle.batch(bundle.train, idx, augment=True, generator=g, device="cpu")[0]

    a, b, c = draw(7), draw(7), draw(8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == c.shape == (200, 1, 8, 8)
    plain, y = bundle.batch(bundle.train, idx, augment=False, generator=None, device="cpu")
    assert not torch.equal(a, plain)
    assert torch.equal(y, bundle.train.labels[:200])


def test_batch_without_augment_matches_getitem(digits: DatasetBundle) -> None:
    idx = torch.tensor([3, 1, 4, 1, 5])
    x, y = digits.batch(digits.train, idx, augment=False, generator=None, device="cpu")
    for row, i in enumerate(idx.tolist()):
        _, image, label = digits.train[i]
        torch.testing.assert_close(x[row], image)
        assert int(y[row]) == label


def test_crop_flip_matches_per_sample_loop() -> None:
    x = torch.randint(0, 256, (16, 3, 10, 12), dtype=torch.uint8)
    pad = 3
    g = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, pad, flip=True, generator=g)
    # Re-draw the same random numbers in the same order as the function does.
    g = torch.Generator().manual_seed(0)
    offsets = torch.randint(0, 2 * pad + 1, (16, 2), generator=g)
    flips = torch.randint(0, 2, (16,), generator=g).bool()
    assert flips.any() and not flips.all()
    assert torch.equal(out, _crop_flip_loop(x, pad, offsets, flips))


def test_crop_only_never_flips() -> None:
    x = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32).repeat(64, 1, 1, 1)
    out = random_crop_flip(x, 4, flip=False, generator=torch.Generator().manual_seed(1))
    # Columns stay increasing wherever both neighbours are inside the image (no flip).
    inside = (out[..., 1:] > 0) & (out[..., :-1] > 0)
    assert bool(((out[..., 1:] - out[..., :-1])[inside] == 1).all())


def test_uint8_and_float_storage_give_same_batch() -> None:
    images = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8)
    labels = torch.randint(0, 3, (20,))
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)

    def bundle(imgs: torch.Tensor) -> DatasetBundle:
        s = Split(imgs, labels)
        return DatasetBundle("t", 3, ["a", "b", "c"], (3, 8, 8), s, s, s, mean, std, "crop-flip", 1)

    b8, bf = bundle(images), bundle(images.float() / 255)
    idx = torch.tensor([0, 5, 19, 5])
    x8 = b8.batch(b8.train, idx, augment=True, generator=torch.Generator().manual_seed(3), device="cpu")[0]
    xf = bf.batch(bf.train, idx, augment=True, generator=torch.Generator().manual_seed(3), device="cpu")[0]
    torch.testing.assert_close(x8, xf)


# --- torchvision datasets that are missing


@pytest.mark.parametrize("name,folder", [("cifar10", "cifar-10-batches-py"),
                                         ("cifar100", "cifar-100-python"),
                                         ("fashion-mnist", "FashionMNIST")])
def test_missing_torchvision_dataset_says_where_and_download(tmp_path: Path, name: str, folder: str) -> None:
    with pytest.raises(DatasetUnavailable) as err:
        load_dataset(name, tmp_path)
    message = str(err.value)
    assert str(tmp_path / folder) in message
    assert "--download" in message


def test_list_datasets_reports_availability(tmp_path: Path) -> None:
    entries = {d["name"]: d for d in list_datasets(tmp_path)}
    assert entries["mnist"]["available"] and entries["digits"]["available"]
    assert not entries["cifar10"]["available"]
    assert all(d["help"] for d in entries.values())
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"x")
    assert {d["name"]: d for d in list_datasets(tmp_path)}["cifar10"]["available"]


def test_unknown_dataset_lists_choices() -> None:
    with pytest.raises(ValueError, match="mnist.*digits.*cifar10"):
        load_dataset("svhn")


# --- imagefolder


def _write_pngs(root: Path, classes: dict[str, int], size: tuple[int, int] = (20, 12)) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            pixels = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
            pixels[..., c % 3] += 180  # class = dominant colour channel
            Image.fromarray(pixels).save(root / name / f"{k}.png")


def test_imagefolder_seeded_split(tmp_path: Path) -> None:
    _write_pngs(tmp_path / "shapes", {"red": 20, "green": 20, "blue": 10})
    bundle = load_dataset("imagefolder:shapes", tmp_path)  # relative to data_dir
    assert bundle.class_names == ["blue", "green", "red"]
    assert bundle.input_shape == (3, 32, 32) and bundle.num_classes == 3
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (40, 5, 5)
    assert bundle.train.images.dtype == torch.uint8 and bundle.train.images.shape[1:] == (3, 32, 32)
    # Label really follows the folder: "red" images are red-dominant.
    red = bundle.train.images[bundle.train.labels == 2].float().mean(dim=(0, 2, 3))
    assert int(red.argmax()) == 0
    assert len(bundle.mean) == 3 and all(s > 0 for s in bundle.std)
    x, y = bundle.batch(bundle.train, torch.arange(8), augment=True,
                        generator=torch.Generator().manual_seed(0), device="cpu")
    assert x.shape == (8, 3, 32, 32) and y.shape == (8,)


def test_imagefolder_uses_train_val_test_subfolders(tmp_path: Path) -> None:
    root = tmp_path / "own"
    _write_pngs(root / "train", {"a": 6, "b": 6})
    _write_pngs(root / "val", {"a": 2, "b": 1})
    _write_pngs(root / "test", {"b": 3})  # a class missing here must not shift the labels
    bundle = load_dataset(f"imagefolder:{root}", tmp_path / "elsewhere", image_size=16)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (12, 3, 3)
    assert bundle.input_shape == (3, 16, 16)
    assert bundle.test.labels.tolist() == [1, 1, 1]


def test_imagefolder_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable, match="one sub-folder per class"):
        load_dataset("imagefolder:nothing-here", tmp_path)


# --- train_subset


def test_train_subset_is_seeded_and_leaves_val_test(digits: DatasetBundle) -> None:
    sub = load_dataset("digits", train_subset=100, seed=0)
    again = load_dataset("digits", train_subset=100, seed=0)
    assert len(sub.train) == 100 and sub.info()["num_train"] == 100
    assert torch.equal(sub.train.images, again.train.images)
    assert len(sub.val) == len(digits.val) and len(sub.test) == len(digits.test)
    # The subset is drawn from the whole training split, not just its first 100 samples.
    assert not torch.equal(sub.train.images, digits.train.images[:100])
    big = load_dataset("digits", train_subset=10**6)
    assert len(big.train) == len(digits.train)


def test_mnist_train_subset(mnist: DatasetBundle) -> None:
    sub = load_dataset("mnist", "does-not-exist", train_subset=1000, seed=3)
    assert len(sub.train) == 1000 and len(sub.val) == 10000
    assert sub.train.images.shape == (1000, 1, 28, 28)
