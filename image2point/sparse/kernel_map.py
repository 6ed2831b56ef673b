"""Kernel maps: which input site feeds which output site through which kernel offset.

A convolution of kernel size K over sparse sites is a sum over the K³ kernel offsets of
``out[j] += W[k] · in[i]`` for every pair ``(i, j)`` of that offset. This module finds those pairs from
int64 keys of the coordinates: the input keys are sorted once, and each (output site, offset) query is a
``searchsorted`` into them. Everything is vectorised over sites and offsets.

Geometry, per spatial axis, with ``pad = (K - 1) // 2`` and kernel index ``k`` in ``[0, K)``:

- submanifold (stride 1): output sites are the input sites; ``in = out + k - pad``.
- strided (stride 2): ``in = 2 * out + k - pad`` — the geometry of ``F.conv3d(stride=2,
  padding=(K - 1) // 2)``. The *output sites* come from the stride convention (below), shared by every
  stride-2 layer of a level, so the main branch and the shortcut of a residual block line up.
- inverse (transposed, for decoders): the pairs of the strided map read the other way round, writing
  onto the finer level's known sites.
- dilated (dilation d, odd K): the offsets are spread d apart, ``in = stride * out + d * (k - pad)``,
  the geometry of ``F.conv3d(stride, padding=d * (K - 1) // 2, dilation=d)``. Even kernels (the 2×2×2
  maps of strided layers) take no dilation: their dense padding ``d * (K - 1) // 2`` is not ``d * pad``.

Stride conventions (how the sites of level 2s are chosen from the sites of level s):

- ``floor``: ``unique(floor(c / 2))``. Each coarse site covers a 2×2×2 block; the voxel count shrinks
  about as much as in a dense network (the default: later stages are cheaper). These are the sites of
  the authors' engine, torchsparse 1.2.0 (pinned in their README): its stride-2 convolution keeps the
  floored coordinates (``spdownsample``) and gathers each one's window, ``in = 2 * out + k - pad``.
- ``window``: every site whose 3×3×3 stride-2 window (padding 1) holds an input site — the sites of
  spconv's ``SparseConv3d(kernel_size=3, stride=2, padding=1)`` (given a ``spatial_shape`` with a
  margin; a tight one makes spconv drop the last row along odd extents). The voxel count barely
  shrinks.

Kernel offsets are flattened row-major ``k = (kx * K + ky) * K + kz``, the order of the last three axes
of a torch weight ``[Cout, Cin, K, K, K]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

STRIDE_MODES = ("floor", "window")
DOWNSAMPLE_FACTOR = 2
# Below this many grid cells (or this many per input site) a dense cell → row table replaces the binary
# search: one gather per query instead of log2(N) probes. 2**22 int64 cells are 32 MiB.
TABLE_MIN_CELLS = 2**22
TABLE_CELLS_PER_SITE = 32
# The window convention is defined by a 3×3×3 kernel with padding 1.
_WINDOW_KERNEL = 3


@dataclass(frozen=True)
class KernelMap:
    """Pairs grouped by kernel offset: ``in_index[starts[k]:starts[k+1]]`` feeds ``out_index[...]``."""

    in_index: torch.Tensor
    out_index: torch.Tensor
    counts: tuple[int, ...]
    num_in: int
    num_out: int
    kernel_size: int
    # Offset whose pairs are (i, i) for every site: submanifold centre, handled as one plain matmul.
    identity_offset: int | None = None
    dilation: int = 1

    @property
    def starts(self) -> list[int]:
        starts = [0]
        for count in self.counts:
            starts.append(starts[-1] + count)
        return starts

    @property
    def max_count(self) -> int:
        return max(self.counts, default=0)

    def transposed(self) -> "KernelMap":
        """The same pairs with inputs and outputs swapped (the map of the transposed convolution)."""
        return KernelMap(self.out_index, self.in_index, self.counts, self.num_out, self.num_in,
                         self.kernel_size, self.identity_offset, self.dilation)


def kernel_offsets(kernel_size: int, device: torch.device | None = None, dilation: int = 1) -> torch.Tensor:
    """``[K³, 3]`` int64 offsets ``dilation * (k - pad)`` in row-major kernel order."""
    pad = (kernel_size - 1) // 2
    axis = (torch.arange(kernel_size, device=device) - pad) * dilation
    return torch.cartesian_prod(axis, axis, axis).reshape(-1, 3)


def check_dilation(kernel_size: int, dilation: int) -> None:
    """Dilation is a positive int, and only odd kernels take one above 1 (see the module docstring)."""
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
        raise ValueError(f"dilation must be an integer >= 1, got {dilation!r}")
    if dilation != 1 and kernel_size % 2 == 0:
        raise ValueError(f"dilation {dilation} needs an odd kernel size, got {kernel_size}")


@dataclass(frozen=True)
class _KeySpace:
    """Linear int64 keys of (batch, x, y, z) with a margin so that offsets never wrap across rows."""

    low: torch.Tensor  # [3] minimum coordinate minus the margin
    dims: tuple[int, int, int]
    batches: int

    @property
    def num_cells(self) -> int:
        dx, dy, dz = self.dims
        return self.batches * dx * dy * dz

    def keys(self, coords: torch.Tensor) -> torch.Tensor:
        shifted = coords[:, 1:] - self.low
        dx, dy, dz = self.dims
        return ((coords[:, 0] * dx + shifted[:, 0]) * dy + shifted[:, 1]) * dz + shifted[:, 2]

    def offset_keys(self, offsets: torch.Tensor) -> torch.Tensor:
        _, dy, dz = self.dims
        return (offsets[:, 0] * dy + offsets[:, 1]) * dz + offsets[:, 2]


def _key_space(coords: torch.Tensor, margin: int) -> _KeySpace:
    spatial = coords[:, 1:]
    low = spatial.min(0).values - margin
    high = spatial.max(0).values + margin
    dims = tuple(int(v) for v in (high - low + 1).tolist())
    batches = int(coords[:, 0].max()) + 1
    total = batches * dims[0] * dims[1] * dims[2]
    if total >= 2**62:
        raise ValueError(f"coordinate extent {dims} × {batches} batches is too large for int64 keys")
    return _KeySpace(low, dims, batches)


def _sorted_keys(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Keys in ascending order and the permutation that sorts them (None when already sorted)."""
    if keys.numel() < 2 or bool((keys[1:] > keys[:-1]).all()):
        return keys, None
    sorted_keys, order = torch.sort(keys)
    return sorted_keys, order


def _lookup(sorted_keys: torch.Tensor, order: torch.Tensor | None, queries: torch.Tensor):
    """Row index of each query key in the original (unsorted) key array, and whether it was found."""
    position = torch.searchsorted(sorted_keys, queries).clamp_(max=sorted_keys.numel() - 1)
    found = sorted_keys[position] == queries
    index = position if order is None else order[position]
    return index, found


def _row_finder(space: _KeySpace, keys: torch.Tensor):
    """A function from query keys to (row index, found): a dense table when the grid is small, else a
    binary search in the sorted keys."""
    if space.num_cells <= max(TABLE_MIN_CELLS, TABLE_CELLS_PER_SITE * keys.numel()):
        table = torch.full((space.num_cells,), -1, dtype=torch.int64, device=keys.device)
        table[keys] = torch.arange(keys.numel(), device=keys.device)

        def from_table(queries: torch.Tensor):
            index = table[queries]
            return index, index >= 0

        return from_table
    sorted_keys, order = _sorted_keys(keys)
    return lambda queries: _lookup(sorted_keys, order, queries)


def build_kernel_map(
    in_coords: torch.Tensor, out_coords: torch.Tensor, kernel_size: int, stride: int, dilation: int = 1
) -> KernelMap:
    """Pairs for ``in = stride * out + dilation * (k - pad)``; ``stride`` 1 (submanifold) or 2 (strided)."""
    if stride not in (1, DOWNSAMPLE_FACTOR):
        raise ValueError(f"stride must be 1 or {DOWNSAMPLE_FACTOR}, got {stride}")
    check_dilation(kernel_size, dilation)
    device = in_coords.device
    num_offsets = kernel_size**3
    if in_coords.shape[0] == 0 or out_coords.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return KernelMap(empty, empty, (0,) * num_offsets, in_coords.shape[0], out_coords.shape[0], kernel_size,
                         dilation=dilation)

    base = out_coords.clone()
    base[:, 1:] *= stride
    # One key space over both extents, with room for every offset, so no query wraps into another row.
    space = _key_space(torch.cat([in_coords, base]), margin=kernel_size * dilation)
    find_rows = _row_finder(space, space.keys(in_coords))
    offset_keys = space.offset_keys(kernel_offsets(kernel_size, device, dilation))

    # [K³, N_out] so that nonzero() returns pairs grouped by offset, outputs ascending within each.
    queries = offset_keys[:, None] + space.keys(base)[None, :]
    in_index, found = find_rows(queries)
    offset_id, out_index = found.nonzero(as_tuple=True)
    counts = torch.bincount(offset_id, minlength=num_offsets)
    identity = num_offsets // 2 if stride == 1 and kernel_size % 2 == 1 else None
    return KernelMap(
        in_index=in_index[offset_id, out_index],
        out_index=out_index,
        counts=tuple(counts.tolist()),
        num_in=in_coords.shape[0],
        num_out=out_coords.shape[0],
        kernel_size=kernel_size,
        identity_offset=identity,
        dilation=dilation,
    )


def downsample_coords(coords: torch.Tensor, mode: str) -> torch.Tensor:
    """Sites of the next level (stride ×2) under a stride convention, sorted by (batch, x, y, z)."""
    if mode not in STRIDE_MODES:
        raise ValueError(f"unknown stride mode {mode!r}; choose one of {STRIDE_MODES}")
    if coords.shape[0] == 0:
        return coords.clone()
    if mode == "floor":
        candidates = coords.clone()
        candidates[:, 1:] = torch.div(coords[:, 1:], DOWNSAMPLE_FACTOR, rounding_mode="floor")
    else:
        # Per axis an even c lies in the window of c/2 only, an odd c in those of (c-1)/2 and (c+1)/2.
        pad = (_WINDOW_KERNEL - 1) // 2
        corners = torch.cartesian_prod(*[torch.tensor([-pad, pad], device=coords.device)] * 3)
        shifted = coords[:, None, 1:] + corners[None]
        spatial = torch.div(shifted + 1, DOWNSAMPLE_FACTOR, rounding_mode="floor")
        batch = coords[:, None, :1].expand(-1, corners.shape[0], 1)
        candidates = torch.cat([batch, spatial], dim=2).reshape(-1, 4)
        candidates = candidates[_inside_window(coords, candidates)]
    space = _key_space(candidates, margin=0)
    keys = torch.unique(space.keys(candidates))
    return _decode_keys(keys, space)


def _inside_window(coords: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Candidates q (8 per input c, in the same order) whose window [2q - 1, 2q + 1] holds c."""
    pad = (_WINDOW_KERNEL - 1) // 2
    source = coords[:, None, 1:].expand(-1, 8, 3).reshape(-1, 3)
    delta = source - DOWNSAMPLE_FACTOR * candidates[:, 1:]
    return ((delta >= -pad) & (delta <= pad)).all(1)


def _decode_keys(keys: torch.Tensor, space: _KeySpace) -> torch.Tensor:
    dx, dy, dz = space.dims
    z = keys % dz
    rest = keys // dz
    y = rest % dy
    rest = rest // dy
    x = rest % dx
    batch = rest // dx
    spatial = torch.stack([x, y, z], 1) + space.low
    return torch.cat([batch[:, None], spatial], 1)
