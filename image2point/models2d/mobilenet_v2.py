"""MobileNetV2 (Sandler et al., CVPR 2018) with torchvision's module names, shapes and initialisation.

``state_dict()`` keys and shapes equal those of torchvision's ``mobilenet_v2`` (``features.N`` and
``classifier.1``; torchvision/models/mobilenetv2.py), so its checkpoints load by name. ``features.0`` is
the 3x3/2 stem, ``features.1`` ... ``features.17`` the inverted residual blocks (keys
``features.N.conv.*``), ``features.18`` the final 1x1 conv to 1280 channels; the head pools globally and
applies ``classifier`` = Dropout(0.2), Linear.
"""

from __future__ import annotations

import torch
from torch import nn

from image2point.channels import RGB_CHANNELS
from image2point.models2d.blocks import (
    WIDTH_DIVISOR,
    ConvNormActivation,
    FeatureStackClassifier2D,
    init_like_torchvision_mobile,
    make_divisible,
)
from image2point.models2d.registry import (
    IMAGENET_NUM_CLASSES,
    register_known_weights,
    register_model_2d,
    torchvision_imagenet_weights,
)

STEM_WIDTH = 32
LAST_WIDTH = 1280
DEFAULT_DROPOUT = 0.2
# (expansion t, output channels c, repeats n, first stride s): Table 2 of the paper.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """1x1 expansion (unless t = 1), 3x3 depthwise, linear 1x1 projection; residual where shapes match.

    ``conv`` holds them as torchvision does: ConvNormActivation blocks with ReLU6, then a bare Conv2d
    and BatchNorm2d for the projection.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = int(round(in_channels * expand_ratio))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormActivation(in_channels, hidden, kernel_size=1, activation_layer=nn.ReLU6))
        layers += [
            ConvNormActivation(hidden, hidden, stride=stride, groups=hidden, activation_layer=nn.ReLU6),
            nn.Conv2d(hidden, out_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(FeatureStackClassifier2D):
    """MobileNetV2; ``width_mult`` scales every width (rounded to multiples of 8).

    Its stages are ``features.1`` ... (every block, then the last 1x1 conv)."""

    def __init__(
        self,
        num_classes: int = IMAGENET_NUM_CLASSES,
        in_channels: int = RGB_CHANNELS,
        width_mult: float = 1.0,
        dropout: float = DEFAULT_DROPOUT,
    ):
        super().__init__()
        self.num_classes = num_classes
        width = make_divisible(STEM_WIDTH * width_mult, WIDTH_DIVISOR)
        self.num_features = make_divisible(LAST_WIDTH * max(1.0, width_mult), WIDTH_DIVISOR)
        layers: list[nn.Module] = [
            ConvNormActivation(in_channels, width, stride=2, activation_layer=nn.ReLU6)
        ]
        for expand_ratio, channels, repeats, first_stride in INVERTED_RESIDUAL_SETTING:
            out_width = make_divisible(channels * width_mult, WIDTH_DIVISOR)
            for index in range(repeats):
                stride = first_stride if index == 0 else 1
                layers.append(InvertedResidual(width, out_width, stride, expand_ratio))
                width = out_width
        layers.append(
            ConvNormActivation(width, self.num_features, kernel_size=1, activation_layer=nn.ReLU6)
        )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))
        init_like_torchvision_mobile(self)


@register_model_2d
def mobilenet_v2(
    num_classes: int = IMAGENET_NUM_CLASSES,
    in_channels: int = RGB_CHANNELS,
    width_mult: float = 1.0,
    dropout: float = DEFAULT_DROPOUT,
) -> MobileNetV2:
    """torchvision's MobileNetV2 (3,504,872 parameters with 1000 classes)."""
    return MobileNetV2(num_classes, in_channels, width_mult, dropout)


# torchvision's IMAGENET1K_V1 weights (file names and top-1 from torchvision 0.28's weight tables).
register_known_weights(torchvision_imagenet_weights("mobilenet_v2", "mobilenet_v2-b0353104.pth", 71.878))
