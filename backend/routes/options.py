"""GET /api/options: everything the launch form is generated from, and the pages' vocabulary.

Datasets, models, selectors and regimes come from the engine's torch-free vocabulary
(engine/vocabulary.py, engine/data/files.py, engine/regimes.py); `fields` is
`marginscope.engine.config.field_specs()` (type, default, range, help of each TrainConfig field). Presets are
ready-made groups of runs, e.g. the paper's core comparison "MMS vs uniform" on MNIST.
`vocabulary` hands the pages the names defined once in marginscope.engine.events and the store (counters,
x axes, populations, quantile keys, run statuses), so no page keeps its own list.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from marginscope.backend.deps import SettingsDep
from marginscope.backend.schemas import (
    DatasetOption,
    OptionsPublic,
    Preset,
    PresetRun,
    SelectorOption,
    Vocabulary,
)
from marginscope.backend.store import X_AXES, RunStatus
from marginscope.engine.config import field_specs
from marginscope.engine.data.files import list_datasets
from marginscope.engine.events import COUNTER_KEYS, POPULATIONS, QUANTILE_KEYS
from marginscope.engine.regimes import list_regimes
from marginscope.engine.vocabulary import list_models, selector_help

router = APIRouter(prefix="/api/options", tags=["options"])

# MNIST, small CNN, one epoch at b = 64: ~1-2 min per run on two CPU cores
_MNIST_SMALL: dict[str, Any] = {"dataset": "mnist", "model": "small-cnn", "batch_size": 64,
                                "epochs": 1.0, "lr": 0.1, "seed": 0, "regime": "normal"}


def vocabulary() -> Vocabulary:
    return Vocabulary(counters=list(COUNTER_KEYS), x_axes=list(X_AXES), populations=list(POPULATIONS),
                      quantiles=list(QUANTILE_KEYS), statuses=[s.value for s in RunStatus])


def presets() -> list[Preset]:
    """Preset run groups; every config validates with TrainConfig (tested)."""
    return [
        Preset(name="MMS vs uniform",
               help="The paper's core comparison: the same seed and schedule on MNIST with a small "
                    "CNN, selecting b = 64 of B = 640 candidates by minimal margin vs uniform batches.",
               runs=[PresetRun(name="mnist-mms", config={**_MNIST_SMALL, "selector": "mms",
                                                          "candidates": 640}),
                     PresetRun(name="mnist-uniform", config={**_MNIST_SMALL, "selector": "uniform",
                                                              "candidates": 64})]),
        Preset(name="Selectors on MNIST",
               help="MMS against the paper's baselines (hard-negative, entropy) and uniform, same seed.",
               runs=[PresetRun(name=f"mnist-{sel}", config={**_MNIST_SMALL, "selector": sel,
                                                             "candidates": 64 if sel == "uniform" else 640})
                     for sel in ("mms", "hard-negative", "entropy", "uniform")]),
        Preset(name="Quick check (digits)",
               help="A tiny run on scikit-learn's digits: finishes in seconds, to see the dashboard move.",
               runs=[PresetRun(name="digits-mms", config={
                   "dataset": "digits", "selector": "mms", "candidates": 64, "batch_size": 16,
                   "steps": 200, "eval_every": 50, "hist_every": 5, "log_every": 5})]),
    ]


@router.get("", response_model=OptionsPublic)
def read_options(settings: SettingsDep) -> OptionsPublic:
    """The launch form's datasets, models, selectors, regimes, fields and presets; the vocabulary."""
    return OptionsPublic(
        datasets=[DatasetOption(**d) for d in list_datasets(settings.data_dir)],
        models=list_models(),
        selectors=[SelectorOption(**s) for s in selector_help()],
        regimes=list_regimes(),
        fields=field_specs(),
        presets=presets(),
        vocabulary=vocabulary(),
    )
