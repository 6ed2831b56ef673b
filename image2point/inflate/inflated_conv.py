"""Sparse convs whose 3D kernel is computed on every forward as ``T(weight_2d)`` (learnable T)."""

from __future__ import annotations

import math

import torch
from torch import nn

from image2point.inflate.learnable import FilterTransform
from image2point.inflate.sparse_layers import SparsePatchConv3d
from image2point.sparse.modules import SparseConv3d


class InflatedSparseConv3d(SparseConv3d):
    """A sparse conv whose 3D kernel is ``T(weight_2d)``; ``weight_2d`` ``[C_out, C_in / groups, K, K]`` is a
    frozen buffer and T a (possibly shared) :class:`FilterTransform`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 transform: FilterTransform, bias: bool = False, stride_mode: str = "floor", dilation: int = 1,
                 groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride, bias, stride_mode, dilation, groups)
        del self.weight
        self.register_buffer("weight_2d", torch.zeros(out_channels, in_channels // groups, kernel_size, kernel_size))
        self.transform = transform

    def reset_parameters(self) -> None:
        # SparseConv3d.__init__ calls this before weight_2d exists (its 3D weight is then removed).
        if "weight_2d" in self._buffers:
            nn.init.kaiming_uniform_(self.weight_2d, a=math.sqrt(5))
        else:
            super().reset_parameters()

    def conv_weight(self) -> torch.Tensor:
        return self.transform(self.weight_2d)


class InflatedSparsePatchConv3d(InflatedSparseConv3d):
    """:class:`~image2point.inflate.sparse_layers.SparsePatchConv3d` (kernel = stride) with a learnable T."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, transform: FilterTransform,
                 bias: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, kernel_size, transform, bias)

    forward = SparsePatchConv3d.forward
