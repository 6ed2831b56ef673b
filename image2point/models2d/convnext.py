"""ConvNeXt-T/S (Liu et al., CVPR 2022) with torchvision's module names, shapes and initialisation.

``state_dict()`` keys and shapes equal those of torchvision's ``convnext_tiny`` / ``convnext_small``
(torchvision/models/convnext.py): ``features.0`` is the 4x4/4 "patchify" stem (conv with bias, then
LayerNorm2d), ``features.1/3/5/7`` the four stages of ConvNeXt blocks and ``features.2/4/6`` the
downsampling layers between them (LayerNorm2d, 2x2/2 conv). A block (``features.S.B``) is ``block`` =
7x7 depthwise conv, permute to channels-last, LayerNorm, Linear to 4x, GELU, Linear back, permute
back; it is scaled per channel by ``layer_scale`` ([C, 1, 1], initialised to 1e-6) and added to its
input through stochastic depth (identity in eval mode; the drop probability rises linearly to
``stochastic_depth_prob`` at the last block). The head pools globally and applies ``classifier`` =
LayerNorm2d, Flatten, Linear. LayerNorms use eps 1e-6.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from image2point.channels import RGB_CHANNELS
from image2point.models2d.blocks import FeatureStackClassifier2D, LayerNorm2d, Permute, StochasticDepth
from image2point.models2d.registry import (
    IMAGENET_NUM_CLASSES,
    register_known_weights,
    register_model_2d,
    torchvision_imagenet_weights,
)

LN_EPS = 1e-6
LAYER_SCALE_INIT = 1e-6
PATCH_SIZE = 4
DEPTHWISE_KERNEL = 7
MLP_RATIO = 4
DOWNSAMPLE = 2
INIT_STD = 0.02
TINY_WIDTHS, TINY_DEPTHS = (96, 192, 384, 768), (3, 3, 9, 3)
SMALL_DEPTHS = (3, 3, 27, 3)


class CNBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7, LayerNorm, inverted MLP, layer scale, residual."""

    def __init__(self, dim: int, layer_scale: float, stochastic_depth_prob: float):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=DEPTHWISE_KERNEL, padding=DEPTHWISE_KERNEL // 2, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=LN_EPS),
            nn.Linear(dim, MLP_RATIO * dim),
            nn.GELU(),
            nn.Linear(MLP_RATIO * dim, dim),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stochastic_depth(self.layer_scale * self.block(x)) + x


class ConvNeXt(FeatureStackClassifier2D):
    """ConvNeXt with four stages of ``depths`` blocks at ``widths`` channels.

    Its stages are ``features.1`` ... ``features.7``: block stages alternating with the 2x2/2
    downsampling layers ``features.2/4/6``."""

    def __init__(
        self,
        widths: tuple[int, ...],
        depths: tuple[int, ...],
        num_classes: int = IMAGENET_NUM_CLASSES,
        in_channels: int = RGB_CHANNELS,
        stochastic_depth_prob: float = 0.0,
        layer_scale: float = LAYER_SCALE_INIT,
    ):
        super().__init__()
        if len(widths) != len(depths) or not widths:
            raise ValueError(f"one depth per stage width needed, got widths {widths}, depths {depths}")
        self.num_classes = num_classes
        norm_layer = partial(LayerNorm2d, eps=LN_EPS)
        stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], kernel_size=PATCH_SIZE, stride=PATCH_SIZE, padding=0, bias=True),
            norm_layer(widths[0]),
        )
        layers: list[nn.Module] = [stem]
        total_blocks = sum(depths)
        block_id = 0
        for stage, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            blocks = []
            for _ in range(depth):
                # torchvision: p * block_id / (total_blocks - 1), so the last block gets the full p.
                drop = stochastic_depth_prob * block_id / (total_blocks - 1.0) if total_blocks > 1 else 0.0
                blocks.append(CNBlock(width, layer_scale, drop))
                block_id += 1
            layers.append(nn.Sequential(*blocks))
            if stage + 1 < len(widths):
                layers.append(nn.Sequential(
                    norm_layer(width), nn.Conv2d(width, widths[stage + 1], kernel_size=DOWNSAMPLE, stride=DOWNSAMPLE)
                ))
        self.features = nn.Sequential(*layers)
        self.num_features = widths[-1]
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            norm_layer(self.num_features), nn.Flatten(1), nn.Linear(self.num_features, num_classes)
        )
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=INIT_STD)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        # The classifier flattens after its channel LayerNorm, which wants the pooled [B, C, 1, 1] map.
        return self.classifier(self.avgpool(features))


@register_model_2d
def convnext_tiny(
    num_classes: int = IMAGENET_NUM_CLASSES,
    in_channels: int = RGB_CHANNELS,
    stochastic_depth_prob: float = 0.1,
) -> ConvNeXt:
    """torchvision's ConvNeXt-T (28,589,128 parameters with 1000 classes)."""
    return ConvNeXt(TINY_WIDTHS, TINY_DEPTHS, num_classes, in_channels, stochastic_depth_prob)


@register_model_2d
def convnext_small(
    num_classes: int = IMAGENET_NUM_CLASSES,
    in_channels: int = RGB_CHANNELS,
    stochastic_depth_prob: float = 0.4,
) -> ConvNeXt:
    """torchvision's ConvNeXt-S (50,223,688 parameters with 1000 classes)."""
    return ConvNeXt(TINY_WIDTHS, SMALL_DEPTHS, num_classes, in_channels, stochastic_depth_prob)


# torchvision's IMAGENET1K_V1 weights (file names and top-1 from torchvision 0.28's weight tables).
register_known_weights(torchvision_imagenet_weights("convnext_tiny", "convnext_tiny-983f1562.pth", 82.52))
register_known_weights(torchvision_imagenet_weights("convnext_small", "convnext_small-0c510722.pth", 83.616))
