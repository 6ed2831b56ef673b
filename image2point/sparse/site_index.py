"""The lookup structure of one coordinate set: its int64 keys, sorted once, shared by every kernel map
from or onto that set.

A site ``(batch, x, y, z)`` has the key ``((batch·DX + x')·DY + y')·DZ + z'`` (primes: shifted by the
set's minimum minus a margin), so keys order sites like ``(batch, x, y, z)`` rows and a kernel offset
``(dx, dy, dz)`` adds a constant to a key. Along z, consecutive cells have consecutive keys: the sites of
one ``(batch, x, y)`` column form a run of the sorted keys. A lookup therefore needs one search per
column offset ``(dx, dy)``; the ``dz`` neighbours are found by *walking* that run (each hit moves one
position on), not by a search each.

"Where is the first key ≥ q" is a ``searchsorted`` in the keys, or, when the grid is small (few cells
per site), one gather from a dense table of ranks (number of keys below each cell).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Below this many grid cells (or this many per site) a dense rank table replaces the binary search: one
# gather per query instead of log2(N) probes. 2**22 int32 cells are 16 MiB.
TABLE_MIN_CELLS = 2**22
TABLE_CELLS_PER_SITE = 32
# Room around the sites, in cells along each axis, for queries reaching past them (offsets of
# submanifold kernels up to 7×7×7 and the windows of stride-2 maps); a map that reaches farther builds
# an index with a wider margin.
DEFAULT_MARGIN = 4
# Above every key: the last position of the padded key array (walks stop there).
SENTINEL_KEY = torch.iinfo(torch.int64).max
MAX_CELLS = 2**62


@dataclass(frozen=True)
class KeySpace:
    """Linear int64 keys of (batch, x, y, z) with a margin so that offsets never wrap across rows."""

    low: torch.Tensor  # [3] minimum coordinate minus the margin
    dims: tuple[int, int, int]
    batches: int
    margin: int

    @property
    def num_cells(self) -> int:
        dx, dy, dz = self.dims
        return self.batches * dx * dy * dz

    def keys(self, coords: torch.Tensor) -> torch.Tensor:
        shifted = coords[:, 1:] - self.low
        dx, dy, dz = self.dims
        return ((coords[:, 0] * dx + shifted[:, 0]) * dy + shifted[:, 1]) * dz + shifted[:, 2]

    def offset_key(self, dx: int, dy: int, dz: int) -> int:
        _, size_y, size_z = self.dims
        return (dx * size_y + dy) * size_z + dz

    def offset_keys(self, offsets: torch.Tensor) -> torch.Tensor:
        _, size_y, size_z = self.dims
        return (offsets[:, 0] * size_y + offsets[:, 1]) * size_z + offsets[:, 2]

    def decode(self, keys: torch.Tensor) -> torch.Tensor:
        """[N, 4] coordinates of keys (the inverse of :meth:`keys`)."""
        dx, dy, dz = self.dims
        z = keys % dz
        rest = keys // dz
        y = rest % dy
        rest = rest // dy
        x = rest % dx
        batch = rest // dx
        spatial = torch.stack([x, y, z], 1) + self.low
        return torch.cat([batch[:, None], spatial], 1)


def key_space(coords: torch.Tensor, margin: int) -> KeySpace:
    """The smallest key space holding ``coords`` with ``margin`` free cells on every side (one host sync)."""
    spatial = coords[:, 1:]
    extremes = torch.cat([spatial.min(0).values, spatial.max(0).values, coords[:, :1].max(0).values])
    values = extremes.tolist()
    low = spatial.new_tensor(values[:3]) - margin
    dims = tuple(int(high - low_value + 1 + 2 * margin) for low_value, high in zip(values[:3], values[3:6]))
    batches = int(values[6]) + 1
    if batches * dims[0] * dims[1] * dims[2] >= MAX_CELLS:
        raise ValueError(f"coordinate extent {dims} × {batches} batches is too large for int64 keys")
    return KeySpace(low, dims, batches, margin)


@dataclass(frozen=True, eq=False)
class SiteIndex:
    """Sorted keys of one coordinate set; positions below index the sorted order."""

    coords: torch.Tensor
    space: KeySpace
    keys: torch.Tensor  # [N + 1] int64, ascending, then SENTINEL_KEY
    # Row of the site at each sorted position, then -1 (for the sentinel); None when rows are sorted.
    row_at: torch.Tensor | None
    rank: torch.Tensor | None  # [cells] number of keys below each cell (small grids only)

    @property
    def num_sites(self) -> int:
        return self.keys.numel() - 1

    @property
    def rows_sorted(self) -> bool:
        return self.row_at is None

    @property
    def sorted_keys(self) -> torch.Tensor:
        return self.keys[:-1]

    def first_at_least(self, queries: torch.Tensor) -> torch.Tensor:
        """Position of the first key ≥ each query (``num_sites`` past the last)."""
        if self.rank is not None:
            return self.rank.index_select(0, queries.view(-1)).view(queries.shape).long()
        return torch.searchsorted(self.keys, queries)

    def rows(self, positions: torch.Tensor) -> torch.Tensor:
        """Rows of sorted positions (``num_sites`` → -1)."""
        if self.row_at is None:
            return torch.where(positions < self.num_sites, positions, -1)
        return self.row_at.index_select(0, positions.view(-1)).view(positions.shape)

    def walk(self, start_keys: torch.Tensor, steps: int, stride: int = 1,
             out: torch.Tensor | None = None) -> torch.Tensor:
        """``[steps, M]`` positions of the keys ``start + s·stride`` for ``s < steps`` (-1 where absent),
        written into ``out`` when given.

        With ``stride`` 1 one search serves all steps (the keys of a column are consecutive); otherwise
        each step is a search of its own.
        """
        found = start_keys.new_empty((steps, start_keys.numel())) if out is None else out
        absent = start_keys.new_full((), -1)
        position = None
        for step in range(steps):
            target = start_keys + step * stride
            if position is None or stride != 1:
                position = self.first_at_least(target)
            hit = self.keys.index_select(0, position) == target
            torch.where(hit, position, absent, out=found[step])
            position = position + hit
        return found

    def positions_of(self, queries: torch.Tensor) -> torch.Tensor:
        """Position of each query key (-1 where absent)."""
        return self.walk(queries, 1)[0]


def _wants_table(space: KeySpace, num_sites: int) -> bool:
    return space.num_cells <= max(TABLE_MIN_CELLS, TABLE_CELLS_PER_SITE * num_sites)


def build_site_index(coords: torch.Tensor, margin: int = DEFAULT_MARGIN, space: KeySpace | None = None,
                     keys: torch.Tensor | None = None) -> SiteIndex:
    """The index of ``coords`` (keys computed here unless given, in ``space`` or a fresh one)."""
    space = space or key_space(coords, margin)
    keys = space.keys(coords) if keys is None else keys
    row_at = None
    if keys.numel() > 1 and not bool((keys[1:] > keys[:-1]).all()):
        keys, row_at = torch.sort(keys)
        row_at = torch.cat([row_at, row_at.new_full((1,), -1)])
    padded = torch.cat([keys, keys.new_full((1,), SENTINEL_KEY)])
    rank = None
    if _wants_table(space, keys.numel()):
        occupied = torch.zeros(space.num_cells, dtype=torch.int32, device=keys.device)
        occupied[keys] = 1
        rank = torch.cumsum(occupied, 0, dtype=torch.int32).sub_(occupied)
    return SiteIndex(coords, space, padded, row_at, rank)


def sorted_unique_index(coords_keys: torch.Tensor, space: KeySpace) -> tuple[SiteIndex, torch.Tensor]:
    """The index of the distinct keys (sorted rows, decoded to coordinates) and each key's row in it."""
    unique, inverse = torch.unique(coords_keys, sorted=True, return_inverse=True)
    return build_site_index(space.decode(unique), space=space, keys=unique), inverse
