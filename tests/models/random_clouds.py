"""Random sparse batches for the network tests: per sample, ``points`` random sites of a ``grid``-sided
cube (duplicates merged), with N(0, 1) features."""

from __future__ import annotations

import torch

from image2point.sparse import SparseTensor


def random_sparse_batch(
    in_features: int, batch_size: int, grid: int, points: int, seed: int = 0, device: torch.device | str = "cpu"
) -> SparseTensor:
    """The same sites and features on every device (drawn on the CPU, then moved)."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for b in range(batch_size):
        coords = torch.unique(torch.randint(0, grid, (points, 3), generator=generator), dim=0)
        rows.append(torch.cat([torch.full((len(coords), 1), b), coords], 1))
    coords = torch.cat(rows)
    features = torch.randn(len(coords), in_features, generator=generator)
    return SparseTensor(features.to(device), coords.to(device), batch_size)
