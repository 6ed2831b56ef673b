"""The sparse tensor: voxel features on integer coordinates, plus the kernel maps computed for them.

Coordinates are ``[N, 4]`` int64 rows ``(batch, x, y, z)`` on the grid of the tensor's own stride: a
tensor at stride 2 holds coarse coordinates (0, 1, 2, ...), not multiples of 2. In a dense view the
spatial axes ``x, y, z`` are the ``D, H, W`` axes of ``torch.nn.functional.conv3d``.

Tensors derived from one another inside a network (same batch, any stride) share one
:class:`CoordinateCache`, so the downsampled coordinates and kernel maps of each level are computed
once per forward pass and reused by every layer that needs them (the role of spconv's ``indice_key``).
A tensor's ``level`` names the stride conventions that produced its sites, one per halving
(``("floor", "floor")`` is stride 4); cache entries are keyed by level, so networks with different
conventions can share an input tensor without mixing their maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable

import torch

from image2point.sparse.backends.protocol import SPARSE_BACKENDS, backend_names

# The backends registered in image2point.sparse.backends (torch, spconv); a tensor checks the live registry.
BACKENDS = backend_names()


@dataclass
class CoordinateCache:
    """Per-batch memo of coordinates by level and kernel maps by level and layer geometry."""

    kernel_maps: dict[Hashable, Any] = field(default_factory=dict)


@dataclass
class SparseTensor:
    features: torch.Tensor
    coords: torch.Tensor
    batch_size: int
    backend: str = "torch"
    cache: CoordinateCache = field(default_factory=CoordinateCache, repr=False)
    level: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.coords.dim() != 2 or self.coords.shape[1] != 4:
            raise ValueError(f"coords must be [N, 4] (batch, x, y, z), got {tuple(self.coords.shape)}")
        if self.coords.dtype != torch.int64:
            raise TypeError(f"coords must be int64, got {self.coords.dtype}")
        if self.features.dim() != 2 or self.features.shape[0] != self.coords.shape[0]:
            raise ValueError(
                f"features must be [N, C] with N={self.coords.shape[0]} rows, got {tuple(self.features.shape)}"
            )
        # Native kernels (spconv's among them) read raw memory: keep rows contiguous.
        self.coords = self.coords.contiguous()
        self.features = self.features.contiguous()
        if self.backend not in SPARSE_BACKENDS:
            raise ValueError(f"unknown sparse backend {self.backend!r}; choose one of {backend_names()}")

    @property
    def stride(self) -> int:
        """Voxels of the input grid per site along each axis."""
        return 2 ** len(self.level)

    @property
    def num_sites(self) -> int:
        return self.coords.shape[0]

    @property
    def num_channels(self) -> int:
        return self.features.shape[1]

    @property
    def device(self) -> torch.device:
        return self.features.device

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "SparseTensor":
        """This tensor on ``device``: itself when already there (cache kept), else a copy of features and
        coordinates with an empty cache, since the cached maps hold tensors of the old device. The copy
        keeps its level, so its stride is unchanged."""
        device = torch.device(device)
        if _same_device(self.device, device) and _same_device(self.coords.device, device):
            return self
        return SparseTensor(self.features.to(device, non_blocking=non_blocking),
                            self.coords.to(device, non_blocking=non_blocking), self.batch_size, self.backend,
                            level=self.level)

    def replace_features(self, features: torch.Tensor) -> "SparseTensor":
        """Same sites, new features (the result of a pointwise op such as BN or ReLU)."""
        return SparseTensor(features, self.coords, self.batch_size, self.backend, self.cache, self.level)

    def coarser(self, stride_mode: str, coords: torch.Tensor, features: torch.Tensor) -> "SparseTensor":
        """A tensor on the next level (stride ×2) of this tensor's hierarchy, made by ``stride_mode``."""
        return SparseTensor(features, coords, self.batch_size, self.backend, self.cache, self.level + (stride_mode,))

    def to_dense(self, spatial_shape: tuple[int, int, int] | None = None) -> torch.Tensor:
        """``[B, C, X, Y, Z]`` dense grid with zeros at empty sites (for tests and small inputs)."""
        if spatial_shape is None:
            if self.num_sites == 0:
                spatial_shape = (1, 1, 1)
            else:
                spatial_shape = tuple(int(v) + 1 for v in self.coords[:, 1:].max(0).values.tolist())
        dense = self.features.new_zeros((self.batch_size, self.num_channels, *spatial_shape))
        b, x, y, z = self.coords.unbind(1)
        dense[b, :, x, y, z] = self.features
        return dense

    @classmethod
    def from_dense(cls, dense: torch.Tensor, mask: torch.Tensor, backend: str = "torch") -> "SparseTensor":
        """Sites where ``mask`` ([B, X, Y, Z] bool) is true, features from ``dense`` ([B, C, X, Y, Z])."""
        coords = mask.nonzero()
        b, x, y, z = coords.unbind(1)
        features = dense[b, :, x, y, z]
        return cls(features, coords, dense.shape[0], backend=backend)


def _same_device(actual: torch.device, wanted: torch.device) -> bool:
    """Whether a tensor on ``actual`` is on ``wanted``; ``cuda`` without an index means the current GPU,
    as ``Tensor.to`` reads it (tensors report ``cuda:0``, which does not compare equal to ``cuda``)."""
    if actual.type != wanted.type:
        return False
    if actual.type != "cuda":
        return True
    return actual.index == (torch.cuda.current_device() if wanted.index is None else wanted.index)
