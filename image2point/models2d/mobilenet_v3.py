"""MobileNetV3-Large and -Small (Howard et al., ICCV 2019) with torchvision's module names and shapes.

``state_dict()`` keys and shapes equal those of torchvision's ``mobilenet_v3_large`` /
``mobilenet_v3_small`` (torchvision/models/mobilenetv3.py): ``features.0`` is the 3x3/2 stem
(Hardswish), ``features.1`` ... the inverted residual blocks (``features.N.block.*``: optional 1x1
expansion, kxk depthwise, optional squeeze-excitation with a hard-sigmoid gate, linear 1x1
projection), the last ``features`` entry the 1x1 conv to 6x the last block's width; the head pools
globally and applies ``classifier`` = Linear, Hardswish, Dropout(0.2), Linear. BatchNorm uses eps 1e-3
and momentum 0.01, as in torchvision.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from image2point.channels import RGB_CHANNELS
from image2point.models2d.blocks import (
    SE_REDUCTION,
    WIDTH_DIVISOR,
    ConvNormActivation,
    FeatureStackClassifier2D,
    ModuleFactory,
    SqueezeExcitation,
    init_like_torchvision_mobile,
    inverted_residual_layers,
    make_divisible,
)
from image2point.models2d.registry import (
    IMAGENET_NUM_CLASSES,
    register_known_weights,
    register_model_2d,
    torchvision_imagenet_weights,
)

LAST_CONV_EXPANSION = 6
DEFAULT_DROPOUT = 0.2
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


@dataclass(frozen=True)
class BottleneckConfig:
    """One row of Tables 1/2 of the paper: widths, depthwise kernel, SE, Hardswish (else ReLU), stride."""

    in_channels: int
    kernel: int
    expanded_channels: int
    out_channels: int
    use_se: bool
    hard_swish: bool
    stride: int

    def scaled(self, width_mult: float) -> BottleneckConfig:
        def scale(channels: int) -> int:
            return make_divisible(channels * width_mult, WIDTH_DIVISOR)

        return BottleneckConfig(
            scale(self.in_channels), self.kernel, scale(self.expanded_channels),
            scale(self.out_channels), self.use_se, self.hard_swish, self.stride,
        )


def _rows(*rows: tuple[int, int, int, int, bool, bool, int]) -> tuple[BottleneckConfig, ...]:
    return tuple(BottleneckConfig(*row) for row in rows)


RE, HS = False, True
LARGE_SETTING = _rows(
    (16, 3, 16, 16, False, RE, 1), (16, 3, 64, 24, False, RE, 2), (24, 3, 72, 24, False, RE, 1),
    (24, 5, 72, 40, True, RE, 2), (40, 5, 120, 40, True, RE, 1), (40, 5, 120, 40, True, RE, 1),
    (40, 3, 240, 80, False, HS, 2), (80, 3, 200, 80, False, HS, 1), (80, 3, 184, 80, False, HS, 1),
    (80, 3, 184, 80, False, HS, 1), (80, 3, 480, 112, True, HS, 1), (112, 3, 672, 112, True, HS, 1),
    (112, 5, 672, 160, True, HS, 2), (160, 5, 960, 160, True, HS, 1), (160, 5, 960, 160, True, HS, 1),
)
LARGE_LAST_CHANNEL = 1280
SMALL_SETTING = _rows(
    (16, 3, 16, 16, True, RE, 2), (16, 3, 72, 24, False, RE, 2), (24, 3, 88, 24, False, RE, 1),
    (24, 5, 96, 40, True, HS, 2), (40, 5, 240, 40, True, HS, 1), (40, 5, 240, 40, True, HS, 1),
    (40, 5, 120, 48, True, HS, 1), (48, 5, 144, 48, True, HS, 1), (48, 5, 288, 96, True, HS, 2),
    (96, 5, 576, 96, True, HS, 1), (96, 5, 576, 96, True, HS, 1),
)
SMALL_LAST_CHANNEL = 1024


class InvertedResidualV3(nn.Module):
    """MobileNetV3 bottleneck; ``block`` is the sequence, a residual add where shapes match."""

    def __init__(self, config: BottleneckConfig, norm_layer: ModuleFactory):
        super().__init__()
        self.use_res_connect = config.stride == 1 and config.in_channels == config.out_channels
        activation = nn.Hardswish if config.hard_swish else nn.ReLU
        expanded = config.expanded_channels
        squeeze_excitation = None
        if config.use_se:
            squeeze = make_divisible(expanded // SE_REDUCTION, WIDTH_DIVISOR)
            squeeze_excitation = SqueezeExcitation(expanded, squeeze, scale_activation=nn.Hardsigmoid)
        layers = inverted_residual_layers(config.in_channels, expanded, config.out_channels, config.kernel,
                                          config.stride, activation, norm_layer, squeeze_excitation)
        self.block = nn.Sequential(*layers)
        self.out_channels = config.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result = result + x
        return result


class MobileNetV3(FeatureStackClassifier2D):
    """MobileNetV3 built from a bottleneck table and the width of the classifier's hidden layer.

    Its stages are ``features.1`` ... (every block, then the last 1x1 conv)."""

    def __init__(
        self,
        setting: tuple[BottleneckConfig, ...],
        last_channel: int,
        num_classes: int = IMAGENET_NUM_CLASSES,
        in_channels: int = RGB_CHANNELS,
        dropout: float = DEFAULT_DROPOUT,
    ):
        super().__init__()
        if not setting:
            raise ValueError("MobileNetV3 needs at least one bottleneck")
        self.num_classes = num_classes
        norm_layer = partial(nn.BatchNorm2d, eps=BN_EPS, momentum=BN_MOMENTUM)
        layers: list[nn.Module] = [
            ConvNormActivation(in_channels, setting[0].in_channels, kernel_size=3, stride=2,
                               norm_layer=norm_layer, activation_layer=nn.Hardswish)
        ]
        layers += [InvertedResidualV3(config, norm_layer) for config in setting]
        self.num_features = LAST_CONV_EXPANSION * setting[-1].out_channels
        layers.append(ConvNormActivation(setting[-1].out_channels, self.num_features, kernel_size=1,
                                         norm_layer=norm_layer, activation_layer=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(self.num_features, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )
        init_like_torchvision_mobile(self)


def _build(
    setting: tuple[BottleneckConfig, ...],
    last_channel: int,
    num_classes: int,
    in_channels: int,
    width_mult: float,
    dropout: float,
) -> MobileNetV3:
    scaled = tuple(config.scaled(width_mult) for config in setting)
    hidden = make_divisible(last_channel * width_mult, WIDTH_DIVISOR)
    return MobileNetV3(scaled, hidden, num_classes, in_channels, dropout)


@register_model_2d
def mobilenet_v3_large(
    num_classes: int = IMAGENET_NUM_CLASSES,
    in_channels: int = RGB_CHANNELS,
    width_mult: float = 1.0,
    dropout: float = DEFAULT_DROPOUT,
) -> MobileNetV3:
    """torchvision's MobileNetV3-Large (5,483,032 parameters with 1000 classes)."""
    return _build(LARGE_SETTING, LARGE_LAST_CHANNEL, num_classes, in_channels, width_mult, dropout)


@register_model_2d
def mobilenet_v3_small(
    num_classes: int = IMAGENET_NUM_CLASSES,
    in_channels: int = RGB_CHANNELS,
    width_mult: float = 1.0,
    dropout: float = DEFAULT_DROPOUT,
) -> MobileNetV3:
    """torchvision's MobileNetV3-Small (2,542,856 parameters with 1000 classes)."""
    return _build(SMALL_SETTING, SMALL_LAST_CHANNEL, num_classes, in_channels, width_mult, dropout)


# torchvision's IMAGENET1K_V1 weights (file names and top-1 from torchvision 0.28's weight tables).
register_known_weights(torchvision_imagenet_weights("mobilenet_v3_large", "mobilenet_v3_large-8738ca79.pth", 74.042))
register_known_weights(torchvision_imagenet_weights("mobilenet_v3_small", "mobilenet_v3_small-047dcff4.pth", 67.668))
