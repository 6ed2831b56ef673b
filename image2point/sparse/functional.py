"""Functional sparse ops on :class:`SparseTensor`: convolution (submanifold, strided, inverse), pooling.

Every op looks up (or builds and caches) its kernel map in the tensor's coordinate cache, then hands
features, weights and the map to the tensor's backend. Weights are torch-style ``[C_out, C_in, K, K, K]``;
a result equals ``torch.nn.functional.conv3d`` (or ``conv_transpose3d``, ``max_pool3d``) of the dense
grid at the output's sites, with ``padding=(K - 1) // 2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch

from image2point.sparse.backends import get_backend
from image2point.sparse.kernel_map import (
    DOWNSAMPLE_FACTOR,
    STRIDE_MODES,
    build_kernel_map,
    downsample_coords,
)
from image2point.sparse.tensor import SparseTensor


def coarser_coords(x: SparseTensor, stride_mode: str) -> torch.Tensor:
    """Sites of the level below ``x`` (stride ×2) under ``stride_mode``, computed once per batch."""
    if stride_mode not in STRIDE_MODES:
        raise ValueError(f"unknown stride mode {stride_mode!r}; choose one of {STRIDE_MODES}")
    key = ("coords", x.level + (stride_mode,))
    cache = x.cache.kernel_maps
    if key not in cache:
        cache[key] = downsample_coords(x.coords, stride_mode)
    return cache[key]


def _prepared_map(x: SparseTensor, key: tuple, build) -> object:
    """The backend-ready kernel map for ``key``, built on first use and cached with the batch."""
    cache = x.cache.kernel_maps
    backend_key = (key, x.backend)
    if backend_key not in cache:
        if key not in cache:
            cache[key] = build()
        cache[backend_key] = get_backend(x.backend).prepare(cache[key])
    return cache[backend_key]


def _check_weight(x: SparseTensor, weight: torch.Tensor) -> int:
    if weight.dim() != 5 or len(set(weight.shape[2:])) != 1:
        raise ValueError(f"weight must be [C_out, C_in, K, K, K], got {tuple(weight.shape)}")
    if weight.shape[1] != x.num_channels:
        raise ValueError(f"weight expects {weight.shape[1]} input channels, features have {x.num_channels}")
    return weight.shape[2]


def conv3d(
    x: SparseTensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    stride_mode: str = "floor",
) -> SparseTensor:
    """Submanifold convolution (``stride=1``: output sites = input sites) or strided (``stride=2``)."""
    kernel_size = _check_weight(x, weight)
    out_coords, key = _output_sites(x, kernel_size, stride, stride_mode, "conv")
    prepared = _prepared_map(x, key, lambda: build_kernel_map(x.coords, out_coords, kernel_size, stride))
    features = get_backend(x.backend).conv(x.features, weight, prepared)
    if bias is not None:
        features = features + bias
    return _on_output_level(x, stride, stride_mode, out_coords, features)


def _output_sites(x: SparseTensor, kernel_size: int, stride: int, stride_mode: str, what: str):
    """Output coordinates and the kernel-map cache key of a stride-1 or stride-2 layer."""
    if stride == 1:
        return x.coords, ("subm", x.level, kernel_size)
    if stride == DOWNSAMPLE_FACTOR:
        return coarser_coords(x, stride_mode), ("down", x.level, stride_mode, kernel_size)
    raise ValueError(f"sparse {what} stride must be 1 or {DOWNSAMPLE_FACTOR}, got {stride}")


def _on_output_level(x: SparseTensor, stride: int, stride_mode: str, coords: torch.Tensor,
                     features: torch.Tensor) -> SparseTensor:
    return x.replace_features(features) if stride == 1 else x.coarser(stride_mode, coords, features)


def inverse_conv3d(
    x: SparseTensor,
    weight: torch.Tensor,
    target: SparseTensor,
    bias: torch.Tensor | None = None,
    stride_mode: str = "floor",
) -> SparseTensor:
    """Transposed convolution from ``x`` onto the sites of ``target``, the level above (stride ÷2).

    ``x`` must sit on the level that ``stride_mode`` derives from ``target``. The pairs are those of the
    strided map between the two levels read backwards (shared with an encoder conv of the same kernel
    size), i.e. the dense ``conv_transpose3d(stride=2, padding=(K - 1) // 2)`` at ``target``'s sites.
    ``weight`` is ``[C_out, C_in, K, K, K]`` with ``C_in`` the channels of ``x``.
    """
    kernel_size = _check_weight(x, weight)
    if x.level != target.level + (stride_mode,) or x.coords is not coarser_coords(target, stride_mode):
        raise ValueError(
            f"inverse conv needs x on the level below target under stride mode {stride_mode!r} "
            f"(x is at level {x.level}, target at {target.level})"
        )
    down_key = ("down", target.level, stride_mode, kernel_size)
    cache = target.cache.kernel_maps
    if down_key not in cache:
        cache[down_key] = build_kernel_map(target.coords, x.coords, kernel_size, DOWNSAMPLE_FACTOR)
    prepared = _prepared_map(x, ("up",) + down_key[1:], lambda: cache[down_key].transposed())
    features = get_backend(x.backend).conv(x.features, weight, prepared)
    if bias is not None:
        features = features + bias
    return target.replace_features(features)


def max_pool3d(x: SparseTensor, kernel_size: int, stride: int = 2, stride_mode: str = "floor") -> SparseTensor:
    """Max over each output's window of occupied input sites (padding ``(K - 1) // 2``)."""
    out_coords, key = _output_sites(x, kernel_size, stride, stride_mode, "max pool")
    prepared = _prepared_map(x, key, lambda: build_kernel_map(x.coords, out_coords, kernel_size, stride))
    features = get_backend(x.backend).max_pool(x.features, prepared)
    return _on_output_level(x, stride, stride_mode, out_coords, features)


def subsample(x: SparseTensor, stride_mode: str = "floor") -> SparseTensor:
    """Value of input site ``2q`` at each coarse site ``q`` (zero where ``2q`` is empty).

    The sparse counterpart of ``x[:, :, ::2, ::2]`` in the option-A shortcut of CIFAR ResNets, and
    equal to a 1×1×1 stride-2 convolution with identity weights.
    """
    out_coords = coarser_coords(x, stride_mode)
    key = ("down", x.level, stride_mode, 1)
    kernel_map = x.cache.kernel_maps.get(key)
    if kernel_map is None:
        kernel_map = build_kernel_map(x.coords, out_coords, 1, DOWNSAMPLE_FACTOR)
        x.cache.kernel_maps[key] = kernel_map
    features = x.features.new_zeros((out_coords.shape[0], x.num_channels))
    features = features.index_copy(0, kernel_map.out_index, x.features[kernel_map.in_index])
    return x.coarser(stride_mode, out_coords, features)


class ChildrenReduce(Enum):
    """How a coarse site ``q`` combines its children, the fine sites ``c`` with ``floor(c / 2) = q``."""

    SUM = "sum"
    MEAN = "mean"


@dataclass(frozen=True)
class ChildrenMap:
    """Each fine site's parent row on the coarse level, and how many children each coarse site has.

    ``floor(c / 2)`` is a coarse site under both stride conventions, so every fine site has a parent;
    a ``window`` site whose 2×2×2 block is empty has no children (count 0).
    """

    parent: torch.Tensor  # [N_fine] int64
    counts: torch.Tensor  # [N_coarse] int64


def children_map(x: SparseTensor, stride_mode: str) -> ChildrenMap:
    """The child → parent map from ``x``'s sites to the level below, built once per batch and level."""
    key = ("children", x.level, stride_mode)
    cache = x.cache.kernel_maps
    if key not in cache:
        out_coords = coarser_coords(x, stride_mode)
        parent_coords = x.coords.clone()
        parent_coords[:, 1:] = torch.div(x.coords[:, 1:], DOWNSAMPLE_FACTOR, rounding_mode="floor")
        # One lookup per fine site (a 1×1×1 map from the coarse sites onto the parents' coordinates), not
        # the eight queries per coarse site of a 2×2×2 map: about half the time on a SemanticKITTI scan.
        pairs = build_kernel_map(out_coords, parent_coords, 1, 1)
        if pairs.in_index.numel() != x.num_sites:
            raise RuntimeError("a fine site's parent is missing from the coarse level")
        parent = torch.empty(x.num_sites, dtype=torch.int64, device=x.coords.device)
        parent[pairs.out_index] = pairs.in_index
        counts = torch.bincount(parent, minlength=out_coords.shape[0])
        cache[key] = ChildrenMap(parent, counts)
    return cache[key]


def pool_children(x: SparseTensor, stride_mode: str = "floor",
                  reduce: ChildrenReduce = ChildrenReduce.SUM) -> SparseTensor:
    """Sum (or mean) of each coarse site's children: a segment sum over the parent index.

    Equals ``conv3d(dense, I, stride=2)`` with a 2×2×2 identity kernel on every tap (``SUM``), divided
    by the number of occupied children (``MEAN``); a coarse site without children gets zero. Pure
    torch ops (``index_add_``, differentiable), so the result is the same whichever backend ``x`` uses.
    """
    mapping = children_map(x, stride_mode)
    out_coords = coarser_coords(x, stride_mode)
    pooled = x.features.new_zeros((out_coords.shape[0], x.num_channels)).index_add_(0, mapping.parent, x.features)
    if reduce is ChildrenReduce.MEAN:
        pooled = pooled / mapping.counts.clamp(min=1).to(pooled.dtype)[:, None]
    return x.coarser(stride_mode, out_coords, pooled)


def children_conv3d(
    x: SparseTensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride_mode: str = "floor",
    reduce: ChildrenReduce = ChildrenReduce.SUM,
) -> SparseTensor:
    """A 1×1×1 kernel applied to every child of each coarse site, summed (or averaged).

    The convolution ``conv3d(dense, weight.expand(..., 2, 2, 2), stride=2)`` (the 1×1 weight on all
    eight taps of a 2×2×2 stride-2 kernel), computed as what it is: the children pooled by
    :func:`pool_children`, then one matmul with ``weight`` ``[C_out, C_in, 1, 1, 1]``.
    """
    if weight.dim() != 5 or tuple(weight.shape[2:]) != (1, 1, 1):
        raise ValueError(f"children_conv3d takes a 1×1×1 weight [C_out, C_in, 1, 1, 1], got {tuple(weight.shape)}")
    if weight.shape[1] != x.num_channels:
        raise ValueError(f"weight expects {weight.shape[1]} input channels, features have {x.num_channels}")
    pooled = pool_children(x, stride_mode, reduce)
    features = pooled.features @ weight.reshape(weight.shape[0], weight.shape[1]).t().to(pooled.features.dtype)
    if bias is not None:
        features = features + bias
    return pooled.replace_features(features)


def global_avg_pool(x: SparseTensor) -> torch.Tensor:
    """Per-sample mean of the features over occupied sites: ``[batch_size, C]``.

    Half-precision features (under autocast) are summed in float32: bf16 holds integers exactly only up
    to 256, so a running sum over thousands of sites would stop growing.
    """
    batch = x.coords[:, 0]
    accumulate = torch.promote_types(x.features.dtype, torch.float32)
    sums = x.features.new_zeros((x.batch_size, x.num_channels), dtype=accumulate)
    sums.index_add_(0, batch, x.features.to(accumulate))
    counts = torch.bincount(batch, minlength=x.batch_size).clamp_(min=1).to(accumulate)
    return (sums / counts[:, None]).to(x.features.dtype)


def global_max_pool(x: SparseTensor) -> torch.Tensor:
    """Per-sample max of the features over occupied sites: ``[batch_size, C]``."""
    index = x.coords[:, :1].expand(-1, x.num_channels)
    out = x.features.new_full((x.batch_size, x.num_channels), float("-inf"))
    return out.scatter_reduce(0, index, x.features, reduce="amax", include_self=True)
