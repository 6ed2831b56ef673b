"""Stride-2 levels: the coarse sites of a stride convention and the strided maps onto them, built from
the fine side (see :mod:`image2point.sparse.kernel_map` for the conventions and the geometry).

Per axis, a strided pair ``in = 2q + k - pad`` of a kernel of size K ≤ 3 joins a fine coordinate ``c``
of parity ``(k - pad) mod 2`` to ``q = (c - k + pad) / 2``, which is its parent ``floor(c / 2)`` or, for
``k - pad = -1``, the parent + 1. So every strided map of K ≤ 3 is a table over the fine sites:
offset ``k`` holds the fine sites of the matching parity, each paired with the coarse row of
``parent + δ(k)``, ``δ ∈ {0, 1}³``. The parent rows come out of the ``unique`` that finds the coarse
sites; the ``+1`` neighbours are a walk in the coarse keys. In ``window`` mode the coarse sites are by
definition all the ``q`` of a 3×3×3 window, so their ``unique`` returns that map outright.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from image2point.sparse.kernel_map import (
    DOWNSAMPLE_FACTOR,
    STRIDE_MODES,
    KernelMap,
    build_kernel_map,
    check_dilation,
    gather_table,
    pairs_of_table,
    reach,
)
from image2point.sparse.site_index import DEFAULT_MARGIN, SiteIndex, build_site_index, key_space, sorted_unique_index

# Kernels whose strided pairs are built from the parents (k - pad in {-1, 0, 1} on every axis).
PARENT_KERNEL_SIZES = (1, 2, 3)
# The window convention is defined by a 3×3×3 kernel with padding 1.
WINDOW_KERNEL = 3


@dataclass(frozen=True, eq=False)
class Downsampling:
    """A fine level's coarse sites under one convention, and each fine site's parent row among them."""

    mode: str
    coarse: SiteIndex
    parent: torch.Tensor  # [N_fine] coarse row of floor(c / 2), by fine row
    # window mode: the 3×3×3 strided map, a by-product of finding the sites
    window_map: KernelMap | None = None


def downsample(fine: SiteIndex, mode: str) -> Downsampling:
    """The next level of ``fine`` under ``mode`` (``floor`` or ``window``)."""
    if mode not in STRIDE_MODES:
        raise ValueError(f"unknown stride mode {mode!r}; choose one of {STRIDE_MODES}")
    if mode == "floor":
        parents = _parent_coords(fine.coords)
        space = key_space(parents, DEFAULT_MARGIN)
        coarse, parent = sorted_unique_index(space.keys(parents), space)
        return Downsampling(mode, coarse, parent)
    return _window(fine)


def _parent_coords(coords: torch.Tensor) -> torch.Tensor:
    """``floor(c / 2)`` (an arithmetic shift: int64 division is several times slower)."""
    parents = coords.clone()
    parents[:, 1:] = coords[:, 1:] >> 1
    return parents


def _coords_by_position(fine: SiteIndex) -> torch.Tensor:
    return fine.coords if fine.rows_sorted else fine.coords[fine.row_at[:-1]]


@dataclass(frozen=True)
class _ParityPairs:
    """The pairs of a parent-built strided map before their coarse rows are known: offset ``k`` holds the
    fine sites of parity class ``cls(k)``, in ascending position (``counts[k]`` of them)."""

    position: torch.Tensor  # [M] fine sorted position of each pair
    offset: torch.Tensor  # [M] offset id
    delta_class: torch.Tensor  # [K³] class 4·δx + 2·δy + δz of parent + δ, per offset
    counts: tuple[int, ...]


def _parity_pairs(coords: torch.Tensor, kernel_size: int) -> _ParityPairs:
    """Fine sites grouped by parity class (one stable sort of an int8 key), and each offset's class
    slice: per axis the parity of ``c`` is ``(k - pad) mod 2`` and ``δ = 1`` where ``k - pad = -1``."""
    pad = (kernel_size - 1) // 2
    odd = coords[:, 1:] & 1  # [N, 3]
    parity_class = (4 * odd[:, 0] + 2 * odd[:, 1] + odd[:, 2]).to(torch.int8)
    by_class = torch.sort(parity_class, stable=True).indices
    class_sizes = torch.bincount(parity_class.long(), minlength=8).tolist()
    class_starts = [0]
    for size in class_sizes:
        class_starts.append(class_starts[-1] + size)
    slices, counts, delta_classes = [], [], []
    for kx in range(kernel_size):
        for ky in range(kernel_size):
            for kz in range(kernel_size):
                shift = (kx - pad, ky - pad, kz - pad)
                wanted = 4 * (shift[0] & 1) + 2 * (shift[1] & 1) + (shift[2] & 1)
                delta_classes.append(4 * (shift[0] < 0) + 2 * (shift[1] < 0) + (shift[2] < 0))
                slices.append(by_class[class_starts[wanted]:class_starts[wanted + 1]])
                counts.append(class_sizes[wanted])
    device = coords.device
    offset = torch.repeat_interleave(torch.arange(len(counts), device=device), torch.tensor(counts, device=device))
    return _ParityPairs(torch.cat(slices), offset, torch.tensor(delta_classes, device=device), tuple(counts))


# Key offset of the +1 neighbour per δ class (4·δx + 2·δy + δz).
_DELTAS = ((0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1))


def _window(fine: SiteIndex) -> Downsampling:
    """Coarse sites = every ``q`` of the 3×3×3 stride-2 windows of the fine sites: the parents, and their
    +1 neighbours along the axes where the fine coordinate is odd. The 3×3×3 map comes with them."""
    coords = _coords_by_position(fine)
    pairs = _parity_pairs(coords, WINDOW_KERNEL)
    parents = _parent_coords(coords)
    space = key_space(parents, DEFAULT_MARGIN)
    delta_keys = torch.tensor([space.offset_key(*delta) for delta in _DELTAS], device=coords.device)
    candidates = space.keys(parents).index_select(0, pairs.position)
    candidates += delta_keys.index_select(0, pairs.delta_class).index_select(0, pairs.offset)
    coarse, out_index = sorted_unique_index(candidates, space)
    in_index = pairs.position if fine.rows_sorted else fine.row_at[pairs.position]
    window_map = KernelMap(in_index, out_index, pairs.counts, fine.num_sites, coarse.num_sites, WINDOW_KERNEL,
                           in_ascending=fine.rows_sorted)
    # The parent pair of each fine site: the offset with k - pad in {0, 1} on every axis (δ = 0).
    is_parent_pair = pairs.delta_class.index_select(0, pairs.offset) == 0
    parent = out_index.new_empty(fine.num_sites + 1)
    parent.scatter_(0, torch.where(is_parent_pair, in_index, fine.num_sites), out_index)
    return Downsampling("window", coarse, parent[:-1], window_map)


def _parent_neighbours(coarse: SiteIndex) -> torch.Tensor:
    """``[8, N_coarse]`` rows of each coarse site + δ for δ in {0, 1}³ (class ``4·δx + 2·δy + δz``; -1:
    absent). Coarse rows are sorted, so positions are rows."""
    keys = coarse.sorted_keys
    table = keys.new_empty((8, coarse.num_sites))
    for dx in (0, 1):
        for dy in (0, 1):
            start = keys + coarse.space.offset_key(dx, dy, 0)
            first = 4 * dx + 2 * dy
            for dz, found in enumerate(coarse.walk(start, 2)):
                table[first + dz] = found
    return table


def strided_map(fine: SiteIndex, down: Downsampling, kernel_size: int, dilation: int = 1) -> KernelMap:
    """The stride-2 map from ``fine`` onto ``down``'s coarse sites (``in = 2q + d·(k - pad)``)."""
    check_dilation(kernel_size, dilation)
    num_out = down.coarse.num_sites
    if dilation == 1 and kernel_size == WINDOW_KERNEL and down.window_map is not None:
        return down.window_map
    if dilation != 1 or kernel_size not in PARENT_KERNEL_SIZES:
        return _searched_strided_map(fine, down, kernel_size, dilation)
    if fine.num_sites == 0:
        return build_kernel_map(fine.coords, down.coarse.coords, kernel_size, DOWNSAMPLE_FACTOR)
    pairs = _parity_pairs(_coords_by_position(fine), kernel_size)
    parent = down.parent if fine.rows_sorted else down.parent[fine.row_at[:-1]]
    parent_of_pair = parent.index_select(0, pairs.position)
    in_index = pairs.position if fine.rows_sorted else fine.row_at[pairs.position]
    counts = pairs.counts
    if bool((pairs.delta_class == 0).all()):
        out_index = parent_of_pair
    else:
        # Rows of parent + δ (absent for some pairs under floor): one lookup table for the coarse level.
        delta_of_pair = pairs.delta_class.index_select(0, pairs.offset)
        out_index = _parent_neighbours(down.coarse).view(-1).index_select(0, delta_of_pair * num_out + parent_of_pair)
        present = out_index >= 0
        in_index, out_index = in_index[present], out_index[present]
        counts = tuple(torch.bincount(pairs.offset[present], minlength=len(counts)).tolist())
    # Within an offset the fine sites ascend and so do their parents (c = 2p + parity is monotone in p).
    return KernelMap(in_index, out_index, counts, fine.num_sites, num_out, kernel_size,
                     in_ascending=fine.rows_sorted)


def _searched_strided_map(fine: SiteIndex, down: Downsampling, kernel_size: int, dilation: int) -> KernelMap:
    """Dilated or large kernels: a search from the coarse side in the fine keys."""
    if reach(kernel_size, DOWNSAMPLE_FACTOR, dilation) + 1 > fine.space.margin:
        fine = build_site_index(fine.coords, reach(kernel_size, DOWNSAMPLE_FACTOR, dilation) + 1)
    base = down.coarse.coords.clone()
    base[:, 1:] *= DOWNSAMPLE_FACTOR
    positions = gather_table(fine, fine.space.keys(base), kernel_size, dilation)
    table = positions if fine.rows_sorted else torch.where(positions >= 0, fine.row_at[positions.clamp(min=0)], -1)
    return pairs_of_table(table, fine.num_sites, down.coarse.num_sites, kernel_size, dilation,
                          in_ascending=fine.rows_sorted)


def downsample_coords(coords: torch.Tensor, mode: str) -> torch.Tensor:
    """Sites of the next level (stride ×2) under a stride convention, sorted by (batch, x, y, z)."""
    if coords.shape[0] == 0:
        if mode not in STRIDE_MODES:
            raise ValueError(f"unknown stride mode {mode!r}; choose one of {STRIDE_MODES}")
        return coords.clone()
    return downsample(build_site_index(coords, DEFAULT_MARGIN), mode).coarse.coords
