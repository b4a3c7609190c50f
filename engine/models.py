"""Models by name: a small CNN for MNIST-like data, CIFAR ResNets and Wide ResNets.

Every model is a classifier split in two, because MMS needs the penultimate features h and the
last layer's weight W:

    features(x) -> [B, d]      (after global pooling; ``model.feature_dim == d``)
    head: nn.Linear(d, K)      (logits z = W h + b)
    forward(x) == head(features(x))

Names (``list_models()``; declared, with the Wide ResNet rule, in engine/vocabulary.py so that a
config is checked without torch): ``small-cnn``; ``resnet20/32/44/56/110`` (CIFAR-style, depth 6n+2,
He et al. 2016 sec. 4.2); ``wrn-<depth>-<k>`` for any depth 6n+4 up to 64 and widening factor k
up to 16 (Zagoruyko & Komodakis 2016), with a few common ones listed.

Initialisation (all models): convolutions Kaiming-normal with fan_out and ReLU gain; BatchNorm
weight 1, bias 0; the linear layers keep PyTorch's default (Kaiming-uniform, a=sqrt(5)).

The registry follows timm (``_registry.py``) and torchvision (``models/_api.py``): a decorator adds
a builder to a module dict and raises on a duplicate name; ``create_model`` and ``list_models``
are the only entry points. Input channels come from ``input_shape`` (1 for MNIST, 3 for CIFAR),
and every model uses adaptive pooling, so any image size >= 8x8 works. All layers are plain
conv/BN/pool ops, so ``model.to(memory_format=torch.channels_last)`` works.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from marginscope.engine.vocabulary import (
    MODEL_NAMES,
    WRN_MAX_DEPTH,
    WRN_MAX_WIDTH,
    check_model_name,
    list_models,
    wide_resnet_size,
)

__all__ = ["MODEL_NAMES", "WRN_MAX_DEPTH", "WRN_MAX_WIDTH", "check_model_name", "create_model", "default_model_for",
           "list_models", "register_model", "registered_models"]

ModelBuilder = Callable[..., nn.Module]
_model_registry: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: add ``builder(num_classes=, input_shape=)`` to the registry under ``name``."""

    def add(builder: ModelBuilder) -> ModelBuilder:
        if name in _model_registry:
            raise ValueError(f"model {name!r} is already registered")
        _model_registry[name] = builder
        return builder

    return add


def registered_models() -> list[str]:
    """The names with a builder, in registration order: the vocabulary's `MODEL_NAMES` (checked by
    tests/engine/test_vocabulary.py), then any registered from outside the engine."""
    return list(_model_registry)


def create_model(name: str, *, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """Build a freshly initialised model; ValueError (listing the choices) for an unknown name."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape}")
    shape = (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))
    check_model_name(name)
    if name in _model_registry:
        return _model_registry[name](num_classes=num_classes, input_shape=shape)
    depth, width = wide_resnet_size(name)  # type: ignore[misc]  # checked above
    return _create_wrn(depth, width, num_classes, shape)


def default_model_for(dataset_name: str) -> str:
    """``small-cnn`` for MNIST-like grey 28x28/8x8 data, ``resnet20`` otherwise."""
    return "small-cnn" if dataset_name in ("mnist", "digits", "fashion-mnist") else "resnet20"


# --- shared pieces


class Classifier(nn.Module):
    """Base: subclasses set ``self.head`` and ``self.feature_dim`` and implement ``features``."""

    head: nn.Linear
    feature_dim: int

    def features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.head(self.features(x))
        return logits


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


# --- small CNN


class SmallCNN(Classifier):
    """Two conv blocks (32, 64 channels; BN, ReLU, 2x2 max-pool), pooled to 4x4, then a 128-d FC+BN.

    ~0.15M parameters. Adaptive average pooling to 4x4 keeps some spatial layout (digits need it)
    and lets 8x8 inputs (2x2 after the pools) through unchanged in shape.
    """

    def __init__(self, num_classes: int, in_channels: int, feature_dim: int = 128) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
        )
        # BatchNorm before the feature ReLU: without it, training on the smallest-margin samples
        # at lr 0.05-0.1 drove every feature unit dead within ~50 steps (all candidates got the
        # same MMS and accuracy stayed at chance); uniform training hid the problem.
        self.fc = nn.Sequential(nn.Linear(64 * 4 * 4, feature_dim, bias=False), nn.BatchNorm1d(feature_dim))
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)
        _init_weights(self)

    def features(self, x: Tensor) -> Tensor:
        return F.relu(self.fc(torch.flatten(self.body(x), 1)))  # (B, 128)


@register_model("small-cnn")
def small_cnn(*, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    return SmallCNN(num_classes, input_shape[0])


# --- CIFAR ResNet (depth 6n+2)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus shortcut, then ReLU (post-activation, He et al. 2016).

    Shortcut option A: when the shape changes, subsample by 2 and zero-pad the new channels
    (parameter-free, as in the paper's CIFAR experiments; resnet20 has 0.27M parameters).
    """

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv3x3(cout, cout), nn.BatchNorm2d(cout)
        self.stride, self.extra = stride, cout - cin

    def shortcut(self, x: Tensor) -> Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            half = self.extra // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.extra - half))  # zero channels on both sides
        return x

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(Classifier):
    """3 stages of n BasicBlocks (16, 32, 64 channels), global average pool, 64-d features."""

    def __init__(self, depth: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.depth = depth
        self.stem = nn.Sequential(_conv3x3(in_channels, 16), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        blocks, cin = [], 16
        for stage, cout in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 64
        self.head = nn.Linear(64, num_classes)
        _init_weights(self)

    def features(self, x: Tensor) -> Tensor:
        return torch.flatten(self.pool(self.blocks(self.stem(x))), 1)  # (B, 64)


def _register_resnet(depth: int) -> None:
    @register_model(f"resnet{depth}")
    def build(*, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
        return CifarResNet(depth, num_classes, input_shape[0])


for _depth in (20, 32, 44, 56, 110):
    _register_resnet(_depth)


# --- Wide ResNet (depth 6n+4, widening factor k)


class WideBasicBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3, 1x1 conv shortcut on change."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), _conv3x3(cin, cout, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), _conv3x3(cout, cout)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.proj = (
            nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if stride != 1 or cin != cout else None
        )

    def forward(self, x: Tensor) -> Tensor:
        o = F.relu(self.bn1(x))
        shortcut: Tensor = x if self.proj is None else self.proj(o)
        out: Tensor = self.conv1(o)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class WideResNet(Classifier):
    """WRN-d-k: 3 stages of n = (d-4)/6 blocks with 16k, 32k, 64k channels; 64k-d features."""

    def __init__(self, depth: int, width: int, num_classes: int, in_channels: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6 or depth < 10:
            raise ValueError(f"Wide ResNet depth must be 6n+4 (10, 16, 22, 28, 40, ...), got {depth}")
        if width < 1:
            raise ValueError(f"Wide ResNet width must be >= 1, got {width}")
        n = (depth - 4) // 6
        self.depth, self.width = depth, width
        widths = (16 * width, 32 * width, 64 * width)
        self.stem = _conv3x3(in_channels, 16)
        blocks, cin = [], 16
        for stage, cout in enumerate(widths):
            for i in range(n):
                blocks.append(WideBasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1, dropout))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = cin
        self.head = nn.Linear(cin, num_classes)
        _init_weights(self)

    def features(self, x: Tensor) -> Tensor:
        out: Tensor = F.relu(self.bn(self.blocks(self.stem(x))))
        return torch.flatten(self.pool(out), 1)  # (B, 64k)


def _create_wrn(depth: int, width: int, num_classes: int,
                input_shape: tuple[int, int, int]) -> nn.Module:
    return WideResNet(depth, width, num_classes, input_shape[0])


def _register_wrn(depth: int, width: int) -> None:
    @register_model(f"wrn-{depth}-{width}")
    def build(*, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
        return _create_wrn(depth, width, num_classes, input_shape)


for _d, _k in ((16, 4), (16, 8), (28, 10), (40, 2)):
    _register_wrn(_d, _k)
