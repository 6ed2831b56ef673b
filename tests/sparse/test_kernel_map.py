"""Kernel maps: the dense-table and binary-search lookups agree, and pairs follow the documented geometry."""

import pytest
import torch

from image2point.sparse import SparseTensor
from image2point.sparse import functional as SF
from image2point.sparse import kernel_map as KM
from image2point.sparse.downsample import downsample_coords
from image2point.sparse import site_index


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
    out_coords = coords if stride == 1 else downsample_coords(coords, mode)
    with_table = KM.build_kernel_map(coords, out_coords, kernel_size, stride)
    assert with_table.in_index.device == with_table.out_index.device == coords.device
    assert with_table.in_index.dtype == with_table.out_index.dtype == torch.int64
    assert site_index.build_site_index(coords, KM.reach(kernel_size, stride)).rank is not None
    monkeypatch.setattr(site_index, "TABLE_MIN_CELLS", 0)
    monkeypatch.setattr(site_index, "TABLE_CELLS_PER_SITE", 0)
    assert site_index.build_site_index(coords, KM.reach(kernel_size, stride)).rank is None
    with_search = KM.build_kernel_map(coords, out_coords, kernel_size, stride)
    assert with_table.counts == with_search.counts
    assert torch.equal(with_table.in_index, with_search.in_index)
    assert torch.equal(with_table.out_index, with_search.out_index)


def test_pairs_follow_the_offset_geometry_and_outputs_ascend_within_offsets(device):
    coords = random_coords(seed=7).to(device)
    out_coords = downsample_coords(coords, "floor")
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


def triples(kernel_map: KM.KernelMap) -> torch.Tensor:
    """The map's (offset, input, output) relations as sorted int64 codes (order-free comparison)."""
    offset = torch.repeat_interleave(torch.arange(len(kernel_map.counts)), torch.tensor(kernel_map.counts))
    code = (offset * kernel_map.num_in + kernel_map.in_index.cpu()) * kernel_map.num_out + kernel_map.out_index.cpu()
    return torch.sort(code).values


def assert_same_pairs_and_outputs_ascend(level_map: KM.KernelMap, reference: KM.KernelMap) -> None:
    assert level_map.counts == reference.counts
    assert torch.equal(triples(level_map), triples(reference))
    start = 0
    for count in level_map.counts:
        outs = level_map.out_index[start:start + count]
        assert bool((outs[1:] > outs[:-1]).all())
        if level_map.in_ascending:
            ins = level_map.in_index[start:start + count]
            assert bool((ins[1:] > ins[:-1]).all())
        start += count


@pytest.mark.parametrize("shuffled", [False, True])
@pytest.mark.parametrize("mode", ["floor", "window"])
@pytest.mark.parametrize("kernel_size", [1, 2, 3])
def test_maps_built_per_level_equal_the_searched_maps(shuffled, mode, kernel_size, device):
    """The parent-built strided maps (and window mode's by-product map) against a search from the coarse
    side in the fine keys, on sorted and on shuffled coordinate rows."""
    coords = random_coords(seed=11 + kernel_size).to(device)
    if shuffled:
        coords = coords[torch.randperm(coords.shape[0], generator=torch.Generator().manual_seed(0)).to(device)]
    x = SparseTensor(torch.zeros(coords.shape[0], 1, device=device), coords, 2)
    level_map = SF.kernel_map(x, kernel_size, 2, mode)
    coarse = SF.coarser_coords(x, mode)
    assert torch.equal(coarse, downsample_coords(coords, mode))
    assert_same_pairs_and_outputs_ascend(level_map, brute_force_map(coords, coarse, kernel_size, 2))
    parent = SF.children_map(x, mode).parent
    expected_parent = torch.cat([coords[:, :1], torch.div(coords[:, 1:], 2, rounding_mode="floor")], 1)
    assert torch.equal(coarse[parent], expected_parent)


@pytest.mark.parametrize("shuffled", [False, True])
@pytest.mark.parametrize("kernel_size,dilation", [(3, 1), (5, 1), (3, 2)])
def test_submanifold_maps_per_level_equal_the_searched_maps(shuffled, kernel_size, dilation, device):
    """The half-searched, mirrored submanifold map against a search of every offset."""
    coords = random_coords(seed=kernel_size + dilation).to(device)
    if shuffled:
        coords = coords[torch.randperm(coords.shape[0], generator=torch.Generator().manual_seed(1)).to(device)]
    x = SparseTensor(torch.zeros(coords.shape[0], 1, device=device), coords, 2)
    level_map = SF.kernel_map(x, kernel_size, dilation=dilation)
    assert level_map.identity_offset == kernel_size**3 // 2
    assert_same_pairs_and_outputs_ascend(level_map, brute_force_map(coords, coords, kernel_size, 1, dilation))


def brute_force_map(in_coords, out_coords, kernel_size, stride, dilation=1) -> KM.KernelMap:
    """Every offset looked up on its own, by a plain searchsorted over codes of the input rows."""
    base = 1000

    def code(rows):
        return ((rows[:, 0] * base + rows[:, 1] + 100) * base + rows[:, 2] + 100) * base + rows[:, 3] + 100

    keys, order = torch.sort(code(in_coords))
    ins, outs, counts = [], [], []
    for offset in KM.kernel_offsets(kernel_size, in_coords.device, dilation):
        query = out_coords.clone()
        query[:, 1:] = stride * out_coords[:, 1:] + offset
        position = torch.searchsorted(keys, code(query)).clamp(max=keys.numel() - 1)
        found = keys[position] == code(query)
        ins.append(order[position[found]])
        outs.append(found.nonzero().squeeze(1))
        counts.append(int(found.sum()))
    return KM.KernelMap(torch.cat(ins), torch.cat(outs), tuple(counts), in_coords.shape[0], out_coords.shape[0],
                        kernel_size, dilation=dilation)
