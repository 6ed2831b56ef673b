"""Sparse 3D convolution on voxels: one API, two interchangeable backends (pure PyTorch and spconv)."""

from image2point.sparse.tensor import BACKENDS, CoordinateCache, SparseTensor

__all__ = ["BACKENDS", "CoordinateCache", "SparseTensor"]
