"""The names a config may use and the rules that check them, in plain Python: no torch.

Why a module of its own: the dashboard server validates every launch with TrainConfig and builds
the launch form from these names, and it must never import torch (600-800 MB and seconds before
it answers anything). So the declarations live here, once, and the torch side takes them from here:

- selectors: each one's name, help, whether it draws a candidate pool of B (`uses_candidates`) and
  its options (default, help, check). A class of engine/selection is declared with
  `class MMSSelector(Selector, declared="mms")` and takes all four from `SELECTORS`; what only the
  training loop needs (does it forward the pool, does BatchNorm learn from it, ...) stays on the
  class. tests/engine/test_vocabulary.py checks that the registry and this list agree.
- models: the built-in names and the Wide ResNet rule (`check_model_name`); engine/models.py
  registers a builder for each of `MODEL_NAMES`.
- datasets: the names `load_dataset` knows (`DATASET_NAMES`) and `imagefolder:<path>`.

A selector or model registered from outside the engine (a plug-in, a test) can only exist in a
process that has imported torch and the engine's registry; while that registry is loaded, its
entries count here too (`selector_declarations`, `list_models`), so a config naming them validates.
The dashboard server never loads it and knows the engine's own.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "COMMON_OPTIONS", "DATASET_NAMES", "IMAGEFOLDER_PREFIX", "MODEL_NAMES", "SELECTORS", "WRN_MAX_DEPTH",
    "WRN_MAX_WIDTH", "Option", "SelectorDeclaration", "check_dataset_name", "check_model_name", "list_models",
    "list_selectors", "selector_declaration", "selector_declarations", "selector_help",
]


# --------------------------------------------------------------------------- selectors


@dataclass(frozen=True)
class Option:
    """One selector option: default, help text, and a check returning an error message or None."""

    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None


def _at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be >= {low}"


def _positive(v: Any) -> str | None:
    return None if v > 0 else "must be > 0"


def _share(v: Any) -> str | None:
    return None if 0.0 <= v < 1.0 else "must be in [0, 1)"


# every selector takes these
COMMON_OPTIONS: dict[str, Option] = {
    "chunk": Option(128, "Score candidates in chunks of this size (0 = one batch).", _at_least(0)),
    "seed": Option(0, "Seed of the selector's own random generator.", _at_least(0)),
}


@dataclass(frozen=True)
class SelectorDeclaration:
    """What a config and the launch form need to know about a selector (see the module docstring)."""

    name: str
    help: str
    uses_candidates: bool = True  # False: the loop draws only the b to train on, B does not apply
    options: dict[str, Option] = field(default_factory=dict)  # besides COMMON_OPTIONS

    def all_options(self) -> dict[str, Option]:
        return {**COMMON_OPTIONS, **self.options}

    def resolve(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Every option's value: given ones coerced to their default's type and checked, the rest
        their default. ValueError naming the option for an unknown one or a bad value."""
        known = self.all_options()
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"unknown option {', '.join(map(repr, unknown))} for selector {self.name!r}; "
                             f"options: {', '.join(known)}")
        values = {}
        for key, spec in known.items():
            value = _coerce(self.name, key, options.get(key, spec.default), spec.default)
            if spec.check is not None and (msg := spec.check(value)) is not None:
                raise ValueError(f"option {key!r} of selector {self.name!r} {msg}, got {value!r}")
            values[key] = value
        return values


def _coerce(selector: str, key: str, value: Any, default: Any) -> Any:
    """Give an option the type of its default (JSON sends 0 for 0.0); reject what does not fit."""
    kind = type(default)
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int too large for any float
            number = math.inf
        if math.isfinite(number):
            return number
    elif kind is bool and isinstance(value, bool):
        return value
    elif kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    elif isinstance(value, kind) and not isinstance(value, bool):
        return value
    raise ValueError(f"option {key!r} of selector {selector!r} must be a finite {kind.__name__}, got {value!r}")


_MMS_OPTIONS: dict[str, Option] = {  # mms and its runner-up variants
    "mix": Option(0.0, "Share of the batch drawn uniformly at random from the other candidates.", _share),
    "warmup_epochs": Option(0.0, "Select uniformly (no scoring) before this epoch.", _at_least(0.0)),
    "late_candidates": Option(0, "Candidates scored per step late in the run (0 = B throughout): "
                              "fewer fresh forwards once most samples are easy.", _at_least(0)),
    "late_after": Option(0.5, "Share of the run after which late_candidates applies.", _share),
}

# the engine's selectors, in the order the pages list them (uniform first)
SELECTORS: dict[str, SelectorDeclaration] = {d.name: d for d in (
    SelectorDeclaration(
        "uniform", "Standard training: the batch is b samples drawn uniformly (no candidate pool, no "
        "scoring).", uses_candidates=False),
    SelectorDeclaration(
        "mms", "Minimal margin score (Weinstein et al. 2019): train on the b candidates closest to a "
        "decision boundary of the final linear layer. Exact minimum over classes.", options=_MMS_OPTIONS),
    SelectorDeclaration(
        "mms-runner-up", "MMS as in the paper's reference code: margin to the runner-up class only "
        "(second-largest logit), the norm taken over the head's rows with the bias folded in, "
        "||[w_i; b_i] - [w_j; b_j]|| (the reference appends a constant 1 to the features).",
        options=_MMS_OPTIONS),
    SelectorDeclaration(
        "mms-runner-up-nobias", "Margin to the runner-up class only, over the weight rows alone "
        "||w_i - w_j||: the Euclidean distance to that one boundary (not the reference code's score).",
        options=_MMS_OPTIONS),
    SelectorDeclaration(
        "hard-negative", "Hard negative mining as the reference code runs it (uses the labels): a hard "
        "share of the batch, min(1, (whole epochs done + 1) x ramp_rate), is the largest cross-entropy "
        "losses taken class-balanced; the rest is drawn class-balanced at random. Pure largest-loss "
        "selection from step 0 is top-loss.", options={
            "ramp_epochs": Option(
                0.0, "A smooth ramp instead (with ramp_rate=0): the hard share grows linearly from 10% to "
                "100% over this many epochs (0 with ramp_rate=0: all hard from the start).", _at_least(0.0)),
            "ramp_rate": Option(
                0.1, "The reference code's ramp: hard share = min(1, (whole epochs done + 1) x ramp_rate) "
                "(0 = off: ramp_epochs decides).", _share),
            "balanced": Option(
                True, "Take the hard share class-balanced, as the reference code does: classes in a "
                "random order, round-robin, each giving its largest remaining loss (false: the largest "
                "losses whatever their class)."),
        }),
    SelectorDeclaration(
        "entropy", "Train on the b candidates whose softmax has the largest entropy (most uncertain)."),
    SelectorDeclaration(
        "top-loss", "Pure top-loss: train on the b candidates with the largest cross-entropy loss, from "
        "step 0, no ramp, no class balance (what hard-negative meant here before it followed its "
        "reference). With beta > 0, each candidate is first kept with probability (percentile of its "
        "loss among recent losses)^beta and the kept ones with the largest losses come first (this "
        "project's earlier selective-backprop; not Jiang et al.'s method).", options={
            "window": Option(1024, "Number of recent candidate losses the percentile is taken over (beta > 0).",
                             _at_least(1)),
            "beta": Option(0.0, "0 = pure top-loss; > 0: keep probability = percentile^beta before ranking "
                           "(larger = pickier).", _at_least(0.0)),
        }),
    SelectorDeclaration(
        "selective-backprop", "Selective-Backprop (Jiang et al. 2019) as its reference code runs it: the "
        "first epoch trains on every drawn sample (priming); then each step forwards what it draws in "
        "one scoring pass, keeps each sample with probability (percentile of its loss among recent "
        "losses)^beta, and back-propagates the first b kept, the kept ones beyond b carried to the next "
        "step. Only the forwards it runs are counted.",
        uses_candidates=False,  # it draws what its keep rate needs, not a pool of B
        options={
            "window": Option(1024, "Number of recent losses the percentile is taken over.", _at_least(1)),
            "beta": Option(1.0, "Selectivity: keep probability = percentile^beta (larger = pickier; the "
                           "expected keep rate is 1/(beta+1)).", _positive),
            "prime_epochs": Option(1.0, "Train on every drawn sample, with no scoring forward, for this many "
                                   "epochs first (the reference: 1; 0 = select from step 0).", _at_least(0.0)),
            "stream_chunk": Option(0, "0 = forward the whole draw in one scoring pass (the reference's "
                                   "cadence); k > 0 = stream it in chunks of k and stop once b are kept, "
                                   "the samples not reached going back into the data order.", _at_least(0)),
            "slack": Option(0.5, "Draw this much more than what the queue lacks / (running keep rate), so a "
                            "step rarely runs short; the extra kept samples are carried, not lost.",
                            _at_least(0.0)),
        }),
    SelectorDeclaration(
        "mms-memory", "Cheap MMS: rank a random pool of B by a per-sample score memory (unseen last), "
        "updated for free from every training forward and refreshed over the whole training set about "
        "once per epoch; a share of the batch is drawn uniformly. No candidate forward.", options={
            "mix": Option(0.25, "Share of the batch drawn uniformly at random from the rest of the pool.",
                          _share),
            "refresh_epochs": Option(1.0, "Re-score the whole training set once every this many epochs "
                                     "(rolling, in blocks).", _positive),
            "block": Option(1024, "Samples re-scored together in one refresh (forwarded in chunks).",
                            _at_least(1)),
            "priority": Option(0.0, "Share of each refresh block taken from the lowest stored scores (the "
                               "samples about to be selected, re-scored more often) instead of the rolling "
                               "cursor; the whole split is then covered every refresh_epochs / (1 - "
                               "priority) epochs.", _share),
            "low_precision": Option(False, "Refresh forwards under bfloat16 autocast (a cheaper scoring "
                                    "forward where the device has fast bfloat16; the scores stay float32)."),
            "unseen": Option("last", "Where never-scored samples rank: last (rank by the scores known so "
                             "far; the unseen fill in) or first (explore them before any scored one).",
                             lambda v: None if v in ("first", "last") else "must be first or last"),
        }),
    SelectorDeclaration(
        "infobatch", "InfoBatch (Qin et al. 2024) as its reference code runs it, at matched epochs: at "
        "each epoch's start, drop the share prune of the samples whose stored training loss is below the "
        "mean, up-weight the kept ones of those by 1/(1-prune), and run the epoch on the rest (fewer "
        "iterations; the LR schedule follows the epochs, so it spans InfoBatch's own iterations); the "
        "epochs after the share anneal of the run are not pruned. No scoring forward.",
        uses_candidates=False,  # it trains on what it draws
        options={
            "prune": Option(0.5, "Share of the well-learned (below-mean loss) samples dropped from an epoch.",
                            _share),
            "anneal": Option(0.875, "Share of the run's epochs that may be pruned (delta); an epoch ending "
                             "later trains on everything.",
                             lambda v: None if 0.0 < v <= 1.0 else "must be in (0, 1]"),
            "matched_epochs": Option(True, "true: the run is its epochs and a pruned epoch takes fewer "
                                     "steps (the reference); false: step-matched, N/b steps an epoch, each "
                                     "drawn well-learned sample pruned with probability prune, b per step on "
                                     "average, annealing in the last (1 - anneal) share of the steps (this "
                                     "project's earlier form; runs under torchrun)."),
        }),
)}


def _loaded(module: str) -> Any:
    """The module if this process has imported it (never imports it: it may need torch)."""
    return sys.modules.get(module)


def selector_declarations() -> dict[str, SelectorDeclaration]:
    """Every selector a config may name: the engine's, then any registered from outside it in this
    process (see the module docstring)."""
    registry = _loaded("marginscope.engine.selection.selectors")
    plugged = registry.registered_declarations() if registry is not None else {}
    return {**SELECTORS, **{name: d for name, d in plugged.items() if name not in SELECTORS}}


def list_selectors() -> list[str]:
    """Selector names, uniform first."""
    return list(selector_declarations())


def selector_declaration(name: str) -> SelectorDeclaration:
    """The declaration of selector `name`; ValueError naming the choices for an unknown one."""
    declared = selector_declarations()
    if name not in declared:
        raise ValueError(f"unknown selector {name!r}; choose one of {', '.join(declared)}")
    return declared[name]


def selector_help() -> list[dict[str, Any]]:
    """[{name, help, uses_candidates, options: {opt: {default, help}}}] for the API and the pages
    (a selector that uses no candidate pool trains on b drawn samples: B does not apply)."""
    return [{"name": d.name, "help": d.help, "uses_candidates": d.uses_candidates,
             "options": {k: {"default": o.default, "help": o.help} for k, o in d.all_options().items()}}
            for d in selector_declarations().values()]


# --------------------------------------------------------------------------- models

# registration order of engine/models.py: the small CNN, the CIFAR ResNets, a few common Wide ResNets
MODEL_NAMES: tuple[str, ...] = ("small-cnn", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
                                "wrn-16-4", "wrn-16-8", "wrn-28-10", "wrn-40-2")
_WRN_PATTERN = re.compile(r"wrn-([0-9]+)-([0-9]+)")  # whole name, ASCII digits only
# the largest Wide ResNet built by name (WRN-64-16: 242M parameters, ~1 GB in float32)
WRN_MAX_DEPTH, WRN_MAX_WIDTH = 64, 16


def list_models() -> list[str]:
    """Model names: the engine's, then any registered from outside it in this process (any
    ``wrn-<6n+4>-<k>`` within the caps is accepted too, not only those listed)."""
    registry = _loaded("marginscope.engine.models")
    plugged = registry.registered_models() if registry is not None else []
    return [*MODEL_NAMES, *(name for name in plugged if name not in MODEL_NAMES)]


def wide_resnet_size(name: str) -> tuple[int, int] | None:
    """(depth, width) of a ``wrn-<depth>-<width>`` name, None for any other name (unchecked)."""
    match = _WRN_PATTERN.fullmatch(name)
    return (int(match[1]), int(match[2])) if match else None


def check_model_name(name: str) -> None:
    """ValueError (saying what is allowed) unless `create_model` builds `name`.

    Checked when a config is validated, so a bad name or an absurd size is refused at launch, not in
    the worker: a listed name, or ``wrn-<depth>-<width>`` with depth 6n+4 in 10..WRN_MAX_DEPTH and
    width in 1..WRN_MAX_WIDTH.
    """
    names = list_models()
    if name in names:
        return
    size = wide_resnet_size(name)
    if size is None:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(names)} (or wrn-<depth>-<width>)")
    depth, width = size
    if depth < 10 or (depth - 4) % 6 or depth > WRN_MAX_DEPTH:
        raise ValueError(f"Wide ResNet depth must be 6n+4 between 10 and {WRN_MAX_DEPTH} "
                         f"(10, 16, 22, 28, 40, ...), got {depth}")
    if not 1 <= width <= WRN_MAX_WIDTH:
        raise ValueError(f"Wide ResNet width must be between 1 and {WRN_MAX_WIDTH}, got {width}")


# --------------------------------------------------------------------------- datasets

# the datasets `load_dataset` reads by name; besides them, your own images as imagefolder:<path>
DATASET_NAMES: tuple[str, ...] = ("mnist", "digits", "cifar10", "cifar100", "fashion-mnist")
IMAGEFOLDER_PREFIX = "imagefolder:"


def check_dataset_name(name: str) -> None:
    """ValueError (naming the choices) unless `load_dataset` knows `name` (files aside)."""
    if name.startswith(IMAGEFOLDER_PREFIX):
        if not name[len(IMAGEFOLDER_PREFIX):].strip():
            raise ValueError(f"{IMAGEFOLDER_PREFIX} needs a folder, e.g. {IMAGEFOLDER_PREFIX}my-images")
    elif name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)} "
                         f"or {IMAGEFOLDER_PREFIX}<path>")
