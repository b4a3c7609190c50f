"""engine/vocabulary.py (torch-free, what configs are validated with) agrees with the engine's
registries (what the training loop builds): the same selectors in the same order with the very same
declarations, the same model names, the same dataset names; and a config validates exactly when the
selector it names can be built with its options."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from marginscope.engine.config import TrainConfig
from marginscope.engine.data import DatasetUnavailable, list_datasets, load_dataset
from marginscope.engine.models import registered_models
from marginscope.engine.selection import Selector, make_selector
from marginscope.engine.selection import selectors as selector_registry
from marginscope.engine.vocabulary import (
    COMMON_OPTIONS,
    DATASET_NAMES,
    IMAGEFOLDER_PREFIX,
    MODEL_NAMES,
    SELECTORS,
    list_selectors,
    selector_help,
)


def test_every_engine_selector_is_registered_with_its_declaration() -> None:
    registered = selector_registry.registered_declarations()
    assert list(registered) == list(SELECTORS)  # same names, same order
    assert registered == SELECTORS
    for name, cls in selector_registry._SELECTORS.items():
        assert cls.options is SELECTORS[name].options, f"{name}: options written twice"


def test_every_engine_model_is_registered() -> None:
    assert registered_models() == list(MODEL_NAMES)


def test_every_dataset_name_is_listed_and_loaded(tmp_path: Any) -> None:
    assert [d["name"] for d in list_datasets(tmp_path)] == [*DATASET_NAMES, f"{IMAGEFOLDER_PREFIX}<path>"]
    for name in DATASET_NAMES:  # known to the loader: it loads, or says the files are missing
        try:
            load_dataset(name, tmp_path, train_subset=10)
        except DatasetUnavailable:
            pass


OPTIONS: list[dict[str, Any]] = [
    {}, {"mix": 0.2}, {"mix": 1.5}, {"mix": "a lot"}, {"mixx": 0.1}, {"chunk": -1}, {"chunk": 64.0},
    {"seed": 3}, {"window": 0}, {"window": "big"}, {"beta": 0}, {"beta": 2}, {"unseen": "first"},
    {"unseen": "middle"}, {"prune": 1.0}, {"anneal": 0}, {"anneal": 1}, {"balanced": 1}, {"balanced": True},
    {"late_candidates": 128, "late_after": 0.75}, {"refresh_epochs": 1e400}, {"block": 10**400},
]


def _builds(name: str, options: dict[str, Any]) -> bool:
    try:
        make_selector(name, **options)
    except ValueError:
        return False
    return True


def _validates(name: str, options: dict[str, Any]) -> bool:
    try:
        TrainConfig(selector=name, selector_options=options, candidates=64, batch_size=16)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("name", list(SELECTORS))
def test_a_config_validates_exactly_when_its_selector_builds(name: str) -> None:
    assert [_validates(name, o) for o in OPTIONS] == [_builds(name, o) for o in OPTIONS]
    assert any(_validates(name, o) for o in OPTIONS[1:]) and not all(_validates(name, o) for o in OPTIONS)


class EveryCandidate(Selector):
    """A selector from outside the engine: it declares itself, on its class."""

    name = "test-plugged-in"
    help = "Trains on the first b candidates."
    uses_candidates = False

    def _select(self, model, inputs, labels, indices, *, b, epoch):  # type: ignore[no-untyped-def]
        raise NotImplementedError


def test_a_selector_registered_from_outside_the_engine_is_in_the_vocabulary(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert EveryCandidate.name not in list_selectors()
    monkeypatch.setitem(selector_registry._SELECTORS, EveryCandidate.name, EveryCandidate)
    assert list_selectors()[-1] == EveryCandidate.name
    assert selector_help()[-1] == {
        "name": EveryCandidate.name, "help": EveryCandidate.help, "uses_candidates": False,
        "options": {k: {"default": o.default, "help": o.help} for k, o in COMMON_OPTIONS.items()}}
    # no candidate pool: B may be below b
    assert TrainConfig(selector=EveryCandidate.name, candidates=8, batch_size=16).selector == EveryCandidate.name
    with pytest.raises(ValidationError, match="selector_options"):
        TrainConfig(selector=EveryCandidate.name, selector_options={"mix": 0.1})
    assert isinstance(make_selector(EveryCandidate.name), EveryCandidate)


def test_a_declared_class_cannot_write_its_declaration_again() -> None:
    with pytest.raises(TypeError, match="help are engine/vocabulary.py's"):
        class Again(Selector, declared="entropy"):  # noqa: F841
            help = "a second help text"
