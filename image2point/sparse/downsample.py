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
    table_entries,
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
    parents = coords.clone()
    parents[:, 1:] = torch.div(coords[:, 1:], DOWNSAMPLE_FACTOR, rounding_mode="floor")
    return parents


def _coords_by_position(fine: SiteIndex) -> torch.Tensor:
    return fine.coords if fine.rows_sorted else fine.coords[fine.row_at[:-1]]


def _parity_table(coords: torch.Tensor, kernel_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which fine sites (columns, by sorted position) each offset of a parent-built map pairs
    (``[K³, N]`` bool), and each offset's δ as a class ``4·δx + 2·δy + δz`` (``[K³]``)."""
    pad = (kernel_size - 1) // 2
    odd = coords[:, 1:] % 2  # [N, 3]
    parity_class = (4 * odd[:, 0] + 2 * odd[:, 1] + odd[:, 2]).to(torch.int8)
    shift = torch.arange(kernel_size, device=coords.device) - pad  # k - pad per kernel index
    # The parity of c along an axis is (k - pad) mod 2.
    wanted = shift % 2
    wanted_class = 4 * wanted[:, None, None] + 2 * wanted[None, :, None] + wanted[None, None, :]
    ok = parity_class[None, :] == wanted_class.reshape(-1, 1).to(torch.int8)
    delta = (shift < 0).long()
    delta_class = 4 * delta[:, None, None] + 2 * delta[None, :, None] + delta[None, None, :]
    return ok, delta_class.reshape(-1)


def _window(fine: SiteIndex) -> Downsampling:
    """Coarse sites = every ``q`` of the 3×3×3 stride-2 windows of the fine sites; their map alongside."""
    coords = _coords_by_position(fine)
    ok, _ = _parity_table(coords, WINDOW_KERNEL)
    flat = ok.view(-1).nonzero().squeeze(1)
    offset_id = torch.div(flat, ok.shape[1], rounding_mode="floor")
    position = flat - offset_id * ok.shape[1]
    shift = (kernel_offsets_3(coords.device) - 1)[offset_id]  # k - pad per pair
    candidates = coords[position].clone()
    candidates[:, 1:] = torch.div(candidates[:, 1:] - shift, DOWNSAMPLE_FACTOR, rounding_mode="floor")
    space = key_space(candidates, DEFAULT_MARGIN)
    coarse, out_index = sorted_unique_index(space.keys(candidates), space)
    in_index = position if fine.rows_sorted else fine.row_at[position]
    counts = torch.bincount(offset_id, minlength=WINDOW_KERNEL**3)
    window_map = KernelMap(in_index, out_index, tuple(counts.tolist()), fine.num_sites, coarse.num_sites,
                           WINDOW_KERNEL, in_ascending=fine.rows_sorted)
    # The parent pair of each fine site: the offset with k - pad in {0, 1} on every axis (8 of the 27).
    is_parent_offset = (shift >= 0).all(1)
    parent = out_index.new_empty(fine.num_sites + 1)
    parent.scatter_(0, torch.where(is_parent_offset, in_index, fine.num_sites), out_index)
    return Downsampling("window", coarse, parent[:-1], window_map)


def kernel_offsets_3(device) -> torch.Tensor:
    """``[27, 3]`` kernel indices (kx, ky, kz) of a 3×3×3 kernel in row-major order."""
    axis = torch.arange(WINDOW_KERNEL, device=device)
    return torch.cartesian_prod(axis, axis, axis)


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
    ok, delta_class = _parity_table(_coords_by_position(fine), kernel_size)
    parent = down.parent if fine.rows_sorted else down.parent[fine.row_at[:-1]]
    if bool((delta_class == 0).all()):
        candidates = parent[None, :].expand(delta_class.numel(), -1)
    else:
        by_class = _parent_neighbours(down.coarse).index_select(1, parent)
        candidates = by_class.index_select(0, delta_class)
    # A table over the fine sites (columns) of coarse rows: each offset's inputs come out ascending, and
    # their outputs ascend with them.
    _, position, out_index, counts = table_entries(torch.where(ok, candidates, -1))
    in_index = position if fine.rows_sorted else fine.row_at[position]
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
