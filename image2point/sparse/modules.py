"""Thin ``nn.Module`` wrappers over :mod:`image2point.sparse.functional`.

Modules take and return :class:`SparseTensor`, so ``nn.Sequential`` composes them. Parameter names and
shapes follow their dense torch counterparts (``weight`` ``[C_out, C_in, K, K, K]``, BatchNorm's
``weight/bias/running_mean/running_var``), so 2D state dicts map onto 3D models by name.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from image2point.sparse import functional as SF
from image2point.sparse.tensor import SparseTensor


class SparseConv3d(nn.Module):
    """Submanifold (``stride=1``) or strided (``stride=2``) sparse 3D convolution; dilated and grouped as
    ``nn.Conv3d`` (``weight`` ``[C_out, C_in / groups, K, K, K]``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        bias: bool = False,
        stride_mode: str = "floor",
        dilation: int = 1,
        groups: int = 1,
    ):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.stride_mode = stride_mode
        self.dilation = dilation
        self.groups = groups
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The initialisation of torch.nn.Conv3d.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size**3
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def conv_weight(self) -> torch.Tensor:
        """The 3D kernel used by forward (subclasses may compute it, e.g. from a 2D kernel and T)."""
        return self.weight

    def forward(self, x: SparseTensor) -> SparseTensor:
        return SF.conv3d(x, self.conv_weight(), self.bias, self.stride, self.stride_mode, self.dilation, self.groups)

    def extra_repr(self) -> str:
        extra = "".join(f", {name}={value}" for name, value in (("dilation", self.dilation), ("groups", self.groups))
                        if value != 1)
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"stride_mode={self.stride_mode!r}, bias={self.bias is not None}{extra}")


class SparseChildrenConv3d(SparseConv3d):
    """A strided 1×1×1 conv that reads every child of a coarse site, not only the one at ``2q``.

    The 1×1 weight sits on all eight taps of a 2×2×2 stride-2 kernel (``ChildrenReduce.SUM``, how the
    authors' engine runs a ResNet's 1×1 ``downsample``), optionally divided by the number of occupied
    children (``MEAN``). Same parameters as a 1×1 :class:`SparseConv3d`, so state dicts are exchangeable.
    """

    def __init__(self, in_channels: int, out_channels: int, reduce: SF.ChildrenReduce, bias: bool = False,
                 stride_mode: str = "floor"):
        super().__init__(in_channels, out_channels, 1, stride=2, bias=bias, stride_mode=stride_mode)
        self.reduce = reduce

    def forward(self, x: SparseTensor) -> SparseTensor:
        return SF.children_conv3d(x, self.conv_weight(), self.bias, self.stride_mode, self.reduce)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, children={self.reduce.value}"


class SparseInverseConv3d(SparseConv3d):
    """Transposed convolution onto a finer level's sites (decoders): ``forward(x, target)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = False,
                 stride_mode: str = "floor"):
        super().__init__(in_channels, out_channels, kernel_size, stride=2, bias=bias, stride_mode=stride_mode)

    def forward(self, x: SparseTensor, target: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return SF.inverse_conv3d(x, self.conv_weight(), target, self.bias, self.stride_mode)


class SparseBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the features of occupied sites (empty sites do not enter the statistics)."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace_features(super().forward(x.features))


class SparseReLU(nn.ReLU):
    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace_features(super().forward(x.features))


class SparseMaxPool3d(nn.Module):
    def __init__(self, kernel_size: int, stride: int = 2, stride_mode: str = "floor"):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.stride_mode = stride_mode

    def forward(self, x: SparseTensor) -> SparseTensor:
        return SF.max_pool3d(x, self.kernel_size, self.stride, self.stride_mode)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, stride_mode={self.stride_mode!r}"


class SparseSubsampleShortcut(nn.Module):
    """Option-A residual shortcut of CIFAR ResNets in 3D: subsample by 2, then zero-pad channels.

    ``reduce=None`` reads the child at ``2q`` only (the 2D ``x[:, :, ::2, ::2]``); a
    :class:`~image2point.sparse.functional.ChildrenReduce` sums or averages all children instead.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, stride_mode: str = "floor",
                 reduce: SF.ChildrenReduce | None = None):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option-A shortcut cannot shrink channels ({in_channels} → {out_channels})")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.stride_mode = stride_mode
        self.reduce = reduce

    def forward(self, x: SparseTensor) -> SparseTensor:
        if self.stride != 1 and self.reduce is None:
            x = SF.subsample(x, self.stride_mode)
        elif self.stride != 1:
            x = SF.pool_children(x, self.stride_mode, self.reduce)
        extra = self.out_channels - self.in_channels
        if extra == 0:
            return x
        # Pad equally before and after, as the 2D option-A shortcut does.
        before = extra // 2
        return x.replace_features(nn.functional.pad(x.features, (before, extra - before)))

    def extra_repr(self) -> str:
        children = "center" if self.reduce is None else self.reduce.value
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}, children={children}"


class SparseGlobalAvgPool(nn.Module):
    """Per-sample mean over occupied sites: SparseTensor → dense ``[batch_size, C]``."""

    def forward(self, x: SparseTensor) -> torch.Tensor:
        return SF.global_avg_pool(x)


def sparse_add(a: SparseTensor, b: SparseTensor) -> SparseTensor:
    """Elementwise sum of two tensors on the same sites (residual connections)."""
    if a.coords is not b.coords and not torch.equal(a.coords, b.coords):
        raise ValueError(
            f"cannot add sparse tensors on different sites ({a.num_sites} at stride {a.stride} vs "
            f"{b.num_sites} at stride {b.stride}); strided layers of one block must share a stride mode"
        )
    return a.replace_features(a.features + b.features)


# ---------------------------------------------------------------------------------------------------
# Per-site layers: the torch module applied to the features ([N, C], channels on dim 1). Each subclasses
# its torch counterpart, so constructor arguments, parameter names and shapes are torch's.


class _OnFeatures:
    """Mixin: run the torch module's forward on the features of the sites, keep the sites."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_features(super().forward(x.features))  # type: ignore[misc]


class SparsePReLU(_OnFeatures, nn.PReLU):
    """``nn.PReLU(num_parameters=1 or C, init=0.25)``; ``weight`` ``[num_parameters]``."""


class SparseLeakyReLU(_OnFeatures, nn.LeakyReLU):
    pass


class SparseReLU6(_OnFeatures, nn.ReLU6):
    pass


class SparseSiLU(_OnFeatures, nn.SiLU):
    pass


class SparseGELU(_OnFeatures, nn.GELU):
    pass


class SparseHardswish(_OnFeatures, nn.Hardswish):
    pass


class SparseHardsigmoid(_OnFeatures, nn.Hardsigmoid):
    pass


class SparseSigmoid(_OnFeatures, nn.Sigmoid):
    pass


class SparseTanh(_OnFeatures, nn.Tanh):
    pass


class SparseLayerNorm(_OnFeatures, nn.LayerNorm):
    """LayerNorm over the channels of each site (ConvNeXt's channels-last LayerNorm); ``normalized_shape``
    is the channel count (an int or a one-element sequence); ``weight``/``bias`` ``[C]``."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 device=None, dtype=None):
        super().__init__(normalized_shape, eps, elementwise_affine, bias, device, dtype)
        if len(self.normalized_shape) != 1:
            raise ValueError(f"sparse LayerNorm normalises the channels only, got shape {self.normalized_shape}")


class SparseGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm(num_groups, num_channels, eps, affine)`` with statistics per sample over its present
    sites (see :func:`image2point.sparse.functional.group_norm`); ``weight``/``bias`` ``[C]``."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return SF.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


class SparseAvgPool3d(nn.Module):
    """Average over present sites of each window (see :func:`image2point.sparse.functional.avg_pool3d`
    for the divisor and its relation to ``AvgPool2d(count_include_pad=...)``)."""

    def __init__(self, kernel_size: int, stride: int = 2, stride_mode: str = "floor",
                 divisor_override: int | None = None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.stride_mode = stride_mode
        self.divisor_override = divisor_override

    def forward(self, x: SparseTensor) -> SparseTensor:
        return SF.avg_pool3d(x, self.kernel_size, self.stride, self.stride_mode, self.divisor_override)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, stride_mode={self.stride_mode!r}, "
                f"divisor_override={self.divisor_override}")
