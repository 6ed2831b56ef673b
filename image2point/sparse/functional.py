"""Functional sparse ops on :class:`SparseTensor`: convolution (submanifold, strided, inverse; grouped,
depthwise, dilated), pooling, per-sample normalisation and channel gating.

Every op looks up (or builds and caches) its kernel map in the tensor's coordinate cache, then hands
features, weights and the map to the tensor's backend (or, for an op that backend cannot run, to the
torch backend: see :func:`image2point.sparse.backends.backend_fallbacks`). Weights are torch-style
``[C_out, C_in / groups, K, K, K]``; a result equals ``torch.nn.functional.conv3d`` (or
``conv_transpose3d``, ``max_pool3d``) of the dense grid at the output's sites, with
``padding=dilation * (K - 1) // 2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch

from image2point.sparse.backends import SparseOp, execution_backend, get_backend
from image2point.sparse.downsample import Downsampling, downsample, strided_map
from image2point.sparse.kernel_map import (
    DOWNSAMPLE_FACTOR,
    STRIDE_MODES,
    KernelMap,
    check_dilation,
    submanifold_map,
)
from image2point.sparse.site_index import SiteIndex, build_site_index
from image2point.sparse.tensor import SparseTensor


def site_index(x: SparseTensor) -> SiteIndex:
    """The sorted keys of ``x``'s sites, built once per batch and level (every map of the level uses them)."""
    key = ("index", x.level)
    cache = x.cache.kernel_maps
    if key not in cache:
        cache[key] = build_site_index(x.coords)
    return cache[key]


def downsampling(x: SparseTensor, stride_mode: str) -> Downsampling:
    """The level below ``x`` under ``stride_mode`` (its sites, index and parents), built once per batch."""
    if stride_mode not in STRIDE_MODES:
        raise ValueError(f"unknown stride mode {stride_mode!r}; choose one of {STRIDE_MODES}")
    key = ("downsampling", x.level, stride_mode)
    cache = x.cache.kernel_maps
    if key not in cache:
        down = downsample(site_index(x), stride_mode)
        cache[key] = down
        cache[("index", x.level + (stride_mode,))] = down.coarse
    return cache[key]


def coarser_coords(x: SparseTensor, stride_mode: str) -> torch.Tensor:
    """Sites of the level below ``x`` (stride ×2) under ``stride_mode``, computed once per batch."""
    return downsampling(x, stride_mode).coarse.coords


def _map_builder(x: SparseTensor, kernel_size: int, stride: int, stride_mode: str, dilation: int = 1):
    """A function building the map of a layer on ``x`` from the level's shared index."""
    if stride == 1:
        return lambda: submanifold_map(site_index(x), kernel_size, dilation)
    return lambda: strided_map(site_index(x), downsampling(x, stride_mode), kernel_size, dilation)


def kernel_map(x: SparseTensor, kernel_size: int, stride: int = 1, stride_mode: str = "floor",
               dilation: int = 1) -> KernelMap:
    """The map a conv of this geometry uses on ``x``, from the batch's cache (built there on first use)."""
    _, key = _output_sites(x, kernel_size, stride, stride_mode, "conv", dilation)
    cache = x.cache.kernel_maps
    if key not in cache:
        cache[key] = _map_builder(x, kernel_size, stride, stride_mode, dilation)()
    return cache[key]


def _prepared_map(x: SparseTensor, key: tuple, build, backend: str | None = None) -> object:
    """The kernel map for ``key`` ready for ``backend`` (default: the tensor's), built on first use and
    cached with the batch."""
    backend = backend or x.backend
    cache = x.cache.kernel_maps
    backend_key = (key, backend)
    if backend_key not in cache:
        if key not in cache:
            cache[key] = build()
        cache[backend_key] = get_backend(backend).prepare(cache[key])
    return cache[backend_key]


def _check_weight(x: SparseTensor, weight: torch.Tensor, groups: int = 1) -> int:
    if weight.dim() != 5 or len(set(weight.shape[2:])) != 1:
        raise ValueError(f"weight must be [C_out, C_in, K, K, K], got {tuple(weight.shape)}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be an integer >= 1, got {groups!r}")
    if weight.shape[0] % groups:
        raise ValueError(f"groups={groups} does not divide the weight's {weight.shape[0]} output channels")
    if weight.shape[1] * groups != x.num_channels:
        per_group = "" if groups == 1 else f" per group × {groups} groups"
        raise ValueError(f"weight expects {weight.shape[1]} input channels{per_group}, "
                         f"features have {x.num_channels}")
    return weight.shape[2]


def conv3d(
    x: SparseTensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    stride_mode: str = "floor",
    dilation: int = 1,
    groups: int = 1,
) -> SparseTensor:
    """Submanifold convolution (``stride=1``: output sites = input sites) or strided (``stride=2``).

    ``dilation`` spaces the taps ``dilation`` sites apart (odd K only) and ``groups`` splits the channels
    as in torch (``weight`` ``[C_out, C_in / groups, K, K, K]``): the result is ``F.conv3d(stride=stride,
    padding=dilation * (K - 1) // 2, dilation=dilation, groups=groups)`` of the dense grid at the output
    sites. Depthwise (``groups = C_in = C_out``) and other grouped convs run on the torch backend when the
    tensor's backend has no grouped convolution (spconv).
    """
    kernel_size = _check_weight(x, weight, groups)
    out_coords, key = _output_sites(x, kernel_size, stride, stride_mode, "conv", dilation)
    build = _map_builder(x, kernel_size, stride, stride_mode, dilation)
    if groups == 1:
        features = get_backend(x.backend).conv(x.features, weight, _prepared_map(x, key, build))
    else:
        features = _grouped_conv(x, weight, groups, key, build)
    if bias is not None:
        features = features + bias
    return _on_output_level(x, stride, stride_mode, out_coords, features)


def _grouped_conv(x: SparseTensor, weight: torch.Tensor, groups: int, key: tuple, build) -> torch.Tensor:
    depthwise = groups == x.num_channels == weight.shape[0]
    backend = execution_backend(x.backend, SparseOp.DEPTHWISE_CONV if depthwise else SparseOp.GROUPED_CONV)
    prepared = _prepared_map(x, key, build, backend)
    if depthwise:
        return get_backend(backend).depthwise_conv(x.features, weight, prepared)
    return get_backend(backend).grouped_conv(x.features, weight, prepared, groups)


def _output_sites(x: SparseTensor, kernel_size: int, stride: int, stride_mode: str, what: str, dilation: int = 1):
    """Output coordinates and the kernel-map cache key of a stride-1 or stride-2 layer.

    Keys of undilated maps carry no dilation (code that builds one of those maps itself shares the entry).
    """
    check_dilation(kernel_size, dilation)
    dilated = () if dilation == 1 else (dilation,)
    if stride == 1:
        return x.coords, ("subm", x.level, kernel_size) + dilated
    if stride == DOWNSAMPLE_FACTOR:
        return coarser_coords(x, stride_mode), ("down", x.level, stride_mode, kernel_size) + dilated
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
        cache[down_key] = _map_builder(target, kernel_size, DOWNSAMPLE_FACTOR, stride_mode)()
    prepared = _prepared_map(x, ("up",) + down_key[1:], lambda: cache[down_key].transposed())
    features = get_backend(x.backend).conv(x.features, weight, prepared)
    if bias is not None:
        features = features + bias
    return target.replace_features(features)


def max_pool3d(x: SparseTensor, kernel_size: int, stride: int = 2, stride_mode: str = "floor") -> SparseTensor:
    """Max over each output's window of occupied input sites (padding ``(K - 1) // 2``)."""
    out_coords, key = _output_sites(x, kernel_size, stride, stride_mode, "max pool")
    prepared = _prepared_map(x, key, _map_builder(x, kernel_size, stride, stride_mode))
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
        kernel_map = _map_builder(x, 1, DOWNSAMPLE_FACTOR, stride_mode)()
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
        # The parents come with the coarse sites (the inverse of their unique): no lookup at all.
        down = downsampling(x, stride_mode)
        counts = torch.bincount(down.parent, minlength=down.coarse.num_sites)
        cache[key] = ChildrenMap(down.parent, counts)
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


def avg_pool3d(
    x: SparseTensor,
    kernel_size: int,
    stride: int = 2,
    stride_mode: str = "floor",
    divisor_override: int | None = None,
) -> SparseTensor:
    """Average over each output's window of *present* input sites (window ``stride·q + k - (K - 1) // 2``).

    Empty sites are absent, not zeros: the divisor is the number of present sites in the window (an
    output whose window holds none gets zero), or ``divisor_override`` when given (sum / divisor, as in
    torch). On a fully occupied one-site-thick plane (``floor`` sites) the present sites of a window are
    its in-bounds cells, so the default equals ``AvgPool2d(K, 2, padding=(K - 1) // 2,
    count_include_pad=False)`` and ``divisor_override=K * K`` equals ``count_include_pad=True`` (every
    window divided by K², padding counted). The two agree where no window reaches past the border:
    ``AvgPool2d(2, 2)`` on even extents; on odd ones the sparse pool keeps the last, partly filled window,
    as ``ceil_mode=True`` does. ``window`` sites add windows past even extents, which 2D has no match for.
    """
    out_coords, key = _output_sites(x, kernel_size, stride, stride_mode, "avg pool")
    if divisor_override is not None and divisor_override <= 0:
        raise ValueError(f"divisor_override must be positive, got {divisor_override}")
    backend = execution_backend(x.backend, SparseOp.AVG_POOL)
    prepared = _prepared_map(x, key, _map_builder(x, kernel_size, stride, stride_mode), backend)
    sums, counts = get_backend(backend).window_sum(x.features, prepared)
    if divisor_override is None:
        features = sums / counts.clamp(min=1).to(sums.dtype)[:, None]
    else:
        features = sums / divisor_override
    return _on_output_level(x, stride, stride_mode, out_coords, features)


def group_norm(
    x: SparseTensor,
    num_groups: int,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> SparseTensor:
    """``F.group_norm`` restricted to present sites: per sample and group of channels, the mean and
    (biased) variance run over the sample's present sites and the group's channels; then the per-channel
    affine ``weight``, ``bias``."""
    channels = x.num_channels
    if num_groups < 1 or channels % num_groups:
        raise ValueError(f"num_groups={num_groups} must divide the {channels} channels")
    batch = x.coords[:, 0]
    grouped = x.features.view(x.num_sites, num_groups, channels // num_groups)
    sites = torch.bincount(batch, minlength=x.batch_size).clamp_(min=1)
    count = (sites * (channels // num_groups)).to(x.features.dtype)[:, None]
    zeros = x.features.new_zeros((x.batch_size, num_groups))
    mean = zeros.index_add(0, batch, grouped.sum(2)) / count
    centered = grouped - mean[batch].unsqueeze(2)
    variance = zeros.index_add(0, batch, centered.square().sum(2)) / count
    normalized = (centered * torch.rsqrt(variance + eps)[batch].unsqueeze(2)).view(x.num_sites, channels)
    if weight is not None:
        normalized = normalized * weight
    if bias is not None:
        normalized = normalized + bias
    return x.replace_features(normalized)


def _rows_per_site(x: SparseTensor, values: torch.Tensor, what: str) -> torch.Tensor:
    """``[B, C]`` or ``[B, 1]`` values (trailing size-1 axes allowed, as ``[B, C, 1, 1]``) → one row per site."""
    if values.dim() > 2 and all(size == 1 for size in values.shape[2:]):
        values = values.flatten(1)
    if values.dim() != 2 or values.shape[0] != x.batch_size or values.shape[1] not in (1, x.num_channels):
        raise ValueError(f"{what} must be [batch_size={x.batch_size}, C={x.num_channels} or 1], "
                         f"got {tuple(values.shape)}")
    return values[x.coords[:, 0]]


def mul_per_sample(x: SparseTensor, gate: torch.Tensor) -> SparseTensor:
    """Each site's features times its sample's row of ``gate`` ``[B, C]`` (squeeze-and-excitation)."""
    return x.replace_features(x.features * _rows_per_site(x, gate, "gate"))


def add_per_sample(x: SparseTensor, values: torch.Tensor) -> SparseTensor:
    """Each site's features plus its sample's row of ``values`` ``[B, C]`` (a per-sample broadcast add)."""
    return x.replace_features(x.features + _rows_per_site(x, values, "values"))
