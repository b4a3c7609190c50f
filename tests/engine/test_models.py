"""Models: every registered name gives features [B, d] and a linear head, forward == head(features);
ResNet/WRN depths, parameter counts of the papers, channels-last, registry errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from marginscope.engine.models import (
    BasicBlock,
    WideBasicBlock,
    create_model,
    default_model_for,
    list_models,
    register_model,
)

GIANT = {"wrn-28-10", "wrn-16-8"}  # tens of millions of parameters: shape-checked elsewhere


def _check_classifier(model: nn.Module, x: torch.Tensor, num_classes: int) -> None:
    model.eval()
    with torch.no_grad():
        feats = model.features(x)
        logits = model(x)
    assert isinstance(model.head, nn.Linear)
    assert feats.shape == (x.shape[0], model.feature_dim)
    assert model.head.weight.shape == (num_classes, model.feature_dim)
    assert logits.shape == (x.shape[0], num_classes)
    torch.testing.assert_close(logits, model.head(feats))
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", [n for n in list_models() if n not in GIANT] + ["wrn-16-2"])
def test_every_model_features_and_head(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, input_shape=(3, 16, 16))
    _check_classifier(model, torch.randn(2, 3, 16, 16), 7)


@pytest.mark.parametrize("name", ["small-cnn", "resnet20", "wrn-10-1"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 32, 32)])
def test_grey_colour_and_tiny_inputs(name: str, shape: tuple[int, int, int]) -> None:
    model = create_model(name, num_classes=10, input_shape=shape)
    _check_classifier(model, torch.randn(3, *shape), 10)


def test_channels_last_gives_same_logits() -> None:
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, input_shape=(3, 32, 32)).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_small_cnn_trains_a_step_with_gradients_everywhere() -> None:
    torch.manual_seed(0)
    model = create_model("small-cnn", num_classes=10, input_shape=(1, 28, 28)).train()
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    nn.functional.cross_entropy(model(x), y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_resnet_depth_and_blocks(depth: int) -> None:
    model = create_model(f"resnet{depth}", num_classes=10, input_shape=(3, 32, 32))
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 3 * (depth - 2) // 6
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) + 1 == depth  # option-A shortcuts add no conv: 2 per block + stem + head
    assert model.feature_dim == 64


def test_parameter_counts_match_the_papers() -> None:
    def count(name: str, k: int) -> float:
        model = create_model(name, num_classes=k, input_shape=(3, 32, 32))
        return sum(p.numel() for p in model.parameters()) / 1e6

    assert round(count("resnet20", 10), 2) == 0.27
    assert round(count("resnet110", 10), 1) == 1.7
    assert round(count("wrn-28-10", 100), 1) == 36.5
    assert round(count("wrn-16-4", 10), 1) == 2.7


def test_wrn_pattern_blocks_width_and_bad_depth() -> None:
    model = create_model("wrn-22-3", num_classes=5, input_shape=(3, 32, 32))
    assert len([m for m in model.modules() if isinstance(m, WideBasicBlock)]) == 9
    assert model.feature_dim == 64 * 3
    with pytest.raises(ValueError, match="6n\\+4"):
        create_model("wrn-27-2", num_classes=10, input_shape=(3, 32, 32))


def test_init_kaiming_fan_out_and_bn_ones() -> None:
    torch.manual_seed(0)
    model = create_model("resnet56", num_classes=10, input_shape=(3, 32, 32))
    conv = model.blocks[-1].conv2  # 64 -> 64, 3x3: std = sqrt(2 / (64 * 9))
    assert abs(float(conv.weight.detach().std()) - (2 / (64 * 9)) ** 0.5) < 0.005
    bn = model.blocks[0].bn1
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and not bn.bias.any()


def test_unknown_model_lists_choices() -> None:
    with pytest.raises(ValueError) as err:
        create_model("vgg16", num_classes=10, input_shape=(3, 32, 32))
    assert "small-cnn" in str(err.value) and "resnet44" in str(err.value)


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet20")(lambda **kw: nn.Identity())


def test_default_model_for() -> None:
    assert default_model_for("mnist") == default_model_for("digits") == "small-cnn"
    assert default_model_for("fashion-mnist") == "small-cnn"
    assert default_model_for("cifar10") == default_model_for("imagefolder:x") == "resnet20"
    assert default_model_for("mnist") in list_models() and "resnet20" in list_models()
