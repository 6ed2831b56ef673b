"""CIFAR ResNet-20/32/44/56/110 (He et al. 2016, section 4.2) in the layout of the shared weights.

Module names follow akamaster/pytorch_resnet_cifar10, so its checkpoints load once the DataParallel
``module.`` prefix is stripped: a 3x3 stem of 16 channels (``conv1``, ``bn1``), three stages of
16/32/64 channels (``layer1..3``) of basic blocks, a global average pool and ``linear``. Where a
block changes shape, its shortcut is option A: subsample by the stride and zero-pad the new
channels. That is the parameter-free module ``ShortcutA`` here, so a converter can recognise it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from image2point.channels import RGB_CHANNELS
from image2point.models2d.registry import (
    CIFAR10_NUM_CLASSES,
    ImageClassifier2D,
    register_model_2d,
)

CIFAR_STAGE_WIDTHS = (16, 32, 64)
# Depth = 6n + 2: three stages of n two-conv blocks, plus the stem conv and the classifier.
CONVS_PER_BLOCK = 2
LAYERS_OUTSIDE_STAGES = 2


class ShortcutA(nn.Module):
    """Parameter-free shortcut: keep every ``stride``-th pixel, zero-pad channels symmetrically."""

    def __init__(self, stride: int, in_channels: int, out_channels: int):
        super().__init__()
        if stride < 1:
            raise ValueError(f"ShortcutA stride must be >= 1, got {stride}")
        if out_channels < in_channels:
            raise ValueError(
                f"ShortcutA can only add channels, got {in_channels} -> {out_channels}"
            )
        self.stride = stride
        self.in_channels = in_channels
        self.out_channels = out_channels
        added = out_channels - in_channels
        self.pad_before = added // 2
        self.pad_after = added - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        subsampled = x[:, :, :: self.stride, :: self.stride]
        # F.pad lists (left, right) pairs from the last dimension back: W, H, then channels.
        return F.pad(subsampled, (0, 0, 0, 0, self.pad_before, self.pad_after))

    def extra_repr(self) -> str:
        return (
            f"stride={self.stride}, in_channels={self.in_channels}, "
            f"out_channels={self.out_channels}"
        )


class CifarBasicBlock(nn.Module):
    """Two 3x3 conv-BN pairs plus a residual; ``shortcut`` is None where shapes already agree."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, channels, kernel_size=3, stride=stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (
            ShortcutA(stride, in_channels, channels)
            if stride != 1 or in_channels != channels
            else None
        )
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class CifarResNet(ImageClassifier2D):
    """ResNet for 32x32 images with ``blocks_per_stage`` basic blocks in each of three stages."""

    classifier_name = "linear"

    def __init__(
        self,
        blocks_per_stage: int,
        num_classes: int = CIFAR10_NUM_CLASSES,
        in_channels: int = RGB_CHANNELS,
    ):
        super().__init__()
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be >= 1, got {blocks_per_stage}")
        self.num_classes = num_classes
        stem_width = CIFAR_STAGE_WIDTHS[0]
        self.conv1 = nn.Conv2d(
            in_channels, stem_width, kernel_size=3, stride=1, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        channels_in = stem_width
        stages = []
        for index, width in enumerate(CIFAR_STAGE_WIDTHS):
            stride = 1 if index == 0 else 2
            blocks = [CifarBasicBlock(channels_in, width, stride)]
            blocks += [CifarBasicBlock(width, width) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            channels_in = width
        self.layer1, self.layer2, self.layer3 = stages
        self.num_features = channels_in
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = nn.Linear(channels_in, num_classes)
        for module in self.modules():
            # The reference implementation's init: Kaiming-normal (fan-in) on convs and the linear.
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        return self.layer3(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(self.avgpool(features), 1))


def blocks_per_stage_for_depth(depth: int) -> int:
    """Blocks per stage of a CIFAR ResNet of ``depth`` layers (depth must be 6n + 2)."""
    layers_per_block_row = CONVS_PER_BLOCK * len(CIFAR_STAGE_WIDTHS)
    blocks, remainder = divmod(depth - LAYERS_OUTSIDE_STAGES, layers_per_block_row)
    if remainder or blocks < 1:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1, got {depth}")
    return blocks


def cifar_resnet(
    depth: int, num_classes: int = CIFAR10_NUM_CLASSES, in_channels: int = RGB_CHANNELS
) -> CifarResNet:
    """CIFAR ResNet of any depth 6n + 2."""
    return CifarResNet(blocks_per_stage_for_depth(depth), num_classes, in_channels)


@register_model_2d
def cifar_resnet20(
    num_classes: int = CIFAR10_NUM_CLASSES, in_channels: int = RGB_CHANNELS
) -> CifarResNet:
    """CIFAR ResNet-20 (0.27M parameters)."""
    return cifar_resnet(20, num_classes, in_channels)


@register_model_2d
def cifar_resnet32(
    num_classes: int = CIFAR10_NUM_CLASSES, in_channels: int = RGB_CHANNELS
) -> CifarResNet:
    """CIFAR ResNet-32 (0.46M parameters)."""
    return cifar_resnet(32, num_classes, in_channels)


@register_model_2d
def cifar_resnet44(
    num_classes: int = CIFAR10_NUM_CLASSES, in_channels: int = RGB_CHANNELS
) -> CifarResNet:
    """CIFAR ResNet-44 (0.66M parameters)."""
    return cifar_resnet(44, num_classes, in_channels)


@register_model_2d
def cifar_resnet56(
    num_classes: int = CIFAR10_NUM_CLASSES, in_channels: int = RGB_CHANNELS
) -> CifarResNet:
    """CIFAR ResNet-56 (0.85M parameters)."""
    return cifar_resnet(56, num_classes, in_channels)


@register_model_2d
def cifar_resnet110(
    num_classes: int = CIFAR10_NUM_CLASSES, in_channels: int = RGB_CHANNELS
) -> CifarResNet:
    """CIFAR ResNet-110 (1.7M parameters)."""
    return cifar_resnet(110, num_classes, in_channels)
