"""Training samples of a run's dataset as small PNG files, for the samples gallery.

The pixels come from the engine's torch-free reader (`marginscope.engine.data.arrays.training_images`)
with the arguments the training used (dataset, seed-0 hold-out, val_fraction, train_subset) and
the server's data dir: the engine's own loader reads and splits the files through the same
functions, so index i is the very sample the run's events call i (tests/backend/test_sample_pixels.py
compares the two), and nothing outside the run's dataset can be read. The server never loads
torch for this. A training split is kept (the last few, in memory: MNIST's is ~40 MB as uint8) and
every encoded PNG is cached, so a gallery of 64 thumbnails reads the files once.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

from marginscope.engine.data.files import DatasetUnavailable

__all__ = ["DatasetUnavailable", "SampleOutOfRange", "sample_png"]

MIN_SIDE = 32  # smaller images (digits are 8x8) are scaled up by a whole factor, nearest neighbour
_SPLITS_KEPT = 2
_lock = threading.Lock()
_splits: OrderedDict[tuple[Any, ...], Any] = OrderedDict()


class SampleOutOfRange(ValueError):
    """The index is not a sample of the run's training split."""


def _key(config: dict[str, Any], data_dir: Path) -> tuple[Any, ...]:
    return (str(config.get("dataset", "mnist")), str(Path(data_dir).resolve()),
            float(config.get("val_fraction", 0.1)), config.get("train_subset"))


def _images(key: tuple[Any, ...]) -> Any:
    """The training split's images [N, C, H, W] (numpy) of the run `key` describes."""
    with _lock:  # one read at a time: concurrent thumbnails of one run share it
        if key in _splits:
            _splits.move_to_end(key)
            return _splits[key]
        from marginscope.engine.data.arrays import training_images  # numpy: loaded by the first thumbnail

        name, data_dir, val_fraction, train_subset = key
        images = training_images(name, data_dir, seed=0, val_fraction=val_fraction, train_subset=train_subset)
        _splits[key] = images
        while len(_splits) > _SPLITS_KEPT:
            _splits.popitem(last=False)
        return images


def sample_png(config: dict[str, Any], data_dir: Path, index: int) -> bytes:
    """PNG bytes of training sample `index` of the dataset `config` names (its stored pixels, as
    loaded: no normalisation, no augmentation). Raises SampleOutOfRange, DatasetUnavailable."""
    return _png(_key(config, data_dir), int(index))


@lru_cache(maxsize=4096)
def _png(key: tuple[Any, ...], index: int) -> bytes:
    import numpy as np
    from PIL import Image

    images = _images(key)
    if not 0 <= index < images.shape[0]:
        raise SampleOutOfRange(f"index {index} is not a training sample of this run "
                               f"(0..{images.shape[0] - 1})")
    x = images[index]
    if x.dtype.kind == "f":  # digits: float32 in [0, 1]
        x = np.rint(np.clip(x, 0, 1) * 255)
    x = x.astype(np.uint8)
    c, h, w = x.shape
    scale = max(1, -(-MIN_SIDE // max(1, min(h, w))))
    if scale > 1:
        x = x.repeat(scale, axis=1).repeat(scale, axis=2)
    array = x.transpose(1, 2, 0)
    image = Image.fromarray(np.ascontiguousarray(array[:, :, 0] if c == 1 else array[:, :, :3]))  # L or RGB
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
