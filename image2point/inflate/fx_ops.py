"""The functions a converted graph calls where the 2D graph called torch on a spatial map.

:mod:`image2point.inflate.fx_graph` rewrites each such call into one of these; their arguments are the 2D
call's plus constants (the layout of the map, the node's place for error messages), so the generated code
stays plain Python that ``torch.fx`` can print and pickle. A dense operand (a squeeze-and-excitation gate
``[B, C, 1, 1]``, a layer scale ``[C, 1, 1]``, a scalar) is broadcast to the sites as 2D broadcasting
broadcasts it over the pixels, one row per sample.
"""

from __future__ import annotations

import operator
from numbers import Number

import torch
import torch.nn.functional as F

from image2point.sparse import functional as SF
from image2point.sparse.tensor import SparseTensor

CHANNELS_FIRST, CHANNELS_LAST = "channels_first", "channels_last"
# Dims of a 2D map [B, C, H, W] (channels first) or [B, H, W, C] (channels last).
MAP_DIMS = 4
BINARY_OPS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}
# Elementwise functions that act on each site's features as they act on each pixel's.
POINTWISE = {
    "relu": F.relu, "relu6": F.relu6, "leaky_relu": F.leaky_relu, "elu": F.elu, "gelu": F.gelu, "silu": F.silu,
    "mish": F.mish, "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid, "hardtanh": F.hardtanh,
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "dropout": F.dropout, "clamp": torch.clamp,
    "identity": lambda features: features,
}


def same_sites(a: SparseTensor, b: SparseTensor, where: str) -> None:
    if a.coords is b.coords:
        return
    if a.level != b.level or a.num_sites != b.num_sites or not torch.equal(a.coords, b.coords):
        raise ValueError(f"{where}: sparse maps on different sites ({a.num_sites} sites at level {a.level} vs "
                         f"{b.num_sites} at level {b.level}); both operands must come from the same sites")


def sparse_cat(tensors: list, where: str) -> SparseTensor:
    """``torch.cat(maps, channel dim)`` of sparse maps on the same sites."""
    first = tensors[0]
    for other in tensors[1:]:
        same_sites(first, other, where)
    return first.replace_features(torch.cat([t.features for t in tensors], 1))


def per_site_rows(x: SparseTensor, values: torch.Tensor, layout: str, where: str) -> torch.Tensor:
    """A dense operand broadcast against the 2D map of ``x``, as one row per site ``[N, C or 1]``.

    It must be constant over the image (size 1 on both spatial dims, or no such dims): per sample and
    channel, as 2D broadcasting would apply it to every pixel.
    """
    if values.dim() > MAP_DIMS:
        raise ValueError(f"{where}: a {values.dim()}-dim operand does not broadcast against a 2D map")
    shape = (1,) * (MAP_DIMS - values.dim()) + tuple(values.shape)
    spatial = shape[2:] if layout == CHANNELS_FIRST else shape[1:3]
    if any(size != 1 for size in spatial):
        raise ValueError(f"{where}: a dense operand of shape {tuple(values.shape)} varies over the image; only "
                         "values constant over the pixels (per sample and channel) carry over to sparse maps")
    channels = shape[1] if layout == CHANNELS_FIRST else shape[3]
    rows = values.reshape(shape[0], channels)
    if rows.shape[0] not in (1, x.batch_size) or channels not in (1, x.num_channels):
        raise ValueError(f"{where}: operand {tuple(values.shape)} does not broadcast against batch {x.batch_size} "
                         f"with {x.num_channels} channels")
    return rows.expand(x.batch_size, channels)[x.coords[:, 0]]


def binary(op_name: str, a, b, layout: str, where: str):
    """``a <op> b`` where at least one operand is a sparse map."""
    op = BINARY_OPS[op_name]
    if isinstance(a, SparseTensor) and isinstance(b, SparseTensor):
        same_sites(a, b, where)
        return a.replace_features(op(a.features, b.features))
    sparse, other, sparse_first = (a, b, True) if isinstance(a, SparseTensor) else (b, a, False)
    if isinstance(other, torch.Tensor):
        other = per_site_rows(sparse, other, layout, where)
    elif not isinstance(other, Number):
        raise TypeError(f"{where}: cannot combine a sparse map with {type(other).__name__}")
    features = op(sparse.features, other) if sparse_first else op(other, sparse.features)
    return sparse.replace_features(features)


def relayout(x: SparseTensor) -> SparseTensor:
    """A permute between channels first and channels last: the features [N, C] serve both layouts."""
    return x


def pointwise(name: str, x: SparseTensor, *args, **kwargs) -> SparseTensor:
    """An elementwise function on each site's features (``inplace`` dropped: features may be shared)."""
    kwargs.pop("inplace", None)
    return x.replace_features(POINTWISE[name](x.features, *args, **kwargs))


def global_pool(x: SparseTensor, reduction: str, layout: str, keepdim: bool) -> torch.Tensor:
    """Mean or max over each sample's present sites, shaped as the 2D reduction over H and W returns it."""
    pooled = SF.global_avg_pool(x) if reduction == "mean" else SF.global_max_pool(x)
    if not keepdim:
        return pooled
    return pooled[:, :, None, None] if layout == CHANNELS_FIRST else pooled[:, None, None, :]


def avg_pool(x: SparseTensor, kernel_size: int, stride: int, stride_mode: str,
             divisor: int | None) -> SparseTensor:
    return SF.avg_pool3d(x, kernel_size, stride, stride_mode, divisor)


def max_pool(x: SparseTensor, kernel_size: int, stride: int, stride_mode: str) -> SparseTensor:
    return SF.max_pool3d(x, kernel_size, stride, stride_mode)
