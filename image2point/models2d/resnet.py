"""ImageNet ResNet-18/34/50/101/152 with torchvision's module names, shapes and initialisation.

``state_dict()`` keys and shapes equal torchvision's ``resnetNN`` exactly, so torchvision
checkpoints load without renaming. Every layer is a named submodule (one ``relu`` per block,
applied twice, as in torchvision) so a converter can walk the tree and rebuild it in 3D.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from image2point.channels import RGB_CHANNELS
from image2point.models2d.registry import (
    IMAGENET_NUM_CLASSES,
    ImageClassifier2D,
    ModelBuilder2D,
    register_model_2d,
)

STEM_WIDTH = 64
STEM_KERNEL = 7
STAGE_WIDTHS = (64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4

BASIC_STAGE_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
BOTTLENECK_STAGE_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias (a BatchNorm follows)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Sequential | None = None,
    ):
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, as torchvision's V1.5), 1x1 expand, residual."""

    expansion = BOTTLENECK_EXPANSION

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Sequential | None = None,
    ):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = conv1x1(in_channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = conv1x1(channels, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


ResidualBlock = type[BasicBlock] | type[Bottleneck]


class ResNet(ImageClassifier2D):
    """ImageNet ResNet: 7x7/2 stem, 3x3/2 max pool, four residual stages, global pool, ``fc``."""

    classifier_name = "fc"

    def __init__(
        self,
        block: ResidualBlock,
        stage_depths: Sequence[int],
        num_classes: int = IMAGENET_NUM_CLASSES,
        in_channels: int = RGB_CHANNELS,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        if len(stage_depths) != len(STAGE_WIDTHS):
            raise ValueError(f"ResNet needs {len(STAGE_WIDTHS)} stage depths, got {stage_depths}")
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(
            in_channels,
            STEM_WIDTH,
            kernel_size=STEM_KERNEL,
            stride=2,
            padding=STEM_KERNEL // 2,
            bias=False,
        )
        self.bn1 = nn.BatchNorm2d(STEM_WIDTH)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels_in = STEM_WIDTH
        stages = []
        for index, (width, depth) in enumerate(zip(STAGE_WIDTHS, stage_depths, strict=True)):
            stride = 1 if index == 0 else 2
            stages.append(_make_stage(block, channels_in, width, depth, stride))
            channels_in = width * block.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_features = channels_in
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels_in, num_classes)
        _init_like_torchvision(self, zero_init_residual)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(features), 1))


def _make_stage(
    block: ResidualBlock, in_channels: int, channels: int, depth: int, stride: int
) -> nn.Sequential:
    out_channels = channels * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels)
        )
    blocks: list[nn.Module] = [block(in_channels, channels, stride, downsample)]
    blocks += [block(out_channels, channels) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


def _init_like_torchvision(model: nn.Module, zero_init_residual: bool) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    if zero_init_residual:
        # Each residual branch then starts as zero, so every block starts as the identity.
        for module in model.modules():
            if isinstance(module, Bottleneck):
                nn.init.zeros_(module.bn3.weight)
            elif isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)


def _register_resnet(
    depth: int, block: ResidualBlock, stage_depths: Sequence[int], parameters: str
) -> ModelBuilder2D:
    """Register ``resnet{depth}``: the same builder for every depth, named so the registry and
    checkpoint tables find it."""

    def build(
        num_classes: int = IMAGENET_NUM_CLASSES,
        in_channels: int = RGB_CHANNELS,
        zero_init_residual: bool = False,
    ) -> ResNet:
        return ResNet(block, stage_depths, num_classes, in_channels, zero_init_residual)

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    build.__doc__ = f"ResNet-{depth} ({parameters} parameters with 1000 classes)."
    return register_model_2d(build)


resnet18 = _register_resnet(18, BasicBlock, BASIC_STAGE_DEPTHS[18], "11.7M")
resnet34 = _register_resnet(34, BasicBlock, BASIC_STAGE_DEPTHS[34], "21.8M")
resnet50 = _register_resnet(50, Bottleneck, BOTTLENECK_STAGE_DEPTHS[50], "25.6M")
resnet101 = _register_resnet(101, Bottleneck, BOTTLENECK_STAGE_DEPTHS[101], "44.5M")
resnet152 = _register_resnet(152, Bottleneck, BOTTLENECK_STAGE_DEPTHS[152], "60.2M")
