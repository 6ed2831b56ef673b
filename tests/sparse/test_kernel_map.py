"""Kernel maps: the dense-table and binary-search lookups agree, and pairs follow the documented geometry."""

import pytest
import torch

from image2point.sparse import kernel_map as KM


def random_coords(seed: int, batch_size: int = 2, points: int = 500, extent: int = 30) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for b in range(batch_size):
        spatial = torch.unique(torch.randint(0, extent, (points, 3), generator=generator), dim=0)
        rows.append(torch.cat([torch.full((len(spatial), 1), b), spatial], 1))
    return torch.cat(rows)


@pytest.mark.parametrize("kernel_size,stride,mode", [(3, 1, None), (5, 1, None), (3, 2, "floor"),
                                                     (2, 2, "floor"), (3, 2, "window"), (1, 2, "window")])
def test_table_and_binary_search_build_the_same_map(monkeypatch, kernel_size, stride, mode, device):
    coords = random_coords(seed=kernel_size * 10 + stride).to(device)
    out_coords = coords if stride == 1 else KM.downsample_coords(coords, mode)
    with_table = KM.build_kernel_map(coords, out_coords, kernel_size, stride)
    assert with_table.in_index.device == with_table.out_index.device == coords.device
    assert with_table.in_index.dtype == with_table.out_index.dtype == torch.int64
    monkeypatch.setattr(KM, "TABLE_MIN_CELLS", 0)
    monkeypatch.setattr(KM, "TABLE_CELLS_PER_SITE", 0)
    with_search = KM.build_kernel_map(coords, out_coords, kernel_size, stride)
    assert with_table.counts == with_search.counts
    assert torch.equal(with_table.in_index, with_search.in_index)
    assert torch.equal(with_table.out_index, with_search.out_index)


def test_pairs_follow_the_offset_geometry_and_outputs_ascend_within_offsets(device):
    coords = random_coords(seed=7).to(device)
    out_coords = KM.downsample_coords(coords, "floor")
    kernel_map = KM.build_kernel_map(coords, out_coords, 3, 2)
    offsets = KM.kernel_offsets(3, device)
    start = 0
    for offset, count in enumerate(kernel_map.counts):
        ins = kernel_map.in_index[start:start + count]
        outs = kernel_map.out_index[start:start + count]
        expected = 2 * out_coords[outs, 1:] + offsets[offset]
        assert torch.equal(coords[ins, 1:], expected)
        assert torch.equal(coords[ins, 0], out_coords[outs, 0])
        assert bool((outs[1:] > outs[:-1]).all())
        start += count
    # Brute force: every (input, output, offset) relation is found.
    total = sum(
        int(((coords[:, None, 1:] == 2 * out_coords[None, :, 1:] + d).all(-1)
             & (coords[:, None, 0] == out_coords[None, :, 0])).sum())
        for d in offsets)
    assert total == kernel_map.in_index.numel()
