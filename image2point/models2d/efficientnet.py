"""EfficientNet-B0/B1 (Tan & Le, ICML 2019) with torchvision's module names, shapes and initialisation.

``state_dict()`` keys and shapes equal those of torchvision's ``efficientnet_b0`` / ``efficientnet_b1``
(torchvision/models/efficientnet.py): ``features.0`` is the 3x3/2 conv-BN-SiLU stem, ``features.1`` ...
``features.7`` the seven stages of MBConv blocks (``features.S.B.block.*``: optional 1x1 expansion,
kxk depthwise, squeeze-excitation with SiLU and a sigmoid gate, linear 1x1 projection),
``features.8`` the 1x1 conv to 4x the last width; the head pools globally and applies ``classifier``
= Dropout, Linear. Residual branches carry stochastic depth whose drop probability rises linearly
with the block index to ``stochastic_depth_prob`` (0.2) x (blocks before it / all blocks); it is the
identity in eval mode, as in torchvision.
"""

from __future__ import annotations

import math
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
    SqueezeExcitation,
    StochasticDepth,
    inverted_residual_layers,
    make_divisible,
)
from image2point.models2d.registry import (
    IMAGENET_NUM_CLASSES,
    register_known_weights,
    register_model_2d,
    torchvision_imagenet_weights,
)

LAST_CONV_EXPANSION = 4
DEFAULT_STOCHASTIC_DEPTH = 0.2


@dataclass(frozen=True)
class MBConvStage:
    """One row of Table 1 of the paper: expansion, kernel, first stride, widths, number of blocks."""

    expand_ratio: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    num_layers: int

    def scaled(self, width_mult: float, depth_mult: float) -> MBConvStage:
        return MBConvStage(
            self.expand_ratio, self.kernel, self.stride,
            make_divisible(self.in_channels * width_mult, WIDTH_DIVISOR),
            make_divisible(self.out_channels * width_mult, WIDTH_DIVISOR),
            int(math.ceil(self.num_layers * depth_mult)),
        )


B0_STAGES = (
    MBConvStage(1, 3, 1, 32, 16, 1),
    MBConvStage(6, 3, 2, 16, 24, 2),
    MBConvStage(6, 5, 2, 24, 40, 2),
    MBConvStage(6, 3, 2, 40, 80, 3),
    MBConvStage(6, 5, 1, 80, 112, 3),
    MBConvStage(6, 5, 2, 112, 192, 4),
    MBConvStage(6, 3, 1, 192, 320, 1),
)


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-excitation; residual (with stochastic depth) where
    stride is 1 and widths agree."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: int,
        kernel: int,
        stride: int,
        stochastic_depth_prob: float,
    ):
        super().__init__()
        self.use_res_connect = stride == 1 and in_channels == out_channels
        expanded = make_divisible(in_channels * expand_ratio, WIDTH_DIVISOR)
        squeeze = max(1, in_channels // SE_REDUCTION)
        squeeze_excitation = SqueezeExcitation(expanded, squeeze, activation=partial(nn.SiLU, inplace=True))
        layers = inverted_residual_layers(in_channels, expanded, out_channels, kernel, stride, nn.SiLU,
                                          squeeze_excitation=squeeze_excitation)
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result = self.stochastic_depth(result) + x
        return result


class EfficientNet(FeatureStackClassifier2D):
    """EfficientNet (V1) from a stage table; blocks after a stage's first take stride 1.

    ``features.1`` ... ``features.7`` are the stages, ``features.8`` the last 1x1 conv."""

    def __init__(
        self,
        stages: tuple[MBConvStage, ...],
        dropout: float,
        num_classes: int = IMAGENET_NUM_CLASSES,
        in_channels: int = RGB_CHANNELS,
        stochastic_depth_prob: float = DEFAULT_STOCHASTIC_DEPTH,
    ):
        super().__init__()
        if not stages:
            raise ValueError("EfficientNet needs at least one stage")
        self.num_classes = num_classes
        layers: list[nn.Module] = [
            ConvNormActivation(in_channels, stages[0].in_channels, kernel_size=3, stride=2,
                               activation_layer=nn.SiLU)
        ]
        total_blocks = sum(stage.num_layers for stage in stages)
        block_id = 0
        for stage in stages:
            blocks = []
            for index in range(stage.num_layers):
                width_in = stage.in_channels if index == 0 else stage.out_channels
                stride = stage.stride if index == 0 else 1
                drop = stochastic_depth_prob * float(block_id) / total_blocks
                blocks.append(MBConv(width_in, stage.out_channels, stage.expand_ratio, stage.kernel,
                                     stride, drop))
                block_id += 1
            layers.append(nn.Sequential(*blocks))
        self.num_features = LAST_CONV_EXPANSION * stages[-1].out_channels
        layers.append(ConvNormActivation(stages[-1].out_channels, self.num_features, kernel_size=1,
                                         activation_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout, inplace=True), nn.Linear(self.num_features, num_classes)
        )
        _init_like_torchvision(self)


def _init_like_torchvision(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init_range = 1.0 / math.sqrt(module.out_features)
            nn.init.uniform_(module.weight, -init_range, init_range)
            nn.init.zeros_(module.bias)


def _scaled_stages(width_mult: float, depth_mult: float) -> tuple[MBConvStage, ...]:
    return tuple(stage.scaled(width_mult, depth_mult) for stage in B0_STAGES)


@register_model_2d
def efficientnet_b0(
    num_classes: int = IMAGENET_NUM_CLASSES,
    in_channels: int = RGB_CHANNELS,
    dropout: float = 0.2,
    stochastic_depth_prob: float = DEFAULT_STOCHASTIC_DEPTH,
) -> EfficientNet:
    """torchvision's EfficientNet-B0 (5,288,548 parameters with 1000 classes)."""
    return EfficientNet(_scaled_stages(1.0, 1.0), dropout, num_classes, in_channels, stochastic_depth_prob)


@register_model_2d
def efficientnet_b1(
    num_classes: int = IMAGENET_NUM_CLASSES,
    in_channels: int = RGB_CHANNELS,
    dropout: float = 0.2,
    stochastic_depth_prob: float = DEFAULT_STOCHASTIC_DEPTH,
) -> EfficientNet:
    """torchvision's EfficientNet-B1: B0 with 1.1x depth (7,794,184 parameters with 1000 classes)."""
    return EfficientNet(_scaled_stages(1.0, 1.1), dropout, num_classes, in_channels, stochastic_depth_prob)


# torchvision's IMAGENET1K_V1 weights (file names and top-1 from torchvision 0.28's weight tables).
register_known_weights(
    torchvision_imagenet_weights("efficientnet_b0", "efficientnet_b0_rwightman-7f5810bc.pth", 77.692)
)
register_known_weights(
    torchvision_imagenet_weights("efficientnet_b1", "efficientnet_b1_rwightman-bac287d4.pth", 78.642, input_size=240)
)
