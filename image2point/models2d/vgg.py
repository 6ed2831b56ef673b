"""Plain VGG-style networks: stages of conv3x3-BN-ReLU separated by 2x2 max pools.

``features`` is one flat ``nn.Sequential`` and ``classifier`` another, exactly torchvision's
``features.N`` / ``classifier.N`` layout, so the ``vggNN_bn`` builders load torchvision checkpoints.
``vgg_small`` is a light variant with a global pool and a single linear classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from image2point.channels import RGB_CHANNELS
from image2point.models2d.registry import (
    IMAGENET_NUM_CLASSES,
    ImageClassifier2D,
    register_model_2d,
)

POOL_SIZE = 2
LINEAR_INIT_STD = 0.01
TORCHVISION_POOLED_SIZE = 7
TORCHVISION_HIDDEN_FEATURES = 4096
TORCHVISION_DROPOUT = 0.5


@dataclass(frozen=True)
class VGGConfig:
    """Shape of a VGG net.

    ``stage_widths`` holds one tuple of conv output widths per stage; a max pool separates stages
    (and follows the last one when ``pool_after_last_stage``). The head average-pools to
    ``pooled_size`` x ``pooled_size`` and classifies with one linear layer, or with torchvision's
    two hidden layers of ``hidden_features`` and dropout when that is set.
    """

    stage_widths: tuple[tuple[int, ...], ...]
    pool_after_last_stage: bool
    conv_bias: bool
    pooled_size: int
    hidden_features: int | None
    dropout: float


def _torchvision_config(stage_widths: tuple[tuple[int, ...], ...]) -> VGGConfig:
    return VGGConfig(
        stage_widths=stage_widths,
        pool_after_last_stage=True,
        conv_bias=True,
        pooled_size=TORCHVISION_POOLED_SIZE,
        hidden_features=TORCHVISION_HIDDEN_FEATURES,
        dropout=TORCHVISION_DROPOUT,
    )


VGG11_CONFIG = _torchvision_config(((64,), (128,), (256, 256), (512, 512), (512, 512)))
VGG13_CONFIG = _torchvision_config(((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)))
VGG16_CONFIG = _torchvision_config(
    ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
)
VGG19_CONFIG = _torchvision_config(((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4))
VGG_SMALL_CONFIG = VGGConfig(
    stage_widths=((32, 32), (64, 64), (128, 128), (256, 256)),
    pool_after_last_stage=False,
    conv_bias=False,
    pooled_size=1,
    hidden_features=None,
    dropout=0.0,
)


class VGG(ImageClassifier2D):
    """VGG with batch norm; ``features`` and ``classifier`` are flat ``nn.Sequential``s."""

    classifier_name = "classifier"

    def __init__(
        self,
        config: VGGConfig,
        num_classes: int = IMAGENET_NUM_CLASSES,
        in_channels: int = RGB_CHANNELS,
    ):
        super().__init__()
        if not config.stage_widths or not all(config.stage_widths):
            raise ValueError(f"every VGG stage needs at least one conv, got {config.stage_widths}")
        self.config = config
        self.num_classes = num_classes
        self.features, self.num_features = _make_features(config, in_channels)
        self.avgpool = nn.AdaptiveAvgPool2d((config.pooled_size, config.pooled_size))
        self.classifier = _make_classifier(config, self.num_features, num_classes)
        _init_like_torchvision(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(features), 1))


def _make_features(config: VGGConfig, in_channels: int) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    channels = in_channels
    last_stage = len(config.stage_widths) - 1
    for stage, widths in enumerate(config.stage_widths):
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, padding=1, bias=config.conv_bias),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        if stage < last_stage or config.pool_after_last_stage:
            layers.append(nn.MaxPool2d(kernel_size=POOL_SIZE, stride=POOL_SIZE))
    return nn.Sequential(*layers), channels


def _make_classifier(config: VGGConfig, num_features: int, num_classes: int) -> nn.Sequential:
    flat_features = num_features * config.pooled_size * config.pooled_size
    if config.hidden_features is None:
        return nn.Sequential(nn.Linear(flat_features, num_classes))
    hidden = config.hidden_features
    return nn.Sequential(
        nn.Linear(flat_features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(p=config.dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(p=config.dropout),
        nn.Linear(hidden, num_classes),
    )


def _init_like_torchvision(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, LINEAR_INIT_STD)
            nn.init.zeros_(module.bias)


@register_model_2d
def vgg_small(num_classes: int = IMAGENET_NUM_CLASSES, in_channels: int = RGB_CHANNELS) -> VGG:
    """Four stages of two conv-BN-ReLU (32/64/128/256 channels), global pool, one linear layer."""
    return VGG(VGG_SMALL_CONFIG, num_classes, in_channels)


@register_model_2d
def vgg11_bn(num_classes: int = IMAGENET_NUM_CLASSES, in_channels: int = RGB_CHANNELS) -> VGG:
    """torchvision's VGG-11 with batch norm (configuration A)."""
    return VGG(VGG11_CONFIG, num_classes, in_channels)


@register_model_2d
def vgg13_bn(num_classes: int = IMAGENET_NUM_CLASSES, in_channels: int = RGB_CHANNELS) -> VGG:
    """torchvision's VGG-13 with batch norm (configuration B)."""
    return VGG(VGG13_CONFIG, num_classes, in_channels)


@register_model_2d
def vgg16_bn(num_classes: int = IMAGENET_NUM_CLASSES, in_channels: int = RGB_CHANNELS) -> VGG:
    """torchvision's VGG-16 with batch norm (configuration D)."""
    return VGG(VGG16_CONFIG, num_classes, in_channels)


@register_model_2d
def vgg19_bn(num_classes: int = IMAGENET_NUM_CLASSES, in_channels: int = RGB_CHANNELS) -> VGG:
    """torchvision's VGG-19 with batch norm (configuration E)."""
    return VGG(VGG19_CONFIG, num_classes, in_channels)
