"""The layers a transferred network adds around its inflated backbone: input layers and output heads.

Paper Appendix 6.4: the *input layer* maps point features (xyz, colour, intensity) to the channels the
first pretrained stage expects; the *output layer* is a classifier (global average pool + FC-BN-ReLU-FC)
or a U-Net decoder of inverse convs and residual blocks with skip connections (segmentation). The
"linear" variants use one conv + BN in and one FC out.
"""

from __future__ import annotations

import torch
from torch import nn

from image2point.sparse import functional as SF
from image2point.sparse.kernel_map import DOWNSAMPLE_FACTOR, build_kernel_map
from image2point.sparse.modules import (
    SparseBatchNorm,
    SparseConv3d,
    SparseInverseConv3d,
    SparseReLU,
    sparse_add,
)
from image2point.sparse.tensor import SparseTensor

INPUT_KERNEL = 3
# Parent-child kernel of the decoder's inverse convs: each fine site has exactly one 2×2×2 parent.
UPSAMPLE_KERNEL = 2
HEAD_HIDDEN_CHANNELS = 256


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1, stride_mode: str = "floor",
                 kernel_size: int = INPUT_KERNEL) -> nn.Sequential:
    return nn.Sequential(
        SparseConv3d(in_channels, out_channels, kernel_size, stride, stride_mode=stride_mode),
        SparseBatchNorm(out_channels),
        SparseReLU(),
    )


class InputLayer(nn.Module):
    """``full_resolution`` convs at stride 1, then ``downsample`` (None for the linear variant).

    ``conv3`` (Listing 3): two submanifold conv-BN-ReLU at voxel resolution and a strided one;
    ``linear`` (Listing 5): one submanifold conv + BN, no nonlinearity, no downsampling.
    """

    def __init__(self, in_features: int, out_channels: int, kind: str = "conv3", stride_mode: str = "floor"):
        super().__init__()
        if kind == "conv3":
            self.full_resolution = nn.Sequential(
                conv_bn_relu(in_features, out_channels, stride_mode=stride_mode),
                conv_bn_relu(out_channels, out_channels, stride_mode=stride_mode),
            )
            self.downsample = conv_bn_relu(out_channels, out_channels, DOWNSAMPLE_FACTOR, stride_mode)
        elif kind == "linear":
            self.full_resolution = nn.Sequential(
                SparseConv3d(in_features, out_channels, INPUT_KERNEL, stride_mode=stride_mode),
                SparseBatchNorm(out_channels),
            )
            self.downsample = None
        else:
            raise ValueError(f"unknown input layer {kind!r}; choose 'conv3' or 'linear'")
        self.kind = kind
        self.out_stride = DOWNSAMPLE_FACTOR if self.downsample is not None else 1

    def forward(self, x: SparseTensor) -> SparseTensor:
        x = self.full_resolution(x)
        return x if self.downsample is None else self.downsample(x)


class ClassificationHead(nn.Module):
    """Global average pool, then FC-BN-ReLU-FC (``mlp``) or a single FC (``linear``)."""

    def __init__(self, in_channels: int, num_classes: int, kind: str = "mlp",
                 hidden_channels: int = HEAD_HIDDEN_CHANNELS):
        super().__init__()
        if kind == "mlp":
            self.classifier = nn.Sequential(
                nn.Linear(in_channels, hidden_channels, bias=False),
                nn.BatchNorm1d(hidden_channels),
                nn.ReLU(inplace=True),
                nn.Linear(hidden_channels, num_classes),
            )
        elif kind == "linear":
            self.classifier = nn.Sequential(nn.Linear(in_channels, num_classes))
        else:
            raise ValueError(f"unknown classification head {kind!r}; choose 'mlp' or 'linear'")
        self.kind = kind

    def forward(self, x: SparseTensor) -> torch.Tensor:
        return self.classifier(SF.global_avg_pool(x))


class SparseResidualBlock(nn.Module):
    """Two 3×3×3 submanifold conv-BN with a residual (1×1 projection when channels change)."""

    def __init__(self, in_channels: int, out_channels: int, stride_mode: str = "floor"):
        super().__init__()
        self.conv1 = SparseConv3d(in_channels, out_channels, INPUT_KERNEL, stride_mode=stride_mode)
        self.bn1 = SparseBatchNorm(out_channels)
        self.conv2 = SparseConv3d(out_channels, out_channels, INPUT_KERNEL, stride_mode=stride_mode)
        self.bn2 = SparseBatchNorm(out_channels)
        self.relu = SparseReLU()
        self.projection = None
        if in_channels != out_channels:
            self.projection = nn.Sequential(
                SparseConv3d(in_channels, out_channels, 1, stride_mode=stride_mode), SparseBatchNorm(out_channels))

    def forward(self, x: SparseTensor) -> SparseTensor:
        identity = x if self.projection is None else self.projection(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(sparse_add(out, identity))


class DecoderLevel(nn.Module):
    """Up one level: inverse conv onto the skip's sites, concatenate the skip, a residual block."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, stride_mode: str = "floor"):
        super().__init__()
        self.up = SparseInverseConv3d(in_channels, out_channels, UPSAMPLE_KERNEL, stride_mode=stride_mode)
        self.up_bn = SparseBatchNorm(out_channels)
        self.relu = SparseReLU()
        self.block = SparseResidualBlock(out_channels + skip_channels, out_channels, stride_mode)

    def forward(self, x: SparseTensor, skip: SparseTensor) -> SparseTensor:
        up = self.relu(self.up_bn(self.up(x, skip)))
        return self.block(skip.replace_features(torch.cat([up.features, skip.features], 1)))


class UNetDecoder(nn.Module):
    """Decodes from the deepest level back to voxel resolution (Listing 4), then a per-voxel FC.

    ``level_channels[i]`` is the channel count of the encoder's output at stride ``2**i``; the decoder
    output at each level has that level's channel count.
    """

    def __init__(self, level_channels: list[int], num_classes: int, stride_mode: str = "floor"):
        super().__init__()
        self.levels = nn.ModuleList(
            DecoderLevel(level_channels[i + 1], level_channels[i], level_channels[i], stride_mode)
            for i in reversed(range(len(level_channels) - 1))
        )
        self.classifier = nn.Linear(level_channels[0], num_classes)

    def forward(self, skips: list[SparseTensor]) -> torch.Tensor:
        """``skips[i]`` at stride ``2**i``; returns logits for each site of ``skips[0]``."""
        x = skips[-1]
        for level, skip in zip(self.levels, reversed(skips[:-1])):
            x = level(x, skip)
        return self.classifier(x.features)


class NearestUpsampleHead(nn.Module):
    """Linear segmentation output (Listing 6): copy the deepest features to every voxel, one FC."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, skips: list[SparseTensor]) -> torch.Tensor:
        x = skips[-1]
        for target in reversed(skips[:-1]):
            x = upsample_nearest(x, target)
        return self.classifier(x.features)


def upsample_nearest(x: SparseTensor, target: SparseTensor) -> SparseTensor:
    """Each site of ``target`` (one level finer) takes the features of its parent ``floor(c / 2)``.

    That parent exists under both stride conventions.
    """
    key = ("parent", target.level, x.level)
    cache = target.cache.kernel_maps
    if key not in cache:
        cache[key] = build_kernel_map(target.coords, x.coords, UPSAMPLE_KERNEL, DOWNSAMPLE_FACTOR)
    kernel_map = cache[key]
    if kernel_map.in_index.numel() != target.num_sites:
        raise ValueError("every fine site needs exactly one parent; are x and target adjacent levels?")
    parent = torch.empty(target.num_sites, dtype=torch.int64, device=x.device)
    parent[kernel_map.in_index] = kernel_map.out_index
    return target.replace_features(x.features[parent])
