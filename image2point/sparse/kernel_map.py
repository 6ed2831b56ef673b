"""Kernel maps: which input site feeds which output site through which kernel offset.

A convolution of kernel size K over sparse sites is a sum over the K³ kernel offsets of
``out[j] += W[k] · in[i]`` for every pair ``(i, j)`` of that offset. Pairs are found through the sorted
keys of a coordinate set (:class:`~image2point.sparse.site_index.SiteIndex`, one per level), all offsets
of a map together: one search per column offset ``(dx, dy)``, the ``dz`` neighbours by walking the
column's run of keys, then one ``nonzero`` over a ``[K³, N]`` table of found positions.

Geometry, per spatial axis, with ``pad = (K - 1) // 2`` and kernel index ``k`` in ``[0, K)``:

- submanifold (stride 1): output sites are the input sites; ``in = out + k - pad``. Offsets ``o`` and
  ``-o`` hold the same pairs read backwards, so only half of the columns are searched.
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

Every fine site ``c`` has its *parent* ``floor(c / 2)`` on the coarse level under both conventions, and
for K ≤ 3 the strided pairs of ``c`` go to its parent or the parent's +1 neighbours (:mod:`.downsample`
builds them from the fine side, without searching the fine keys).

Kernel offsets are flattened row-major ``k = (kx * K + ky) * K + kz``, the order of the last three axes
of a torch weight ``[Cout, Cin, K, K, K]``. Within an offset, pairs are sorted by output row, and — for
coordinate rows in ``(batch, x, y, z)`` order, as voxelization and downsampling produce them — by input
row too (``in_ascending``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from image2point.sparse.site_index import (
    DEFAULT_MARGIN,
    TABLE_CELLS_PER_SITE,
    TABLE_MIN_CELLS,
    SiteIndex,
    build_site_index,
    key_space,
)

__all__ = ["DOWNSAMPLE_FACTOR", "STRIDE_MODES", "TABLE_CELLS_PER_SITE", "TABLE_MIN_CELLS", "KernelMap",
           "build_kernel_map", "check_dilation", "kernel_offsets", "submanifold_map"]

STRIDE_MODES = ("floor", "window")
DOWNSAMPLE_FACTOR = 2


@dataclass(frozen=True)
class KernelMap:
    """Pairs grouped by kernel offset: ``in_index[starts[k]:starts[k+1]]`` feeds ``out_index[...]``.

    Within each offset ``out_index`` ascends; ``in_ascending`` says whether ``in_index`` does too (then
    the transposed map needs no sort, and a backward pass scatters into ascending rows as well).
    """

    in_index: torch.Tensor
    out_index: torch.Tensor
    counts: tuple[int, ...]
    num_in: int
    num_out: int
    kernel_size: int
    # Offset whose pairs are (i, i) for every site: submanifold centre, handled as one plain matmul.
    identity_offset: int | None = None
    dilation: int = 1
    in_ascending: bool = False

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
        in_index, out_index = self.out_index, self.in_index
        if not self.in_ascending:
            out_index, in_index = sort_within_offsets(out_index, in_index, self.counts, self.num_in)
        return KernelMap(in_index, out_index, self.counts, self.num_out, self.num_in, self.kernel_size,
                         self.identity_offset, self.dilation, in_ascending=True)


def sort_within_offsets(destination: torch.Tensor, source: torch.Tensor, counts: tuple[int, ...],
                        num_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Both index arrays reordered so ``destination`` ascends within each offset's group."""
    offset_of_pair = torch.repeat_interleave(torch.arange(len(counts), device=destination.device),
                                             torch.tensor(counts, device=destination.device))
    # Keys are unique (a destination appears once per offset), so an unstable sort is deterministic.
    order = torch.sort(offset_of_pair * max(num_rows, 1) + destination).indices
    return destination[order], source[order]


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


def reach(kernel_size: int, stride: int, dilation: int = 1) -> int:
    """How many cells past a site a query of this map can land (the key-space margin it needs)."""
    pad = (kernel_size - 1) // 2
    return dilation * max(pad, kernel_size - 1 - pad) + (stride - 1)


def _empty_map(num_in: int, num_out: int, kernel_size: int, dilation: int, device) -> KernelMap:
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    return KernelMap(empty, empty, (0,) * kernel_size**3, num_in, num_out, kernel_size, dilation=dilation,
                     in_ascending=True)


def table_entries(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """The entries ≥ 0 of a ``[R, M]`` table in row-major order: (row, column, value, count per row),
    with one ``nonzero`` and one host sync for all rows."""
    present = table >= 0
    row, column = present.nonzero(as_tuple=True)
    counts = present.sum(1)
    return row, column, table.view(-1).index_select(0, row * table.shape[1] + column), tuple(counts.tolist())


def pairs_of_table(table: torch.Tensor, num_in: int, num_out: int, kernel_size: int, dilation: int = 1,
                   identity_offset: int | None = None, in_ascending: bool = True) -> KernelMap:
    """The map of a ``[K³, num_out]`` table of input rows (-1: no pair)."""
    _, out_index, in_index, counts = table_entries(table)
    return KernelMap(in_index, out_index, counts, num_in, num_out, kernel_size, identity_offset, dilation,
                     in_ascending)


def from_positions(index: SiteIndex, positions: torch.Tensor) -> torch.Tensor:
    """Sorted positions (-1: none) as rows of ``index``'s coordinates."""
    if index.rows_sorted:
        return positions
    return torch.where(positions >= 0, index.row_at[positions.clamp(min=0)], -1)


def gather_table(index: SiteIndex, base_keys: torch.Tensor, kernel_size: int, dilation: int) -> torch.Tensor:
    """``[K³, M]`` sorted positions of the sites at ``base + dilation * (k - pad)`` (-1 where absent):
    one search per column ``(kx, ky)``, its K cells along z walked."""
    pad = (kernel_size - 1) // 2
    table = base_keys.new_empty((kernel_size**3, base_keys.numel()))
    for kx in range(kernel_size):
        for ky in range(kernel_size):
            start = base_keys + index.space.offset_key(dilation * (kx - pad), dilation * (ky - pad), -dilation * pad)
            first = (kx * kernel_size + ky) * kernel_size
            index.walk(start, kernel_size, dilation, out=table[first:first + kernel_size])
    return table


def _upper_half_table(index: SiteIndex, kernel_size: int, dilation: int) -> torch.Tensor:
    """``[(K³ - 1) / 2, N]`` sorted positions of each site's neighbour through the offsets after the
    centre (flat index ``centre + 1 + h``; -1 where absent). Those are the columns ``(kx, ky)`` after the
    centre column and the upper half of the centre column: a site's neighbours there start right after
    it in the sorted keys, so that half needs no search."""
    pad = (kernel_size - 1) // 2
    keys = index.sorted_keys
    table = keys.new_empty(((kernel_size**3 - 1) // 2, index.num_sites))
    if dilation == 1:
        absent = keys.new_full((), -1)
        position = torch.arange(1, index.num_sites + 1, device=keys.device)
        for step in range(pad):
            hit = index.keys.index_select(0, position) == keys + step + 1
            torch.where(hit, position, absent, out=table[step])
            position = position + hit
    else:
        index.walk(keys + dilation, pad, dilation, out=table[:pad])
    for column in range(pad * kernel_size + pad + 1, kernel_size**2):
        kx, ky = divmod(column, kernel_size)
        start = keys + index.space.offset_key(dilation * (kx - pad), dilation * (ky - pad), -dilation * pad)
        first = pad + (column - (pad * kernel_size + pad + 1)) * kernel_size
        index.walk(start, kernel_size, dilation, out=table[first:first + kernel_size])
    return table


def submanifold_map(index: SiteIndex, kernel_size: int, dilation: int = 1) -> KernelMap:
    """The stride-1 map of a coordinate set onto itself (odd ``kernel_size``).

    Offset ``o`` and its mirror ``-o`` hold the same pairs read backwards, and for sorted rows in the
    same order (both indices ascend together), so the upper half of the offsets is searched and the
    lower half is its pairs swapped.
    """
    check_dilation(kernel_size, dilation)
    num_sites = index.num_sites
    if kernel_size % 2 == 0:
        return build_kernel_map(index.coords, index.coords, kernel_size, 1, dilation)
    if num_sites == 0:
        return _empty_map(0, 0, kernel_size, dilation, index.keys.device)
    if reach(kernel_size, 1, dilation) > index.space.margin:
        index = build_site_index(index.coords, reach(kernel_size, 1, dilation))
    _, out_position, in_position, half_counts = table_entries(_upper_half_table(index, kernel_size, dilation))
    in_rows, out_rows = from_positions(index, in_position), from_positions(index, out_position)
    starts = [0]
    for count in half_counts:
        starts.append(starts[-1] + count)
    half = len(half_counts)
    identity = torch.arange(num_sites, device=in_rows.device)
    ins, outs = [], []
    for mirrored in reversed(range(half)):  # offsets before the centre: the upper half swapped
        ins.append(out_rows[starts[mirrored]:starts[mirrored + 1]])
        outs.append(in_rows[starts[mirrored]:starts[mirrored + 1]])
    ins.append(identity)
    outs.append(identity)
    for searched in range(half):
        ins.append(in_rows[starts[searched]:starts[searched + 1]])
        outs.append(out_rows[starts[searched]:starts[searched + 1]])
    counts = tuple(reversed(half_counts)) + (num_sites,) + half_counts
    kernel_map = KernelMap(torch.cat(ins), torch.cat(outs), counts, num_sites, num_sites, kernel_size,
                           half, dilation, in_ascending=index.rows_sorted)
    if index.rows_sorted:
        return kernel_map
    out_index, in_index = sort_within_offsets(kernel_map.out_index, kernel_map.in_index, counts, num_sites)
    return KernelMap(in_index, out_index, counts, num_sites, num_sites, kernel_size, half, dilation)


def build_kernel_map(
    in_coords: torch.Tensor, out_coords: torch.Tensor, kernel_size: int, stride: int, dilation: int = 1
) -> KernelMap:
    """Pairs for ``in = stride * out + dilation * (k - pad)``; ``stride`` 1 (submanifold) or 2 (strided).

    For any two coordinate sets; networks use the per-level indices of :mod:`image2point.sparse.functional`
    instead, which share the keys of a level across its maps.
    """
    if stride not in (1, DOWNSAMPLE_FACTOR):
        raise ValueError(f"stride must be 1 or {DOWNSAMPLE_FACTOR}, got {stride}")
    check_dilation(kernel_size, dilation)
    if in_coords.shape[0] == 0 or out_coords.shape[0] == 0:
        return _empty_map(in_coords.shape[0], out_coords.shape[0], kernel_size, dilation, in_coords.device)
    margin = reach(kernel_size, stride, dilation)
    if stride == 1 and kernel_size % 2 == 1 and (out_coords is in_coords or torch.equal(out_coords, in_coords)):
        return submanifold_map(build_site_index(in_coords, margin), kernel_size, dilation)
    base = out_coords.clone()
    base[:, 1:] *= stride
    # One key space over both extents, with room for every offset, so no query wraps into another row.
    space = key_space(torch.cat([in_coords, base]), margin)
    index = build_site_index(in_coords, space=space)
    table = from_positions(index, gather_table(index, space.keys(base), kernel_size, dilation))
    identity = kernel_size**3 // 2 if stride == 1 and kernel_size % 2 == 1 else None
    return pairs_of_table(table, in_coords.shape[0], out_coords.shape[0], kernel_size, dilation, identity,
                          in_ascending=index.rows_sorted and _ascending(out_coords, space))


def _ascending(coords: torch.Tensor, space) -> bool:
    keys = space.keys(coords)
    return keys.numel() < 2 or bool((keys[1:] > keys[:-1]).all())

