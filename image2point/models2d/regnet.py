"""RegNetX/RegNetY (Radosavovic et al., CVPR 2020) with torchvision's module names and shapes.

``state_dict()`` keys and shapes equal those of torchvision's ``regnet_x_*`` / ``regnet_y_*``
(torchvision/models/regnet.py): ``stem`` (3x3/2 conv-BN-ReLU, 32 channels), ``trunk_output.block1``
... ``block4`` (stages of residual bottleneck blocks named ``block<stage>-<index>``), ``avgpool`` and
``fc``. A block is ``f`` = ``a`` (1x1), ``b`` (3x3 grouped, carrying the stride), ``se`` (RegNetY only,
squeeze width = 1/4 of the block's input width), ``c`` (1x1, no activation); ``proj`` (1x1 conv-BN)
on the shortcut where the shape changes; ReLU after the add.

The per-stage widths and depths come from the quantised linear rule of the paper (``w_0``, ``w_a``,
``w_m``, ``depth``, ``group_width``), computed with the same torch operations as torchvision so that
borderline roundings agree.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from image2point.channels import RGB_CHANNELS
from image2point.models2d.blocks import ConvNormActivation, SqueezeExcitation, make_divisible
from image2point.models2d.registry import (
    IMAGENET_NUM_CLASSES,
    BackboneLayout,
    ImageClassifier2D,
    register_known_weights,
    register_model_2d,
    torchvision_imagenet_weights,
)

STEM_WIDTH = 32
WIDTH_QUANTUM = 8
STAGE_STRIDE = 2
SE_RATIO = 0.25


@dataclass(frozen=True)
class RegNetStage:
    """Output width, depth, group width and bottleneck multiplier of one stage (stride 2)."""

    width: int
    depth: int
    group_width: int
    bottleneck_multiplier: float


@dataclass(frozen=True)
class RegNetParams:
    """A RegNet design: the paper's generator parameters and the SE ratio (None for RegNetX)."""

    depth: int
    w_0: int
    w_a: float
    w_m: float
    group_width: int
    se_ratio: float | None = None
    bottleneck_multiplier: float = 1.0

    def stages(self) -> tuple[RegNetStage, ...]:
        """Stage widths/depths: quantised linear block widths, grouped into runs of equal width, then
        widths adjusted so that bottleneck widths are multiples of the group width."""
        if self.w_a < 0 or self.w_0 <= 0 or self.w_m <= 1 or self.w_0 % WIDTH_QUANTUM:
            raise ValueError(f"invalid RegNet parameters {self}")
        # On the CPU explicitly: a model may be built under torch.device("meta"), and these are numbers.
        widths_cont = torch.arange(self.depth, device="cpu") * self.w_a + self.w_0
        capacity = torch.round(torch.log(widths_cont / self.w_0) / math.log(self.w_m))
        block_widths = (
            torch.round(torch.divide(self.w_0 * torch.pow(self.w_m, capacity), WIDTH_QUANTUM)) * WIDTH_QUANTUM
        ).int().tolist()
        stage_widths: list[int] = []
        stage_depths: list[int] = []
        for width in block_widths:
            if stage_widths and stage_widths[-1] == width:
                stage_depths[-1] += 1
            else:
                stage_widths.append(width)
                stage_depths.append(1)
        stages = []
        for width, depth in zip(stage_widths, stage_depths, strict=True):
            bottleneck = int(width * self.bottleneck_multiplier)
            group_width = min(self.group_width, bottleneck)
            bottleneck = make_divisible(bottleneck, group_width)
            stages.append(RegNetStage(int(bottleneck / self.bottleneck_multiplier), depth, group_width,
                                      self.bottleneck_multiplier))
        return tuple(stages)


REGNET_Y_400MF = RegNetParams(depth=16, w_0=48, w_a=27.89, w_m=2.09, group_width=8, se_ratio=SE_RATIO)
REGNET_Y_800MF = RegNetParams(depth=14, w_0=56, w_a=38.84, w_m=2.4, group_width=16, se_ratio=SE_RATIO)
REGNET_X_400MF = RegNetParams(depth=22, w_0=24, w_a=24.48, w_m=2.54, group_width=16)
REGNET_X_800MF = RegNetParams(depth=16, w_0=56, w_a=35.73, w_m=2.28, group_width=16)


class BottleneckTransform(nn.Sequential):
    """``a`` 1x1, ``b`` 3x3 grouped (stride), optional ``se``, ``c`` 1x1 without activation."""

    def __init__(self, width_in: int, width_out: int, stride: int, group_width: int,
                 bottleneck_multiplier: float, se_ratio: float | None):
        bottleneck = int(round(width_out * bottleneck_multiplier))
        groups = bottleneck // group_width
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["a"] = ConvNormActivation(width_in, bottleneck, kernel_size=1)
        layers["b"] = ConvNormActivation(bottleneck, bottleneck, kernel_size=3, stride=stride, groups=groups)
        if se_ratio:
            # The squeeze width is relative to the block's input, as in the paper.
            layers["se"] = SqueezeExcitation(bottleneck, int(round(se_ratio * width_in)))
        layers["c"] = ConvNormActivation(bottleneck, width_out, kernel_size=1, activation_layer=None)
        super().__init__(layers)


class ResBottleneckBlock(nn.Module):
    """``activation(proj(x) + f(x))``, ``proj`` only where width or resolution changes."""

    def __init__(self, width_in: int, width_out: int, stride: int, group_width: int,
                 bottleneck_multiplier: float, se_ratio: float | None):
        super().__init__()
        self.proj = None
        if width_in != width_out or stride != 1:
            self.proj = ConvNormActivation(width_in, width_out, kernel_size=1, stride=stride,
                                           activation_layer=None)
        self.f = BottleneckTransform(width_in, width_out, stride, group_width, bottleneck_multiplier, se_ratio)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.proj is None else self.proj(x)
        return self.activation(shortcut + self.f(x))


class RegNet(ImageClassifier2D):
    """RegNet: stem, the stages of ``params``, global pool, ``fc``."""

    classifier_name = "fc"

    def __init__(self, params: RegNetParams, num_classes: int = IMAGENET_NUM_CLASSES,
                 in_channels: int = RGB_CHANNELS):
        super().__init__()
        self.num_classes = num_classes
        self.stem = ConvNormActivation(in_channels, STEM_WIDTH, kernel_size=3, stride=2)
        width = STEM_WIDTH
        stages: list[tuple[str, nn.Module]] = []
        for index, stage in enumerate(params.stages(), start=1):
            blocks: OrderedDict[str, nn.Module] = OrderedDict()
            for block in range(stage.depth):
                blocks[f"block{index}-{block}"] = ResBottleneckBlock(
                    width if block == 0 else stage.width, stage.width, STAGE_STRIDE if block == 0 else 1,
                    stage.group_width, stage.bottleneck_multiplier, params.se_ratio,
                )
            stages.append((f"block{index}", nn.Sequential(blocks)))
            width = stage.width
        self.trunk_output = nn.Sequential(OrderedDict(stages))
        self.num_features = width
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width, num_classes)
        _init_like_torchvision(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk_output(self.stem(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.avgpool(features).flatten(start_dim=1))

    def backbone_layout(self) -> BackboneLayout:
        """Stem ``stem``; stages ``trunk_output.block1`` ... ``block4``; head ``avgpool``, ``fc``."""
        stages = tuple(f"trunk_output.{name}" for name in self.trunk_output._modules)
        return BackboneLayout(("stem",), stages, ("avgpool", "fc"))


def _init_like_torchvision(model: nn.Module) -> None:
    """ResNet-style: conv weights N(0, sqrt(2 / fan_out)), unit BatchNorm, N(0, 0.01) classifier."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
            nn.init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.01)
            nn.init.zeros_(module.bias)


@register_model_2d
def regnet_y_400mf(num_classes: int = IMAGENET_NUM_CLASSES, in_channels: int = RGB_CHANNELS) -> RegNet:
    """torchvision's RegNetY-400MF (4,344,144 parameters with 1000 classes)."""
    return RegNet(REGNET_Y_400MF, num_classes, in_channels)


@register_model_2d
def regnet_y_800mf(num_classes: int = IMAGENET_NUM_CLASSES, in_channels: int = RGB_CHANNELS) -> RegNet:
    """torchvision's RegNetY-800MF (6,432,512 parameters with 1000 classes)."""
    return RegNet(REGNET_Y_800MF, num_classes, in_channels)


@register_model_2d
def regnet_x_400mf(num_classes: int = IMAGENET_NUM_CLASSES, in_channels: int = RGB_CHANNELS) -> RegNet:
    """torchvision's RegNetX-400MF (5,495,976 parameters with 1000 classes)."""
    return RegNet(REGNET_X_400MF, num_classes, in_channels)


@register_model_2d
def regnet_x_800mf(num_classes: int = IMAGENET_NUM_CLASSES, in_channels: int = RGB_CHANNELS) -> RegNet:
    """torchvision's RegNetX-800MF (7,259,656 parameters with 1000 classes)."""
    return RegNet(REGNET_X_800MF, num_classes, in_channels)


# torchvision's IMAGENET1K_V1 weights (file names and top-1 from torchvision 0.28's weight tables).
register_known_weights(torchvision_imagenet_weights("regnet_y_400mf", "regnet_y_400mf-c65dace8.pth", 74.046))
register_known_weights(torchvision_imagenet_weights("regnet_y_800mf", "regnet_y_800mf-1b27b58c.pth", 76.42))
register_known_weights(torchvision_imagenet_weights("regnet_x_400mf", "regnet_x_400mf-adf1edd5.pth", 72.834))
register_known_weights(torchvision_imagenet_weights("regnet_x_800mf", "regnet_x_800mf-ad17e45c.pth", 75.212))
