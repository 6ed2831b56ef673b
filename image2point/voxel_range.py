"""The coordinates a network can take: the sparse convolutions key every site by one int64.

Those keys cover the box of a batch's voxel coordinates widened by the kernel's reach on each side, and
boxes of 2**62 cells or more are refused (sparse/kernel_map.py, ``_key_space``). Voxelizing works at any
extent (its ``"rows"`` method); these checks refuse what the network could not key, with the voxel size,
before anything runs: a scene with one point 4e9 m away is a clear line, not an overflow in a kernel map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from image2point.errors import DataError

if TYPE_CHECKING:
    from image2point.voxelize import Voxels

NETWORK_KEY_CELLS = 2**62
# Voxels of margin a kernel map adds on each side: no network here reaches further (7-wide kernels,
# dilated up to 4).
NETWORK_KERNEL_REACH = 32


def check_key_range(voxels: Voxels, source: str | Path | None = None) -> None:
    """DataError (naming ``source``) when a network cannot key ``voxels``' coordinates."""
    _check_extents(_extents(voxels), 1, voxels.voxel_size, source)


def check_batch_key_range(samples: Sequence[Voxels]) -> None:
    """The same for ``samples`` collated into one batch: their joint box, once per sample."""
    if samples:
        extents = [max(axis) for axis in zip(*(_extents(sample) for sample in samples))]
        _check_extents(extents, len(samples), samples[0].voxel_size, None)


def check_point_range(points: np.ndarray, voxel_size: float, source: str | Path | None = None) -> None:
    """The same for ``points`` ([N, 3], finite) before they are voxelized at ``voxel_size``."""
    # A voxel size that is not a positive number is voxelize's to refuse, with its own message.
    if len(points) and voxel_size > 0 and np.isfinite(voxel_size):
        cells = np.floor(np.asarray(points, dtype=np.float64) / voxel_size)
        extents = (cells.max(axis=0) - cells.min(axis=0) + 1).tolist()
        # Floats: an extent beyond int64 still compares (and prints) correctly.
        _check_extents([int(extent) for extent in extents], 1, voxel_size, source)


def _extents(voxels: Voxels) -> list[int]:
    """Voxels per axis from the grid origin (voxelize shifts the lowest occupied voxel to 0)."""
    return (voxels.coords.max(0).values + 1).tolist() if voxels.num_voxels else [1, 1, 1]


def _check_extents(extents: Sequence[int], batch_size: int, voxel_size: float, source: str | Path | None) -> None:
    cells = batch_size * math.prod(extent + 2 * NETWORK_KERNEL_REACH for extent in extents)
    if cells >= NETWORK_KEY_CELLS:
        span = " x ".join(str(extent) for extent in extents)
        raise DataError(f"coordinates out of range for voxel size {voxel_size:g}: the points span {span} voxels, "
                        "more than the sparse convolutions' int64 keys can hold; use a larger voxel size, or remove "
                        "far outlying points", source)
