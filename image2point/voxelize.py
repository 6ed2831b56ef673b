"""Voxelization of point clouds and collation of voxelized samples into one sparse batch.

A point ``p`` falls in the voxel ``floor(p / voxel_size)``; the grid is then shifted so the smallest
occupied voxel index is 0 on each axis. A voxel's feature is the mean of its points' features (by
default their xyz, the only input the paper's networks see). ``Voxels.inverse`` maps every point to
its voxel's row, so per-voxel predictions reach every point as ``predictions[voxels.inverse]``.

Occupied voxels are found in one of three ways, all giving the same rows in the same (lexicographic
``x, y, z``) order:

* ``"table"``: a dense occupancy table over the bounding box of the points. Linear in points plus
  cells, so the fastest choice when the box is small (a unit-sphere shape at 0.05 is 40^3 cells).
* ``"sort"``: ``torch.unique`` on one linear key per point (int32 when the box has fewer than 2^31
  cells, as a 160 m x 100 m x 15 m LiDAR scan at 0.05 m does; int64 otherwise). Its cost does not
  depend on the extent.
* ``"rows"``: ``torch.unique`` on ``[N, 3]`` rows, for boxes whose cell count overflows an int64 key
  (beyond about 2 million voxels on every axis); several times slower, never needed for real scenes.

``"auto"`` uses the table for small boxes, else the sort, else the rows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch

from image2point.errors import DataError
from image2point.sparse.tensor import SparseTensor

UniqueMethod = Literal["auto", "table", "sort", "rows"]
UNIQUE_METHODS: tuple[str, ...] = get_args(UniqueMethod)

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
# float64 cell indices must convert to int64 exactly; every float64 of magnitude below 2^63 does.
INT64_CONVERTIBLE_BOUND = float(2**63)
# The dense table costs one bool and one int64 per cell of the bounding box. Measured against the sort,
# it wins clearly when many points share a voxel in a small box (2x on ModelNet shapes at 0.05), ties
# around one cell per point, and loses beyond; the cap bounds its memory (128 MiB of int64).
TABLE_CELLS_PER_POINT = 1
TABLE_ALWAYS_CELLS = 1 << 18
TABLE_MAX_CELLS = 1 << 24
# One weighted bincount per channel beats a row scatter (index_add_) for a few channels, which is the
# common case (xyz, xyz + intensity); wide features go through one index_add_.
BINCOUNT_MAX_CHANNELS = 8
SPATIAL_DIMS = 3
# numpy dtype kinds accepted on input: bool, signed, unsigned, float (type checks come later).
NUMERIC_DTYPE_KINDS = "biuf"


@dataclass(frozen=True)
class Voxels:
    """Occupied voxels of one point cloud.

    ``coords`` [V, 3] int64 voxel indices, minimum 0 on each axis, rows in lexicographic order;
    ``features`` [V, C] float32 per-voxel means; ``inverse`` [N] int64 voxel row of each point;
    ``counts`` [V] int64 points per voxel; ``origin`` [3] float64 world position of the corner of
    voxel (0, 0, 0), so a voxel's world box starts at ``origin + coords * voxel_size``.
    """

    coords: torch.Tensor
    features: torch.Tensor
    inverse: torch.Tensor
    counts: torch.Tensor
    origin: torch.Tensor
    voxel_size: float

    def __post_init__(self) -> None:
        num_voxels = self.coords.shape[0]
        if self.coords.dim() != 2 or self.coords.shape[1] != SPATIAL_DIMS or self.coords.dtype != torch.int64:
            raise ValueError(f"coords must be [V, 3] int64, got {tuple(self.coords.shape)} {self.coords.dtype}")
        if self.features.dim() != 2 or self.features.shape[0] != num_voxels:
            raise ValueError(f"features must be [V={num_voxels}, C], got {tuple(self.features.shape)}")
        if self.counts.shape != (num_voxels,):
            raise ValueError(f"counts must be [V={num_voxels}], got {tuple(self.counts.shape)}")
        if self.inverse.dim() != 1 or self.inverse.dtype != torch.int64:
            raise ValueError(f"inverse must be [N] int64, got {tuple(self.inverse.shape)} {self.inverse.dtype}")
        if self.origin.shape != (SPATIAL_DIMS,):
            raise ValueError(f"origin must be [3], got {tuple(self.origin.shape)}")

    @property
    def num_voxels(self) -> int:
        return self.coords.shape[0]

    @property
    def num_points(self) -> int:
        return self.inverse.shape[0]

    @property
    def num_channels(self) -> int:
        return self.features.shape[1]


@dataclass
class CollatedVoxels:
    """Voxelized samples stacked into one sparse tensor.

    ``tensor.coords`` rows are ``(batch, x, y, z)``, samples in input order; ``point_to_site`` [sum N]
    is the tensor row of every point of every sample, so per-site predictions reach all points as
    ``predictions[point_to_site]``.
    """

    tensor: SparseTensor
    point_to_site: torch.Tensor
    points_per_sample: list[int]
    sites_per_sample: list[int]

    @property
    def batch_size(self) -> int:
        return len(self.sites_per_sample)

    def split_sites(self, values: torch.Tensor) -> list[torch.Tensor]:
        """Per-site values (one row per tensor site) cut back into one tensor per sample."""
        return split_by_sample(values, self.sites_per_sample)

    def split_points(self, values: torch.Tensor) -> list[torch.Tensor]:
        """Per-point values (one row per point, samples concatenated) cut into one tensor per sample."""
        return split_by_sample(values, self.points_per_sample)


def voxelize(
    points: torch.Tensor | np.ndarray,
    voxel_size: float,
    features: torch.Tensor | np.ndarray | None = None,
    *,
    method: UniqueMethod = "auto",
) -> Voxels:
    """Group ``points`` ([N, 3] float32/float64) into cubic voxels of side ``voxel_size``.

    ``features`` ([N, C], real-valued) are averaged per voxel; without them the voxel feature is the
    mean xyz of its points. Means are accumulated in float64 and returned as float32. Results are on
    the input's device (CPU for numpy input) and carry no autograd history. ``method`` picks how
    occupied voxels are found (see the module docstring); ``"auto"`` picks the fastest that applies.
    Raises :class:`DataError` for malformed input.
    """
    if method not in UNIQUE_METHODS:
        raise ValueError(f"unknown voxelization method {method!r}; choose one of {UNIQUE_METHODS}")
    voxel_size = _check_voxel_size(voxel_size)
    points, lowest_point, highest_point = _checked_points(points)
    # Divide by a tensor, not a Python scalar: CUDA turns division by a scalar into multiplication by
    # its reciprocal, which rounds differently and would move points across cell borders by device.
    divisor = torch.tensor(voxel_size, dtype=torch.float64, device=points.device)
    grid = _grid_of(lowest_point, highest_point, divisor, voxel_size)
    # Always float64, so a cloud gives the same voxels whether it arrives as float32 or float64.
    point_columns = _float64_columns(points)
    coords, inverse, counts = _unique_cells(point_columns, divisor, grid, method)
    if features is None:
        voxel_features = _column_means(point_columns, inverse, counts)
    else:
        voxel_features = _voxel_means(_checked_features(features, points), inverse, counts)
    origin = torch.tensor([low * voxel_size for low in grid.lowest], dtype=torch.float64, device=points.device)
    return Voxels(coords, voxel_features, inverse, counts, origin, voxel_size)


def collate_voxels(samples: Sequence[Voxels], backend: str = "torch") -> CollatedVoxels:
    """Stack voxelized samples into one :class:`SparseTensor` with batch index in column 0."""
    if len(samples) == 0:
        raise DataError("cannot collate an empty batch: no samples given")
    channels = {sample.num_channels for sample in samples}
    if len(channels) != 1:
        raise DataError(f"samples have different feature widths {sorted(channels)}; a batch needs one width")
    voxel_sizes = {sample.voxel_size for sample in samples}
    if len(voxel_sizes) != 1:
        raise DataError(
            f"samples were voxelized with different voxel sizes {sorted(voxel_sizes)}; a batch needs one grid"
        )
    sites_per_sample = [sample.num_voxels for sample in samples]
    points_per_sample = [sample.num_points for sample in samples]
    device = samples[0].coords.device

    batch_index = torch.repeat_interleave(
        torch.arange(len(samples), device=device), torch.tensor(sites_per_sample, device=device)
    )
    coords = torch.cat([batch_index[:, None], torch.cat([sample.coords for sample in samples])], dim=1)
    features = torch.cat([sample.features for sample in samples])
    site_offsets = itertools.accumulate(sites_per_sample[:-1], initial=0)
    point_to_site = torch.cat([sample.inverse + offset for sample, offset in zip(samples, site_offsets)])
    tensor = SparseTensor(features, coords, batch_size=len(samples), backend=backend)
    return CollatedVoxels(tensor, point_to_site, points_per_sample, sites_per_sample)


def split_by_sample(values: torch.Tensor, sites_per_sample: Sequence[int]) -> list[torch.Tensor]:
    """Cut ``values`` (rows of all samples, concatenated) into one tensor per sample.

    Works for per-site values with ``CollatedVoxels.sites_per_sample`` and equally for per-point values
    with ``CollatedVoxels.points_per_sample``; the pieces are views of ``values``.
    """
    sizes = [int(size) for size in sites_per_sample]
    if any(size < 0 for size in sizes):
        raise ValueError(f"row counts per sample must be non-negative, got {sizes}")
    if values.shape[0] != sum(sizes):
        raise ValueError(f"values have {values.shape[0]} rows but the samples hold {sum(sizes)} in total")
    return list(torch.split(values, sizes))


def _check_voxel_size(voxel_size: float) -> float:
    if isinstance(voxel_size, bool) or not isinstance(voxel_size, (int, float, np.integer, np.floating)):
        raise DataError(f"voxel_size must be a number, got {type(voxel_size).__name__}")
    voxel_size = float(voxel_size)
    if not math.isfinite(voxel_size) or voxel_size <= 0:
        raise DataError(f"voxel_size must be a positive finite number, got {voxel_size}")
    return voxel_size


def _as_tensor(array: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    if isinstance(array, np.ndarray):
        if array.dtype.kind not in NUMERIC_DTYPE_KINDS:
            raise DataError(f"{name} must hold numbers, got numpy dtype {array.dtype}")
        # torch cannot alias negative strides, and aliasing read-only memory triggers a warning.
        array = np.ascontiguousarray(array)
        return torch.from_numpy(array if array.flags.writeable else array.copy())
    if isinstance(array, torch.Tensor):
        return array.detach()
    raise DataError(f"{name} must be a numpy array or a torch tensor, got {type(array).__name__}")


def _finite_bounds(values: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column minimum and maximum of [N, C] ``values``, raising if any entry is NaN or Inf.

    The min/max pass is the finiteness check too: NaN propagates through both, Inf reaches one. It runs
    column by column because a reduction over dim 0 of a row-major [N, C] tensor is several times slower.
    """
    bounds = [torch.aminmax(column) for column in values.unbind(1)]
    lowest = torch.stack([bound.min for bound in bounds])
    highest = torch.stack([bound.max for bound in bounds])
    if bool(torch.isfinite(lowest).all()) and bool(torch.isfinite(highest).all()):
        return lowest, highest
    bad_rows = (~torch.isfinite(values)).any(dim=1).nonzero().squeeze(1)
    raise DataError(
        f"{bad_rows.numel()} of {values.shape[0]} points have NaN or Inf {what} (first at row {int(bad_rows[0])})"
    )


def _checked_points(points: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The points as a tensor, with their per-axis minimum and maximum."""
    points = _as_tensor(points, "points")
    if points.dim() != 2 or points.shape[1] != SPATIAL_DIMS:
        raise DataError(f"points must be an [N, 3] array of x, y, z, got shape {tuple(points.shape)}")
    if points.dtype not in (torch.float32, torch.float64):
        raise DataError(f"points must be float32 or float64, got {points.dtype}")
    if points.shape[0] == 0:
        raise DataError("points are empty: nothing to voxelize")
    lowest, highest = _finite_bounds(points, "coordinates")
    return points, lowest, highest


def _checked_features(features: torch.Tensor | np.ndarray, points: torch.Tensor) -> torch.Tensor:
    features = _as_tensor(features, "features")
    num_points = points.shape[0]
    if features.dim() != 2 or features.shape[0] != num_points:
        raise DataError(
            f"features must be [N, C] with one row per point (N={num_points}), got shape {tuple(features.shape)}"
        )
    if features.shape[1] == 0:
        raise DataError("features have no channels; pass None to use the points' xyz")
    if features.dtype == torch.bool or features.is_complex():
        raise DataError(f"features must be real numbers, got {features.dtype}")
    if features.device != points.device:
        raise DataError(f"features are on {features.device} but points are on {points.device}")
    if features.is_floating_point():
        _finite_bounds(features, "features")
    return features


@dataclass(frozen=True)
class _Grid:
    """The occupied part of the voxel grid: per axis, the lowest cell index and the number of cells."""

    lowest: list[int]
    extents: list[int]

    @property
    def num_cells(self) -> int:
        return math.prod(self.extents)


def _grid_of(
    lowest_point: torch.Tensor, highest_point: torch.Tensor, divisor: torch.Tensor, voxel_size: float
) -> _Grid:
    """The cells spanned by the points' bounding box, checked to be indexable by int64."""
    # floor(p / v) is monotone in p, so the extreme cells are those of the extreme coordinates.
    lowest_float = torch.floor(lowest_point.to(torch.float64) / divisor).tolist()
    highest_float = torch.floor(highest_point.to(torch.float64) / divisor).tolist()
    if min(lowest_float) < -INT64_CONVERTIBLE_BOUND or max(highest_float) >= INT64_CONVERTIBLE_BOUND:
        largest = max(abs(value) for value in lowest_point.tolist() + highest_point.tolist())
        raise DataError(
            f"voxel indices do not fit in int64 (coordinates up to {largest:.6g} at voxel size "
            f"{voxel_size:g}); use a larger voxel size or recentre the points"
        )
    lowest = [int(value) for value in lowest_float]
    extents = [int(high) - low + 1 for low, high in zip(lowest, highest_float)]
    if max(extents) - 1 > INT64_MAX:
        raise DataError(
            f"points span {max(extents)} voxels along one axis, more than int64 can index; "
            f"use a larger voxel size (now {voxel_size:g})"
        )
    return _Grid(lowest, extents)


def _float64_columns(values: torch.Tensor) -> torch.Tensor:
    """[N, C] values as [C, N] contiguous float64.

    Per-column work then reads contiguous memory; the transposing, widening copy is one fast pass,
    whereas widening each strided column separately is several times slower.
    """
    columns = torch.empty((values.shape[1], values.shape[0]), dtype=torch.float64, device=values.device)
    return columns.copy_(values.t())


def _axis_cells(column: torch.Tensor, divisor: torch.Tensor, lowest_cell: int) -> torch.Tensor:
    """[N] int64 cell index of every point along one axis, counted from the grid's lowest cell."""
    cells = torch.div(column, divisor).floor_().to(torch.int64)
    cells -= lowest_cell
    return cells


def _unique_cells(
    point_columns: torch.Tensor, divisor: torch.Tensor, grid: _Grid, method: UniqueMethod
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Occupied cells [V, 3] in lexicographic order, the row of each point [N], points per cell [V]."""
    num_points = point_columns.shape[1]
    device = point_columns.device
    num_cells = grid.num_cells
    key_fits = num_cells - 1 <= INT64_MAX
    table_fits = num_cells <= TABLE_MAX_CELLS
    if method == "auto":
        if table_fits and num_cells <= max(TABLE_ALWAYS_CELLS, TABLE_CELLS_PER_POINT * num_points):
            method = "table"
        else:
            method = "sort" if key_fits else "rows"
    elif method == "table" and not table_fits:
        raise ValueError(f"the occupancy table would need {num_cells} cells, more than {TABLE_MAX_CELLS}")
    elif method == "sort" and not key_fits:
        raise ValueError(f"{num_cells} cells overflow an int64 linear key; use method='rows'")

    axis_cells = (_axis_cells(column, divisor, low) for column, low in zip(point_columns, grid.lowest))
    if method == "rows":
        cells = torch.stack(list(axis_cells), dim=1)
        coords, inverse, counts = torch.unique(cells, dim=0, return_inverse=True, return_counts=True)
        return coords, inverse, counts

    # Row-major key: lexicographic (x, y, z) order of cells is the numeric order of keys.
    keys = next(axis_cells)
    for extent, cells in zip(grid.extents[1:], axis_cells):
        keys *= extent
        keys += cells
    if method == "table":
        occupied = torch.zeros(num_cells, dtype=torch.bool, device=device)
        occupied.index_fill_(0, keys, True)
        unique_keys = occupied.nonzero().squeeze(1)
        row_of_cell = torch.empty(num_cells, dtype=torch.int64, device=device)
        row_of_cell.index_copy_(0, unique_keys, torch.arange(unique_keys.numel(), device=device))
        inverse = row_of_cell.index_select(0, keys)
        counts = torch.bincount(inverse, minlength=unique_keys.numel())
    else:
        if num_cells - 1 <= INT32_MAX:
            # Sorting 32-bit keys takes half the radix passes and memory traffic of 64-bit ones.
            keys = keys.to(torch.int32)
        unique_keys, inverse, counts = torch.unique(keys, sorted=True, return_inverse=True, return_counts=True)
        unique_keys = unique_keys.to(torch.int64)
    return _decode_keys(unique_keys, *grid.extents[1:]), inverse, counts


def _decode_keys(keys: torch.Tensor, extent_y: int, extent_z: int) -> torch.Tensor:
    """Invert the row-major key: [V] keys to [V, 3] cells, with two integer divisions per key."""
    coords = torch.empty((keys.numel(), SPATIAL_DIMS), dtype=torch.int64, device=keys.device)
    plane = extent_y * extent_z
    x = torch.div(keys, plane, rounding_mode="floor")
    within_plane = keys - x * plane
    y = torch.div(within_plane, extent_z, rounding_mode="floor")
    coords[:, 0] = x
    coords[:, 1] = y
    coords[:, 2] = within_plane - y * extent_z
    return coords


def _voxel_means(features: torch.Tensor, inverse: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """[V, C] float32 mean of ``features`` [N, C] per voxel, summed in float64."""
    if features.shape[1] <= BINCOUNT_MAX_CHANNELS:
        return _column_means(_float64_columns(features), inverse, counts)
    sums = torch.zeros((counts.numel(), features.shape[1]), dtype=torch.float64, device=features.device)
    sums.index_add_(0, inverse, features.to(torch.float64))
    sums /= counts[:, None]
    return sums.to(torch.float32)


def _column_means(columns: torch.Tensor, inverse: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """[V, C] float32 mean per voxel of [C, N] float64 ``columns``, one weighted bincount per column."""
    num_voxels = counts.numel()
    sums = torch.stack([torch.bincount(inverse, weights=column, minlength=num_voxels) for column in columns])
    sums /= counts
    means = torch.empty((num_voxels, columns.shape[0]), dtype=torch.float32, device=columns.device)
    return means.copy_(sums.t())
