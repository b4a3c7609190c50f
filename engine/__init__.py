"""MarginScope engine: selective sampling by Minimal Margin Score, in pure PyTorch.

Public surface (everything else is an implementation detail):
    TrainConfig, train, TrainResult          -- run a whole training (engine.train)
    make_selector, list_selectors,           -- use a selector inside your own loop
    minimal_margin_scores                    -- the score itself (engine.selection)
    load_dataset, create_model               -- data and models by name
The engine never imports the backend.
"""

from engine.config import TrainConfig
from engine.data import load_dataset
from engine.models import create_model, list_models
from engine.selection import list_selectors, make_selector, minimal_margin_scores
from engine.train import TrainResult, train

__all__ = [
    "TrainConfig", "TrainResult", "train", "make_selector", "list_selectors", "minimal_margin_scores",
    "load_dataset", "create_model", "list_models",
]
