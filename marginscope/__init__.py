"""MarginScope: train image classifiers with selective sampling by Minimal Margin Score, and watch
and compare the runs in a live dashboard.

The one import package. In the repository its parts keep their own folders (pyproject.toml maps
them): `marginscope.engine` (engine/, pure PyTorch), `marginscope.backend` (backend/, the FastAPI
server), and, as package data, the migrations (alembic/) and the pages (frontend/).

The public names below load on first use, so `import marginscope` (and the dashboard server, which
imports this package) never pays for torch; `marginscope.train` does.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("marginscope")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

# the engine's public names (marginscope.engine.LAZY_NAMES) and the remote client's; the engine
# package is imported only when one of them is asked for, so the store and the server, which live
# in this package, load nothing of the engine they do not use
_REMOTE = ("remote_run", "train_remote")
__all__ = ["__version__", "TrainConfig", "TrainResult", "create_model", "list_models", "list_selectors",
           "load_dataset", "make_selector", "minimal_margin_scores", "train", *_REMOTE]

if TYPE_CHECKING:
    from marginscope.engine.config import TrainConfig
    from marginscope.engine.data import load_dataset
    from marginscope.engine.models import create_model
    from marginscope.engine.remote import remote_run, train_remote
    from marginscope.engine.selection import make_selector, minimal_margin_scores
    from marginscope.engine.vocabulary import list_models, list_selectors
    from marginscope.engine.loop import TrainResult, train


def __getattr__(name: str) -> Any:
    if name in _REMOTE:
        value = getattr(import_module("marginscope.engine.remote"), name)
    elif name in __all__:
        value = getattr(import_module("marginscope.engine"), name)
    else:
        raise AttributeError(f"module 'marginscope' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value
