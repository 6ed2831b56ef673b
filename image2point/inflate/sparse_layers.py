"""Sparse counterparts the graph converter needs beyond :mod:`image2point.sparse.modules`.

- :class:`SparsePatchConv3d`: a non-overlapping conv whose kernel equals its stride, 4 or more (ConvNeXt's
  4×4/4 "patchify" stem): each site feeds exactly one coarse site, ``floor(c / K)``.
- :class:`SparseLinear`, :class:`SparseDropout`: torch's modules on the features of each site (a
  channels-last map, e.g. ConvNeXt's inverted MLP between its two permutes).
- :class:`SparseStochasticDepth`: drops a residual branch for whole samples, as torchvision does for images.
- :class:`SparseGlobalAvgPool2d` / :class:`SparseGlobalMaxPool2d`: the global pools as ``AdaptiveAvgPool2d(1)``
  returns them, ``[B, C, 1, 1]``, so the 2D code after them (flatten, squeeze-and-excitation) runs unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from image2point.sparse import functional as SF
from image2point.sparse.backends import get_backend
from image2point.sparse.kernel_map import DOWNSAMPLE_FACTOR, KernelMap
from image2point.sparse.modules import SparseConv3d, SparseGlobalAvgPool, _OnFeatures
from image2point.sparse.tensor import SparseTensor

# Patch convs always place their outputs on the floor convention's sites: the only coarse sites of which
# every fine site is the child of exactly one.
PATCH_STRIDE_MODE = "floor"


def patch_levels(kernel_size: int) -> int:
    """How many halvings a patch conv of this kernel (= stride) spans; the kernel must be a power of 2."""
    levels = int(round(math.log2(kernel_size))) if kernel_size > 1 else 0
    if levels < 1 or DOWNSAMPLE_FACTOR**levels != kernel_size:
        raise ValueError(f"a patch conv's kernel (= stride) must be a power of 2 >= 2, got {kernel_size}")
    return levels


def _patch_map(x: SparseTensor, kernel_size: int) -> tuple[KernelMap, SparseTensor]:
    """The pairs (fine site, its coarse site ``floor(c / K)``) grouped by the tap ``c - K·q``, and an empty
    tensor on the coarse level (its coordinates and level)."""
    coarse, parent = x, None
    for _ in range(patch_levels(kernel_size)):
        children = SF.children_map(coarse, PATCH_STRIDE_MODE)
        coords = SF.coarser_coords(coarse, PATCH_STRIDE_MODE)
        parent = children.parent if parent is None else children.parent[parent]
        coarse = coarse.coarser(PATCH_STRIDE_MODE, coords, x.features.new_empty((coords.shape[0], 0)))
    k = kernel_size
    taps = x.coords[:, 1:] - k * coarse.coords[parent, 1:]
    tap = (taps[:, 0] * k + taps[:, 1]) * k + taps[:, 2]
    # Grouped by tap, outputs ascending within a tap: the order the backends expect.
    order = torch.argsort(tap * max(coarse.num_sites, 1) + parent)
    counts = torch.bincount(tap, minlength=k**3)
    kernel_map = KernelMap(order, parent[order], tuple(counts.tolist()), x.num_sites, coarse.num_sites, k)
    return kernel_map, coarse


def patch_conv3d(x: SparseTensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> SparseTensor:
    """``F.conv3d(dense, weight, stride=K)`` with ``K = weight.shape[-1]`` (no padding) at the coarse sites
    ``floor(c / K)``: every site of ``x`` meets the kernel at the tap ``c - K·floor(c / K)``."""
    kernel_size = weight.shape[-1]
    if weight.dim() != 5 or weight.shape[1] != x.num_channels:
        raise ValueError(f"weight must be [C_out, {x.num_channels}, K, K, K], got {tuple(weight.shape)}")
    key = ("patch", x.level, kernel_size, x.backend)
    cache = x.cache.kernel_maps
    if key not in cache:
        kernel_map, coarse = _patch_map(x, kernel_size)
        cache[key] = (get_backend(x.backend).prepare(kernel_map), coarse.coords, coarse.level)
    prepared, coords, level = cache[key]
    features = get_backend(x.backend).conv(x.features, weight, prepared)
    if bias is not None:
        features = features + bias
    return SparseTensor(features, coords, x.batch_size, x.backend, x.cache, level)


class SparsePatchConv3d(SparseConv3d):
    """Conv with kernel = stride = 2^L, L >= 2 (``Conv2d(kernel_size=4, stride=4)``); same parameters as a
    :class:`SparseConv3d` of that kernel size. Its output sits L levels down, on floor-convention sites."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = False):
        patch_levels(kernel_size)
        super().__init__(in_channels, out_channels, kernel_size, stride=kernel_size, bias=bias,
                         stride_mode=PATCH_STRIDE_MODE)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return patch_conv3d(x, self.conv_weight(), self.bias)


class SparseLinear(_OnFeatures, nn.Linear):
    """``nn.Linear`` on the features of each site (a channels-last map)."""


class SparseDropout(_OnFeatures, nn.Dropout):
    """``nn.Dropout`` on the features of each site."""


class SparseStochasticDepth(nn.Module):
    """Zero a sample's whole branch with probability ``p`` in training, scale survivors by ``1 / (1 - p)``
    (torchvision's ``StochasticDepth``, mode "row"); the identity in eval mode."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: SparseTensor) -> SparseTensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        keep = torch.empty(x.batch_size, 1, dtype=x.features.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            keep = keep / survival
        return SF.mul_per_sample(x, keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SparseGlobalAvgPool2d(SparseGlobalAvgPool):
    """``AdaptiveAvgPool2d(1)``: the mean over each sample's present sites, as a dense ``[B, C, 1, 1]``."""

    def forward(self, x: SparseTensor) -> torch.Tensor:
        return SF.global_avg_pool(x)[:, :, None, None]


class SparseGlobalMaxPool2d(nn.Module):
    """``AdaptiveMaxPool2d(1)``: the maximum over each sample's present sites, ``[B, C, 1, 1]``."""

    def forward(self, x: SparseTensor) -> torch.Tensor:
        return SF.global_max_pool(x)[:, :, None, None]
