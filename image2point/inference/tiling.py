"""Cutting a scene into tiles along x and y, so that no pass of the network reads more than a budget of points.

Tiles overlap by ``overlap`` voxels on each side and every voxel takes its prediction from the one
tile whose core holds it, which is the tile where it lies deepest inside (see :func:`tile_owners`).
Tiles keep the whole cloud's voxel grid, so a voxel whose receptive field fits within the overlap gets
exactly the prediction the whole scene would give it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from image2point.errors import DataError

# 1 M points per tile: the same peak memory as 500 k on a dense 10 M-point scene at 1.25x the speed
# (docs/benchmarks.md, "Predict on a 10 M-point scene").
DEFAULT_CHUNK_POINTS = 1_000_000
DEFAULT_OVERLAP_VOXELS = 32
SPLIT_AXES = (0, 1)


@dataclasses.dataclass(frozen=True)
class Tile:
    """A rectangle of voxel columns: the core ``[low, high)`` in x and y, read with ``overlap`` more on each side."""

    low: tuple[int, int]
    high: tuple[int, int]
    overlap: int

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """Which of the columns ``xy`` ([V, 2] voxel x, y) the tile reads (core plus overlap)."""
        low = np.asarray(self.low) - self.overlap
        high = np.asarray(self.high) + self.overlap
        return ((xy >= low) & (xy < high)).all(axis=1)

    def owns(self, xy: np.ndarray) -> np.ndarray:
        """Which of the columns ``xy`` lie in the core, whose predictions the tile provides."""
        return ((xy >= np.asarray(self.low)) & (xy < np.asarray(self.high))).all(axis=1)

    def depth_inside(self, xy: np.ndarray) -> np.ndarray:
        """Voxels between each column and the nearest edge of the region the tile reads (< 0 outside)."""
        low = np.asarray(self.low) - self.overlap
        high = np.asarray(self.high) + self.overlap - 1
        return np.minimum(xy - low, high - xy).min(axis=1)


def plan_tiles(xy: np.ndarray, point_counts: np.ndarray, chunk_points: int, overlap: int) -> list[Tile]:
    """Tiles whose cores partition the columns ``xy`` ([V, 2] voxel x, y), each reading at most ``chunk_points``.

    point_counts: points in each voxel. A core too heavy is halved along its longer side at the
    point-weighted median; DataError when a single column with its overlap holds too many points.
    """
    xy = np.asarray(xy, dtype=np.int64)
    weights = np.asarray(point_counts, dtype=np.int64)
    pending = [Tile((int(xy[:, 0].min()), int(xy[:, 1].min())), (int(xy[:, 0].max()) + 1,
                                                                     int(xy[:, 1].max()) + 1), overlap)]
    tiles = []
    while pending:
        tile = pending.pop()
        if not tile.owns(xy).any():
            continue
        load = int(weights[tile.contains(xy)].sum())
        if load <= chunk_points:
            tiles.append(tile)
            continue
        halves = _halves(tile, xy, weights)
        if halves is None:
            raise DataError(f"a tile of one voxel column with {overlap} voxels of overlap holds {load} points, more "
                            f"than the chunk budget of {chunk_points}; raise the chunk budget or lower the overlap")
        pending.extend(reversed(halves))
    return sorted(tiles, key=lambda tile: (tile.low, tile.high))


def _halves(tile: Tile, xy: np.ndarray, weights: np.ndarray) -> tuple[Tile, Tile] | None:
    extents = [tile.high[axis] - tile.low[axis] for axis in SPLIT_AXES]
    for axis in sorted(SPLIT_AXES, key=lambda axis: -extents[axis]):
        if extents[axis] < 2:
            continue
        inside = tile.owns(xy)
        column = xy[inside, axis]
        order = np.argsort(column, kind="stable")
        cumulative = np.cumsum(weights[inside][order])
        median = int(column[order][np.searchsorted(cumulative, cumulative[-1] / 2.0)]) if len(column) else 0
        cut = min(max(median, tile.low[axis] + 1), tile.high[axis] - 1)
        first_high = list(tile.high)
        first_high[axis] = cut
        second_low = list(tile.low)
        second_low[axis] = cut
        return (Tile(tile.low, (first_high[0], first_high[1]), tile.overlap),
                Tile((second_low[0], second_low[1]), tile.high, tile.overlap))
    return None


def tile_owners(xy: np.ndarray, tiles: Sequence[Tile]) -> np.ndarray:
    """int64 [V]: the tile whose core holds each column, which is where it lies deepest inside.

    A column in a tile's core is at least ``overlap`` voxels from the edge of what that tile reads;
    in any other tile it lies in the overlap band, less than ``overlap`` from the edge.
    """
    owners = np.full(len(xy), -1, dtype=np.int64)
    for index, tile in enumerate(tiles):
        owners[tile.owns(xy)] = index
    if (owners < 0).any():
        raise ValueError("the tiles' cores do not cover every voxel column")
    return owners
