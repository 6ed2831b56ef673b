"""Segmentation output layers: decoders from the deepest encoder level back to voxel resolution.

Both follow the paper's Appendix 6.4. The encoder hands over ``skips``: the input layer's full-resolution
output ``x_i`` first, then the last output of each coarser stride (the listings' ``x1 … x4``). Each
decoder level takes the result so far (``C_deeper`` channels) up one level with an inverse conv that
keeps its channel count, concatenates the skip (``C_skip``) and fuses the two down to ``C_skip``:

- ``unet`` (Listing 4): up-conv + BN + ReLU, then ``res(C_deeper + C_skip → C_skip)``,
  ``res(C_skip → C_skip)``.
- ``linear`` (Listing 6, "the simplest decoder"): up-conv alone, then one 3×3×3 conv + BN.

A level whose skip has the deeper input's stride has nothing to undo and no up-conv. That happens once
with the linear input layer (no strided conv): ``x_i`` and ``x1`` both sit at voxel resolution, so the
listings' fourth level (``decode4(cat(x_i, up4(x1_)))``) fuses ``x_i`` into the decoded ``x1_`` in
place. It keeps the listings' four fusion levels and their use of ``x_i``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from image2point.sparse.modules import (
    SparseBatchNorm,
    SparseConv3d,
    SparseInverseConv3d,
    SparseReLU,
    sparse_add,
)
from image2point.sparse.tensor import SparseTensor

CONV_KERNEL = 3
# Listings 4 and 6: ``sparse_deconv(C, C, k=2, s=2)``; each fine site has exactly one 2×2×2 parent. (The
# authors' spvcnn18.py uses k=3 for the first three up-convs; we follow the listing.)
UPSAMPLE_KERNEL = 2
# The authors' U-Net drops 30 % of the deepest features before the first up-conv (``self.dropout`` in
# core/models/collection/spvcnn18.py of chenfengxu714/image2point); Listing 4 does not say.
UNET_DROPOUT = 0.3


@dataclass(frozen=True)
class EncoderLevel:
    """One entry of the encoder's ``skips``: its channel count and stride (input voxels per site)."""

    channels: int
    stride: int


class SparseResidualBlock(nn.Module):
    """Listing 4's ``res_block`` ("as same as the conventional ResNet"): two 3×3×3 submanifold conv-BN
    with a residual, a 1×1 conv-BN projection when the channels change (the authors' spvcnn18.py uses a
    2×2×2 stride-1 kernel there; a conventional ResNet block, as the listing says, uses 1×1)."""

    def __init__(self, in_channels: int, out_channels: int, stride_mode: str = "floor"):
        super().__init__()
        self.conv1 = SparseConv3d(in_channels, out_channels, CONV_KERNEL, stride_mode=stride_mode)
        self.bn1 = SparseBatchNorm(out_channels)
        self.conv2 = SparseConv3d(out_channels, out_channels, CONV_KERNEL, stride_mode=stride_mode)
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


def concat_skip(up: SparseTensor, skip: SparseTensor) -> SparseTensor:
    """``cat(up, skip)`` along channels; both must hold the skip's sites in the skip's order."""
    if up.level != skip.level or up.num_sites != skip.num_sites:
        raise ValueError(f"decoder input at level {up.level} ({up.num_sites} sites) does not sit on its skip's "
                         f"sites (level {skip.level}, {skip.num_sites} sites)")
    return skip.replace_features(torch.cat([up.features, skip.features], 1))


class ResidualDecoderLevel(nn.Module):
    """Listing 4: ``up_i`` (k2 s2, channels kept), ``decode_i`` = two residual blocks.

    BN + ReLU after the up-conv: the listing is silent; the authors' ``BasicDeconvolutionBlock`` in
    core/models/collection/spvcnn18.py has them.
    """

    def __init__(self, deeper_channels: int, skip_channels: int, upsample: bool, stride_mode: str = "floor"):
        super().__init__()
        self.up = self.up_bn = None
        if upsample:
            self.up = SparseInverseConv3d(deeper_channels, deeper_channels, UPSAMPLE_KERNEL, stride_mode=stride_mode)
            self.up_bn = SparseBatchNorm(deeper_channels)
        self.relu = SparseReLU()
        self.blocks = nn.Sequential(
            SparseResidualBlock(deeper_channels + skip_channels, skip_channels, stride_mode),
            SparseResidualBlock(skip_channels, skip_channels, stride_mode),
        )

    def forward(self, x: SparseTensor, skip: SparseTensor) -> SparseTensor:
        if self.up is not None:
            x = self.relu(self.up_bn(self.up(x, skip)))
        return self.blocks(concat_skip(x, skip))


class LinearDecoderLevel(nn.Module):
    """Listing 6: ``up_i`` (k2 s2, channels kept, nothing after it), ``decode_i`` = 3×3×3 conv + BN.

    No nonlinearity anywhere, as in the listing (its ``sparse_bn(layer1_Idim)`` in ``decode1`` is read as
    the BN of that conv's output channels).
    """

    def __init__(self, deeper_channels: int, skip_channels: int, upsample: bool, stride_mode: str = "floor"):
        super().__init__()
        self.up = None
        if upsample:
            self.up = SparseInverseConv3d(deeper_channels, deeper_channels, UPSAMPLE_KERNEL, stride_mode=stride_mode)
        self.fuse = nn.Sequential(
            SparseConv3d(deeper_channels + skip_channels, skip_channels, CONV_KERNEL, stride_mode=stride_mode),
            SparseBatchNorm(skip_channels),
        )

    def forward(self, x: SparseTensor, skip: SparseTensor) -> SparseTensor:
        if self.up is not None:
            x = self.up(x, skip)
        return self.fuse(concat_skip(x, skip))


LevelFactory = Callable[[int, int, bool, str], nn.Module]


class SkipDecoder(nn.Module):
    """Decoder levels from the deepest skip up to ``x_i``, then a per-voxel FC (``output_layer``).

    ``levels`` describes ``skips`` (``x_i`` first); ``levels[i]``'s decoder level outputs
    ``levels[i].channels`` channels on the sites of ``skips[i]``.
    """

    def __init__(self, levels: list[EncoderLevel], num_classes: int, level_factory: LevelFactory,
                 stride_mode: str = "floor", dropout: float = 0.0):
        super().__init__()
        for finer, deeper in zip(levels, levels[1:]):
            if deeper.stride not in (finer.stride, 2 * finer.stride):
                raise ValueError(f"encoder strides {[level.stride for level in levels]} do not halve one at a time")
        self.dropout = nn.Dropout(dropout) if dropout else None
        self.levels = nn.ModuleList(
            level_factory(levels[i + 1].channels, levels[i].channels, levels[i + 1].stride != levels[i].stride,
                          stride_mode)
            for i in reversed(range(len(levels) - 1))
        )
        self.classifier = nn.Linear(levels[0].channels, num_classes)

    def forward(self, skips: list[SparseTensor]) -> torch.Tensor:
        """``skips`` as described by ``levels``; returns logits for each site of ``skips[0]``."""
        x = skips[-1]
        if self.dropout is not None:
            x = x.replace_features(self.dropout(x.features))
        for level, skip in zip(self.levels, reversed(skips[:-1])):
            x = level(x, skip)
        return self.classifier(x.features)


# ``model.head`` of a segmentation network → its decoder.
SEGMENTATION_HEADS: dict[str, type[SkipDecoder]] = {}


def register_segmentation_head(name: str):
    """Decorator: ``model.head=name`` of a segmentation network builds this decoder class."""

    def decorator(cls: type[SkipDecoder]) -> type[SkipDecoder]:
        SEGMENTATION_HEADS[name] = cls
        return cls

    return decorator


@register_segmentation_head("unet")
class UNetDecoder(SkipDecoder):
    """Listing 4: residual decoder levels; the authors' dropout on the deepest features."""

    def __init__(self, levels: list[EncoderLevel], num_classes: int, stride_mode: str = "floor"):
        super().__init__(levels, num_classes, ResidualDecoderLevel, stride_mode, UNET_DROPOUT)


@register_segmentation_head("linear")
class LinearDecoder(SkipDecoder):
    """Listing 6: up-conv, concat, conv + BN per level; no nonlinearity."""

    def __init__(self, levels: list[EncoderLevel], num_classes: int, stride_mode: str = "floor"):
        super().__init__(levels, num_classes, LinearDecoderLevel, stride_mode)
