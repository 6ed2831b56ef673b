"""DenseNet-121/169 (Huang et al., CVPR 2017) with torchvision's module names, shapes and initialisation.

``state_dict()`` keys and shapes equal those of torchvision's ``densenet121`` / ``densenet169``
(torchvision/models/densenet.py): ``features`` = ``conv0`` (7x7/2), ``norm0``, ``relu0``, ``pool0``
(3x3/2 max), then ``denseblock1`` ... ``denseblock4`` separated by ``transition1`` ... ``transition3``
(BN, ReLU, 1x1 conv halving the channels, 2x2/2 average pool), then ``norm5``; ``classifier`` is one
Linear. A dense layer (``denseblockB.denselayerL``) is BN-ReLU-1x1 conv to ``bn_size`` x growth, then
BN-ReLU-3x3 conv to ``growth_rate`` channels, applied to the concatenation of all earlier outputs of
its block; a block returns the concatenation of its input and every layer's output.

The ReLU after ``norm5`` is a module here (``final_relu``, no parameters; torchvision calls
``F.relu`` in ``forward``) so that the whole feature extractor is a chain of modules.

torchvision's released DenseNet files predate the current names and spell ``norm1`` as ``norm.1``
(likewise ``relu.1``, ``conv.1``, ``norm.2``, ...); load them with :func:`legacy_densenet_key`
as the key map, which is what torchvision's own loader does with a regular expression.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from image2point.channels import RGB_CHANNELS
from image2point.models2d.registry import (
    IMAGENET_NUM_CLASSES,
    BackboneLayout,
    ImageClassifier2D,
    register_known_weights,
    register_model_2d,
    torchvision_imagenet_weights,
)

GROWTH_RATE = 32
BN_SIZE = 4
INIT_FEATURES = 64
BLOCK_CONFIGS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32)}
# torchvision's densenet._load_state_dict pattern: "denselayerN.norm.1.weight" -> "denselayerN.norm1.weight".
LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def legacy_densenet_key(key: str) -> str:
    """Rename a key of torchvision's released DenseNet files to the current module names."""
    match = LEGACY_KEY.match(key)
    return key if match is None else match.group(1) + match.group(2)


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv bottleneck then BN-ReLU-3x3 conv, on the concatenation of its inputs."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int, drop_rate: float):
        super().__init__()
        bottleneck = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, bottleneck, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bottleneck)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bottleneck, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)
        self.drop_rate = float(drop_rate)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        bottleneck = self.conv1(self.relu1(self.norm1(torch.cat(inputs, 1))))
        new_features = self.conv2(self.relu2(self.norm2(bottleneck)))
        if self.drop_rate > 0:
            new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
        return new_features


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers ``denselayer1`` ...; output: input and all new maps, concatenated."""

    def __init__(self, num_layers: int, in_channels: int, bn_size: int, growth_rate: int, drop_rate: float):
        super().__init__()
        for index in range(num_layers):
            layer = DenseLayer(in_channels + index * growth_rate, growth_rate, bn_size, drop_rate)
            self.add_module(f"denselayer{index + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN, ReLU, 1x1 conv, 2x2/2 average pool (``norm``, ``relu``, ``conv``, ``pool``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(ImageClassifier2D):
    """DenseNet-BC with the given number of layers per dense block."""

    classifier_name = "classifier"

    def __init__(
        self,
        block_config: tuple[int, ...],
        num_classes: int = IMAGENET_NUM_CLASSES,
        in_channels: int = RGB_CHANNELS,
        growth_rate: int = GROWTH_RATE,
        num_init_features: int = INIT_FEATURES,
        bn_size: int = BN_SIZE,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(in_channels, num_init_features, kernel_size=7, stride=2,
                                                    padding=3, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(num_init_features))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        channels = num_init_features
        for index, num_layers in enumerate(block_config, start=1):
            block = DenseBlock(num_layers, channels, bn_size, growth_rate, drop_rate)
            self.features.add_module(f"denseblock{index}", block)
            channels += num_layers * growth_rate
            if index != len(block_config):
                self.features.add_module(f"transition{index}", Transition(channels, channels // 2))
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.final_relu = nn.ReLU(inplace=True)
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)
            elif isinstance(module, nn.Linear):
                nn.init.constant_(module.bias, 0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_relu(self.features(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(features), 1))

    def backbone_layout(self) -> BackboneLayout:
        """Stem ``features.conv0/norm0/relu0/pool0``; stages: the dense blocks and transitions,
        ``features.norm5`` and ``final_relu``; head ``avgpool``, ``classifier``."""
        stem = ("features.conv0", "features.norm0", "features.relu0", "features.pool0")
        stages = tuple(f"features.{name}" for name in list(self.features._modules)[len(stem):])
        return BackboneLayout(stem, stages + ("final_relu",), ("avgpool", "classifier"))


@register_model_2d
def densenet121(num_classes: int = IMAGENET_NUM_CLASSES, in_channels: int = RGB_CHANNELS) -> DenseNet:
    """torchvision's DenseNet-121 (7,978,856 parameters with 1000 classes)."""
    return DenseNet(BLOCK_CONFIGS[121], num_classes, in_channels)


@register_model_2d
def densenet169(num_classes: int = IMAGENET_NUM_CLASSES, in_channels: int = RGB_CHANNELS) -> DenseNet:
    """torchvision's DenseNet-169 (14,149,480 parameters with 1000 classes)."""
    return DenseNet(BLOCK_CONFIGS[169], num_classes, in_channels)


# torchvision's IMAGENET1K_V1 weights (file names and top-1 from torchvision 0.28's weight tables).
register_known_weights(
    torchvision_imagenet_weights("densenet121", "densenet121-a639ec97.pth", 74.434, key_map=legacy_densenet_key)
)
register_known_weights(
    torchvision_imagenet_weights("densenet169", "densenet169-b2777c0a.pth", 75.6, key_map=legacy_densenet_key)
)
