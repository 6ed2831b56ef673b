"""PointNet++'s functional core: farthest point sampling, ball query, grouping and three-NN interpolation.

Tensor layouts: point coordinates ``[B, N, 3]``; features channel-first ``[B, C, N]``. Pairwise distances
are computed in chunks of at most ``PAIRWISE_CHUNK_ELEMENTS`` pairs.
"""

from __future__ import annotations

import math

import torch

XYZ_DIMENSIONS = 3
# At most this many point pairs per chunk of a pairwise-distance computation (ball query, three-NN):
# about 100 MB of temporaries, whatever the number of points.
PAIRWISE_CHUNK_ELEMENTS = 1 << 22
# Three-NN interpolation: neighbours per point, and the distance added before inverting it.
INTERPOLATION_NEIGHBOURS = 3
INTERPOLATION_EPSILON = 1e-8
FPS_STARTS = ("first", "random")



def check_points(name: str, points: torch.Tensor) -> None:
    if points.dim() != 3 or points.shape[-1] != XYZ_DIMENSIONS:
        raise ValueError(f"{name} must have shape [B, N, 3], got {list(points.shape)}")


def _squared_distances(queries: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``[B, S, N]``: squared Euclidean distances, summed coordinate by coordinate from the differences
    (exact for integer coordinates; no ``|a|² + |b|² - 2ab`` cancellation)."""
    query_planes = queries.transpose(1, 2).contiguous()
    point_planes = points.transpose(1, 2).contiguous()
    total = torch.zeros(queries.shape[0], queries.shape[1], points.shape[1], dtype=points.dtype,
                        device=points.device)
    for axis in range(XYZ_DIMENSIONS):
        difference = query_planes[:, axis, :, None] - point_planes[:, axis, None, :]
        total.addcmul_(difference, difference)
    return total


def _query_chunk_size(batch: int, num_queries: int, num_points: int) -> int:
    return max(1, min(num_queries, PAIRWISE_CHUNK_ELEMENTS // max(1, batch * num_points)))


def gather_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``points [B, N, D]`` at ``idx [B, S]``: ``[B, S, D]``."""
    return points.gather(1, idx[..., None].expand(*idx.shape, points.shape[-1]))


@torch.no_grad()
def farthest_point_sample(points: torch.Tensor, num_samples: int, start: str = "first",
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices ``[B, num_samples]`` of a farthest point sampling of ``points [B, N, 3]``.

    The first index is 0 (``start="first"``, deterministic) or uniformly random per cloud
    (``start="random"``, drawn from ``generator``, a CPU generator). Each further index is the point
    farthest from those chosen so far (largest distance to its nearest chosen point; the lowest index on
    ties). Chosen points are never chosen again, so the indices are distinct even where points coincide.
    """
    check_points("points", points)
    batch, num_points, _ = points.shape
    if not 1 <= num_samples <= num_points:
        raise ValueError(f"cannot sample {num_samples} of {num_points} points")
    if start not in FPS_STARTS:
        raise ValueError(f"start must be one of {FPS_STARTS}, got {start!r}")
    batch_index = torch.arange(batch, device=points.device)
    if start == "first":
        current = torch.zeros(batch, dtype=torch.int64, device=points.device)
    else:
        current = torch.randint(num_points, (batch,), generator=generator).to(points.device)
    chosen = torch.empty(batch, num_samples, dtype=torch.int64, device=points.device)
    planes = points.transpose(1, 2).contiguous()
    nearest_chosen = torch.full((batch, num_points), math.inf, dtype=points.dtype, device=points.device)
    for step in range(num_samples):
        chosen[:, step] = current
        last = planes[batch_index, :, current]
        distance = torch.zeros_like(nearest_chosen)
        for axis in range(XYZ_DIMENSIONS):
            difference = planes[:, axis] - last[:, axis, None]
            distance.addcmul_(difference, difference)
        torch.minimum(nearest_chosen, distance, out=nearest_chosen)
        nearest_chosen[batch_index, current] = -1.0
        current = nearest_chosen.argmax(dim=1)
    return chosen


@torch.no_grad()
def ball_query(points: torch.Tensor, centres: torch.Tensor, radius: float, max_neighbours: int) -> torch.Tensor:
    """Indices ``[B, S, K]`` into ``points [B, N, 3]`` of the neighbours of each of ``centres [B, S, 3]``.

    A point is a neighbour when its squared distance to the centre is strictly below ``radius²``. Each row
    holds the first ``K = max_neighbours`` neighbours in index order; when there are fewer, the remaining
    slots repeat the first neighbour found. A centre that is one of the points always finds itself. A
    centre with no point within the radius gets its nearest point (lowest index on ties) in every slot;
    the reference CUDA kernel leaves index 0 there, an arbitrary point.
    """
    check_points("points", points)
    check_points("centres", centres)
    if max_neighbours < 1 or not radius > 0:
        raise ValueError(f"need radius > 0 and max_neighbours >= 1, got {radius} and {max_neighbours}")
    batch, num_points, _ = points.shape
    num_centres = centres.shape[1]
    take = min(max_neighbours, num_points)
    positions = torch.arange(num_points, device=points.device)
    out = torch.empty(batch, num_centres, max_neighbours, dtype=torch.int64, device=points.device)
    chunk = _query_chunk_size(batch, num_centres, num_points)
    for begin in range(0, num_centres, chunk):
        distances = _squared_distances(centres[:, begin:begin + chunk], points)
        # Outside points get the key N, so the `take` smallest keys are the first neighbours in order.
        keys = torch.where(distances < radius * radius, positions, num_points)
        first = keys.topk(take, dim=-1, largest=False, sorted=True).values
        if take < max_neighbours:
            first = torch.cat([first, first.new_full((*first.shape[:2], max_neighbours - take), num_points)], -1)
        found = first < num_points
        fallback = torch.where(found[..., :1], first[..., :1], distances.argmin(-1, keepdim=True))
        out[:, begin:begin + chunk] = torch.where(found, first, fallback)
    return out


def group(features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``features [B, C, N]`` gathered at ``idx [B, S, K]``: ``[B, C, S, K]`` (differentiable)."""
    batch, channels, _ = features.shape
    _, num_groups, group_size = idx.shape
    flat = idx.reshape(batch, 1, num_groups * group_size).expand(batch, channels, num_groups * group_size)
    return features.gather(2, flat).reshape(batch, channels, num_groups, group_size)


def three_nn_interpolate(unknown: torch.Tensor, known: torch.Tensor, known_features: torch.Tensor) -> torch.Tensor:
    """Features ``[B, C, n]`` at ``unknown [B, n, 3]``, interpolated from ``known_features [B, C, m]``
    at ``known [B, m, 3]``.

    Each unknown point averages its 3 nearest known points (all of them when ``m < 3``) with weights
    proportional to ``1 / (distance + INTERPOLATION_EPSILON)`` (Euclidean distance), summing to 1. An
    unknown point on top of a known one thus copies it. Gradients flow to the features, not the weights.
    """
    check_points("unknown", unknown)
    check_points("known", known)
    if known_features.dim() != 3 or known_features.shape[2] != known.shape[1]:
        raise ValueError(f"known_features must be [B, C, {known.shape[1]}], got {list(known_features.shape)}")
    batch, num_unknown, _ = unknown.shape
    num_known = known.shape[1]
    neighbours = min(INTERPOLATION_NEIGHBOURS, num_known)
    chunk = _query_chunk_size(batch, num_unknown, num_known)
    outputs = []
    for begin in range(0, num_unknown, chunk):
        with torch.no_grad():
            distances = _squared_distances(unknown[:, begin:begin + chunk], known)
            nearest, idx = distances.topk(neighbours, dim=-1, largest=False, sorted=True)
            inverse = 1.0 / (nearest.sqrt() + INTERPOLATION_EPSILON)
            weights = inverse / inverse.sum(-1, keepdim=True)
        outputs.append((group(known_features, idx) * weights[:, None]).sum(-1))
    return torch.cat(outputs, dim=2)
