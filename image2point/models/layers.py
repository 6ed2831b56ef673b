"""The input layer a transferred network puts before its inflated backbone (paper Appendix 6.4).

It maps point features (xyz, colour, intensity) to the channels the first pretrained stage expects. The
output layers are in :mod:`image2point.models.heads` (classification) and
:mod:`image2point.models.decoder` (segmentation).
"""

from __future__ import annotations

from torch import nn

from image2point.sparse.kernel_map import DOWNSAMPLE_FACTOR
from image2point.sparse.modules import SparseBatchNorm, SparseConv3d, SparseReLU
from image2point.sparse.tensor import SparseTensor

INPUT_KERNEL = 3


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
