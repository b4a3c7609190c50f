"""MarginScope engine: selective sampling by Minimal Margin Score, in pure PyTorch.

Public surface (everything else is an implementation detail):
    TrainConfig, train, TrainResult          -- run a whole training (the loop: marginscope.engine.loop)
    make_selector, list_selectors,           -- use a selector inside your own loop
    minimal_margin_scores                    -- the score itself (marginscope.engine.selection)
    load_dataset, create_model               -- data and models by name
The engine never imports the backend. The names load on first use: the config, the events and the
vocabulary import without torch, so the dashboard server can use them and never load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from marginscope.engine.lazy import lazy_getattr

# public name -> the module that defines it (marginscope/__init__.py offers them too)
LAZY_NAMES = {
    "TrainConfig": "marginscope.engine.config",
    "train": "marginscope.engine.loop",
    "TrainResult": "marginscope.engine.loop",
    "make_selector": "marginscope.engine.selection",
    "list_selectors": "marginscope.engine.vocabulary",
    "minimal_margin_scores": "marginscope.engine.selection",
    "load_dataset": "marginscope.engine.data",
    "create_model": "marginscope.engine.models",
    "list_models": "marginscope.engine.vocabulary",
}

__all__ = list(LAZY_NAMES)

if TYPE_CHECKING:
    from marginscope.engine.config import TrainConfig
    from marginscope.engine.data import load_dataset
    from marginscope.engine.models import create_model
    from marginscope.engine.selection import make_selector, minimal_margin_scores
    from marginscope.engine.vocabulary import list_models, list_selectors
    from marginscope.engine.loop import TrainResult, train


__getattr__ = lazy_getattr(__name__, LAZY_NAMES, globals())
