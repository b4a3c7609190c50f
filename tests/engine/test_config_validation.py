"""TrainConfig refuses at validation what the loop could not run: unknown datasets and models,
Wide ResNets past the size caps, and values of the wrong JSON type; command-line text still parses."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from marginscope.engine.config import TrainConfig
from marginscope.engine.models import WRN_MAX_DEPTH, WRN_MAX_WIDTH, check_model_name, create_model
from marginscope.engine.vocabulary import DATASET_NAMES


def test_dataset_names_are_the_engines() -> None:
    assert {"mnist", "digits", "cifar10"} <= set(DATASET_NAMES)
    for name in (*DATASET_NAMES, "imagefolder:my-images"):
        assert TrainConfig(dataset=name).dataset == name


@pytest.mark.parametrize("name", ["../../../etc/passwd", "MNIST", "imagefolder:", "imagefolder:  "])
def test_unknown_datasets_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="dataset"):
        TrainConfig(dataset=name)


@pytest.mark.parametrize("name", ["wrn-11-2", "wrn-28-0", f"wrn-{WRN_MAX_DEPTH + 6}-1",
                                  f"wrn-28-{WRN_MAX_WIDTH + 1}", "wrn-28-10\n", "wrn-٢٨-١٠", "resnet21", ""])
def test_unknown_or_oversized_models_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="model"):
        TrainConfig(model=name)
    with pytest.raises(ValueError):
        check_model_name(name)


def test_the_largest_wide_resnet_is_built() -> None:
    name = f"wrn-{WRN_MAX_DEPTH}-{WRN_MAX_WIDTH}"
    assert TrainConfig(model=name).model == name
    import torch

    with torch.device("meta"):  # shapes only: no memory for 242M parameters
        model = create_model(name, num_classes=10, input_shape=(3, 32, 32))
    assert model.feature_dim == 64 * WRN_MAX_WIDTH


@pytest.mark.parametrize(("field", "value"), [
    ("steps", True), ("steps", "5"), ("steps", 5.0), ("epochs", True), ("amp", 1), ("amp", "true"),
    ("lr", "0.1"), ("regime", [[0.5, True]]),
])
def test_values_of_the_wrong_type_are_refused(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        TrainConfig.model_validate({field: value})


def test_command_line_text_is_parsed_by_from_text() -> None:
    config = TrainConfig.from_text({"steps": "5", "amp": "false", "lr": "0.05", "epochs": "2",
                                    "regime": [[0.5, 0.1]]})
    assert (config.steps, config.amp, config.lr, config.epochs) == (5, False, 0.05, 2.0)
    assert config.regime == [(0.5, 0.1)]
    with pytest.raises(ValidationError, match="steps"):
        TrainConfig.from_text({"steps": "five"})


def test_json_numbers_keep_working() -> None:
    config = TrainConfig.model_validate({"epochs": 2, "lr": 1, "regime": [[1, 0.1]], "steps": 7})
    assert (config.epochs, config.lr, config.regime, config.steps) == (2.0, 1.0, [(1.0, 0.1)], 7)
