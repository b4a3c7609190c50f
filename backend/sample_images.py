"""Training samples of a run's dataset as small PNG files, for the samples gallery.

The images come from the engine's own loaders (`marginscope.engine.data.load_dataset`) with the arguments the
training used (dataset, seed-0 hold-out, val_fraction, train_subset) and the server's data dir,
so index i is the very sample the run's events call i — and nothing outside the run's dataset
can be read. A loaded dataset is kept (the last few, in memory: MNIST is ~55 MB as uint8) and
every encoded PNG is cached, so a gallery of 64 thumbnails loads the data once.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

from marginscope.engine.data import DatasetUnavailable, load_dataset

__all__ = ["DatasetUnavailable", "SampleOutOfRange", "sample_png", "training_size"]

MIN_SIDE = 32  # smaller images (digits are 8x8) are scaled up by a whole factor, nearest neighbour
_BUNDLES_KEPT = 2
_lock = threading.Lock()
_bundles: OrderedDict[tuple[Any, ...], Any] = OrderedDict()


class SampleOutOfRange(ValueError):
    """The index is not a sample of the run's training split."""


def _key(config: dict[str, Any], data_dir: Path) -> tuple[Any, ...]:
    return (str(config.get("dataset", "mnist")), str(Path(data_dir).resolve()),
            float(config.get("val_fraction", 0.1)), config.get("train_subset"))


def _bundle(key: tuple[Any, ...]) -> Any:
    with _lock:  # one load at a time: concurrent thumbnails of one run share it
        if key in _bundles:
            _bundles.move_to_end(key)
            return _bundles[key]
        name, data_dir, val_fraction, train_subset = key
        bundle = load_dataset(name, data_dir, download=False, seed=0, val_fraction=val_fraction,
                              train_subset=train_subset)
        _bundles[key] = bundle
        while len(_bundles) > _BUNDLES_KEPT:
            _bundles.popitem(last=False)
        return bundle


def training_size(config: dict[str, Any], data_dir: Path) -> int:
    return len(_bundle(_key(config, data_dir)).train)


def sample_png(config: dict[str, Any], data_dir: Path, index: int) -> bytes:
    """PNG bytes of training sample `index` of the dataset `config` names (its stored pixels, as
    loaded: no normalisation, no augmentation). Raises SampleOutOfRange, DatasetUnavailable."""
    return _png(_key(config, data_dir), int(index))


@lru_cache(maxsize=4096)
def _png(key: tuple[Any, ...], index: int) -> bytes:
    from PIL import Image

    images = _bundle(key).train.images
    if not 0 <= index < images.shape[0]:
        raise SampleOutOfRange(f"index {index} is not a training sample of this run "
                               f"(0..{images.shape[0] - 1})")
    x = images[index]
    if x.dtype.is_floating_point:
        x = (x.clamp(0, 1) * 255).round()
    x = x.to("cpu").byte()
    c, h, w = x.shape
    scale = max(1, -(-MIN_SIDE // max(1, min(h, w))))
    if scale > 1:
        x = x.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    array = x.permute(1, 2, 0).numpy()
    image = Image.fromarray(array[:, :, 0] if c == 1 else array[:, :, :3])  # L or RGB
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
