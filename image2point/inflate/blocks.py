"""The residual blocks of 2D ResNets in 3D: the same child names as their 2D counterparts, sparse forward.

The converter (:mod:`image2point.inflate.converter`) fills them with the converted children of a
torchvision ``BasicBlock`` / ``Bottleneck`` or a CIFAR ``CifarBasicBlock``.
"""

from __future__ import annotations

from torch import nn

from image2point.sparse.modules import SparseReLU, sparse_add
from image2point.sparse.tensor import SparseTensor


class SparseBasicBlock(nn.Module):
    def __init__(self, conv1, bn1, conv2, bn2, downsample: nn.Module | None):
        super().__init__()
        self.conv1, self.bn1, self.conv2, self.bn2 = conv1, bn1, conv2, bn2
        self.relu = SparseReLU()
        self.downsample = downsample

    def forward(self, x: SparseTensor) -> SparseTensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(sparse_add(out, identity))


class SparseBottleneck(nn.Module):
    def __init__(self, conv1, bn1, conv2, bn2, conv3, bn3, downsample: nn.Module | None):
        super().__init__()
        self.conv1, self.bn1, self.conv2, self.bn2, self.conv3, self.bn3 = conv1, bn1, conv2, bn2, conv3, bn3
        self.relu = SparseReLU()
        self.downsample = downsample

    def forward(self, x: SparseTensor) -> SparseTensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(sparse_add(out, identity))


class SparseCifarBasicBlock(nn.Module):
    def __init__(self, conv1, bn1, conv2, bn2, shortcut: nn.Module | None):
        super().__init__()
        self.conv1, self.bn1, self.conv2, self.bn2 = conv1, bn1, conv2, bn2
        self.relu = SparseReLU()
        self.shortcut = shortcut

    def forward(self, x: SparseTensor) -> SparseTensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(sparse_add(out, identity))
