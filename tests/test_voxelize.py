"""Voxelization and batch collation, checked against a brute-force per-point Python reference."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from image2point.errors import DataError
from image2point.sparse.tensor import SparseTensor
from image2point.voxelize import (
    BINCOUNT_MAX_CHANNELS,
    CollatedVoxels,
    Voxels,
    collate_voxels,
    split_by_sample,
    voxelize,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
KITTI_SCAN = REPO_ROOT / ".." / "shared" / "data" / "semantickitti" / "sequences" / "00" / "velodyne" / "000000.bin"
KITTI_COLUMNS = 4  # x, y, z, intensity
VOXEL = 0.05
# Relative tolerance for float32 means of float64 sums.
MEAN_RTOL = 1e-5
WIDE_CHANNELS = BINCOUNT_MAX_CHANNELS + 4


def sphere_points(num_points: int, seed: int = 0) -> np.ndarray:
    """Points on and inside the unit sphere, shaped like a normalised ModelNet sample."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(num_points, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return (directions * rng.uniform(0.5, 1.0, size=(num_points, 1))).astype(np.float32)


@dataclass
class BruteForceVoxels:
    """Voxels found one point at a time with Python's float division and math.floor."""

    cell_of_point: list[tuple[int, int, int]]  # unshifted voxel index of every point
    members: dict[tuple[int, int, int], list[int]]  # point rows of every occupied voxel
    lowest: tuple[int, int, int]  # smallest occupied index per axis

    def shifted(self, cell: tuple[int, int, int]) -> list[int]:
        return [index - low for index, low in zip(cell, self.lowest)]


def brute_force(points: np.ndarray, voxel_size: float) -> BruteForceVoxels:
    members: dict[tuple[int, int, int], list[int]] = defaultdict(list)
    cell_of_point = []
    for row, point in enumerate(points.astype(np.float64).tolist()):
        cell = tuple(math.floor(coordinate / voxel_size) for coordinate in point)
        members[cell].append(row)
        cell_of_point.append(cell)
    lowest = tuple(min(cell[axis] for cell in members) for axis in range(3))
    return BruteForceVoxels(cell_of_point, dict(members), lowest)


def on_device(array: np.ndarray | None, device: torch.device) -> torch.Tensor | None:
    return None if array is None else torch.from_numpy(np.ascontiguousarray(array)).to(device)


def check_against_brute_force(voxels: Voxels, points: np.ndarray, voxel_size: float, features=None) -> None:
    reference = brute_force(points, voxel_size)
    occupied = sorted(reference.members, key=reference.shifted)
    assert voxels.coords.tolist() == [reference.shifted(cell) for cell in occupied]
    assert voxels.counts.tolist() == [len(reference.members[cell]) for cell in occupied]
    assert voxels.coords[voxels.inverse].tolist() == [reference.shifted(cell) for cell in reference.cell_of_point]
    values = (points if features is None else features).astype(np.float64)
    mean_of_cell = {cell: values[rows].mean(axis=0) for cell, rows in reference.members.items()}
    expected = np.stack([mean_of_cell[cell] for cell in reference.cell_of_point])
    np.testing.assert_allclose(voxels.features[voxels.inverse].cpu().numpy(), expected, rtol=MEAN_RTOL, atol=1e-6)


def dense_cube_points(num_points: int, side: float, seed: int = 0) -> np.ndarray:
    """Points in a small cube, many to a voxel, straddling the origin so cell indices change sign."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-side / 2, side / 2, size=(num_points, 3)).astype(np.float32)


CLOUDS = {
    "sphere": lambda: sphere_points(1500),  # mostly one or two points per voxel
    "dense": lambda: dense_cube_points(1500, side=6 * VOXEL),  # about seven points per voxel
}


@pytest.mark.parametrize("method", ["auto", "table", "sort", "rows"])
@pytest.mark.parametrize("channels", [None, 1, 3, WIDE_CHANNELS])
@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_matches_brute_force_per_voxel_mean(cloud, method, channels, device):
    points = CLOUDS[cloud]()
    features = None
    if channels is not None:
        features = np.random.default_rng(1).normal(size=(len(points), channels)).astype(np.float32)
    voxels = voxelize(on_device(points, device), VOXEL, on_device(features, device), method=method)
    assert voxels.coords.device == voxels.features.device == voxels.inverse.device == device
    check_against_brute_force(voxels, points, VOXEL, features)


def test_methods_give_identical_results_on_a_sparse_scene(device):
    rng = np.random.default_rng(2)
    # 400 x 400 x 20 cells for 3000 points: "auto" sorts, and the table still fits.
    points = rng.uniform(-10.0, 10.0, size=(3000, 3)).astype(np.float32)
    points[:, 2] *= 0.05
    results = [voxelize(on_device(points, device), VOXEL, method=method) for method in ("table", "sort", "rows")]
    for other in results[1:]:
        for name in ("coords", "inverse", "counts", "features", "origin"):
            assert torch.equal(getattr(results[0], name), getattr(other, name)), name


def test_output_layout_counts_and_origin():
    points = sphere_points(4000) + np.float32(3.3)
    voxels = voxelize(points, VOXEL)
    assert voxels.coords.dtype == torch.int64 and voxels.inverse.dtype == torch.int64
    assert voxels.counts.dtype == torch.int64 and voxels.features.dtype == torch.float32
    assert voxels.origin.dtype == torch.float64 and voxels.voxel_size == VOXEL
    assert voxels.features.shape == (voxels.num_voxels, 3) and voxels.num_points == len(points)
    assert int(voxels.counts.sum()) == len(points)
    assert (voxels.counts > 0).all()
    assert voxels.coords.min(0).values.tolist() == [0, 0, 0]
    expected_origin = [math.floor(float(low) / VOXEL) * VOXEL for low in points.astype(np.float64).min(0)]
    assert voxels.origin.tolist() == expected_origin
    keys = [tuple(row) for row in voxels.coords.tolist()]
    assert keys == sorted(set(keys)), "voxels must be unique and in lexicographic order"


def test_every_point_lies_in_its_voxel_box():
    points = np.random.default_rng(3).uniform(-7.0, 11.0, size=(20000, 3))
    voxels = voxelize(points, VOXEL)
    position = (torch.from_numpy(points) - voxels.origin) / VOXEL
    own = voxels.coords[voxels.inverse].to(torch.float64)
    border_slack = 1e-9
    assert ((position >= own - border_slack) & (position < own + 1 + border_slack)).all()
    # Away from cell borders floor((p - origin) / v) is exactly the voxel index.
    fraction = position - position.floor()
    clear_of_border = ((fraction > border_slack) & (fraction < 1 - border_slack)).all(1)
    assert clear_of_border.float().mean() > 0.99
    assert torch.equal(position.floor().long()[clear_of_border], voxels.coords[voxels.inverse][clear_of_border])


def test_deterministic_and_independent_of_point_order():
    points = sphere_points(5000)
    intensity = np.random.default_rng(4).uniform(size=(len(points), 1)).astype(np.float32)
    first = voxelize(points, VOXEL, intensity)
    again = voxelize(points, VOXEL, intensity)
    for name in ("coords", "inverse", "counts", "features", "origin"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    order = np.random.default_rng(5).permutation(len(points))
    shuffled = voxelize(points[order], VOXEL, intensity[order])
    assert torch.equal(shuffled.coords, first.coords)
    assert torch.equal(shuffled.counts, first.counts)
    assert torch.equal(shuffled.inverse, first.inverse[torch.from_numpy(order)])
    torch.testing.assert_close(shuffled.features, first.features, rtol=MEAN_RTOL, atol=1e-7)


def test_huge_extent_uses_int64_keys_without_overflow(device):
    half_span = 5e4  # 1e5 m per axis at 0.05 m: 2e6 cells per axis, 8e18 cells in the box
    rng = np.random.default_rng(6)
    points = rng.uniform(-half_span, half_span, size=(2000, 3))
    points[:2] = [[-half_span] * 3, [half_span] * 3]
    voxels = voxelize(on_device(points, device), VOXEL)
    extent = voxels.coords.max(0).values + 1
    assert extent.tolist() == [round(2 * half_span / VOXEL) + 1] * 3
    assert math.prod(extent.tolist()) > 2**62
    check_against_brute_force(voxels, points, VOXEL)
    assert torch.equal(voxels.coords, voxelize(on_device(points, device), VOXEL, method="rows").coords)


def test_extent_beyond_int64_key_falls_back_to_row_unique():
    points = np.random.default_rng(7).uniform(-5e6, 5e6, size=(500, 3))
    with pytest.raises(ValueError, match="overflow an int64 linear key"):
        voxelize(points, VOXEL, method="sort")
    voxels = voxelize(points, VOXEL)
    check_against_brute_force(voxels, points, VOXEL)


def test_forced_table_refuses_a_huge_bounding_box():
    points = np.array([[0.0, 0.0, 0.0], [100.0, 100.0, 100.0]])
    with pytest.raises(ValueError, match="occupancy table would need"):
        voxelize(points, VOXEL, method="table")


def test_voxel_indices_beyond_int64_raise():
    points = np.array([[0.0, 0.0, 0.0], [1e30, 0.0, 0.0]])
    with pytest.raises(DataError, match="int64"):
        voxelize(points, 1e-10)


def test_float64_input_agrees_with_float32_input():
    points32 = sphere_points(3000)
    from_float32 = voxelize(points32, VOXEL)
    from_float64 = voxelize(points32.astype(np.float64), VOXEL)
    for name in ("coords", "inverse", "counts", "features", "origin"):
        assert torch.equal(getattr(from_float32, name), getattr(from_float64, name))


def test_torch_and_numpy_inputs_agree():
    points = sphere_points(3000)
    normals = np.random.default_rng(8).normal(size=(len(points), 3)).astype(np.float32)
    from_numpy = voxelize(points, VOXEL, normals)
    from_torch = voxelize(torch.from_numpy(points), VOXEL, torch.from_numpy(normals))
    for name in ("coords", "inverse", "counts", "features", "origin"):
        assert torch.equal(getattr(from_numpy, name), getattr(from_torch, name))


def test_non_contiguous_and_integer_feature_inputs():
    points = sphere_points(2000)
    labels = np.random.default_rng(9).integers(0, 5, size=(len(points), 1))
    reversed_voxels = voxelize(points[::-1], VOXEL, labels[::-1])
    check_against_brute_force(reversed_voxels, points[::-1].copy(), VOXEL, labels[::-1].astype(np.float64))


def numpy_reference(points: np.ndarray, voxel_size: float, features: np.ndarray):
    """Row-wise numpy voxelization: floor, unique over rows, scatter-add mean."""
    cells = np.floor(points.astype(np.float64) / voxel_size).astype(np.int64)
    cells -= cells.min(axis=0)
    coords, inverse, counts = np.unique(cells, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)  # numpy 2.0.0 returns it as [N, 1]
    sums = np.zeros((len(coords), features.shape[1]))
    np.add.at(sums, inverse, features.astype(np.float64))
    return coords, inverse, counts, sums / counts[:, None]


@pytest.mark.skipif(not KITTI_SCAN.is_file(), reason=f"SemanticKITTI scan not found at {KITTI_SCAN}")
def test_real_lidar_scan_matches_numpy_reference():
    scan = np.fromfile(KITTI_SCAN, dtype=np.float32).reshape(-1, KITTI_COLUMNS)
    points, intensity = scan[:, :3], scan[:, 3:]
    voxels = voxelize(points, VOXEL, intensity)
    coords, inverse, counts, means = numpy_reference(points, VOXEL, intensity)
    assert voxels.num_voxels < len(points)
    np.testing.assert_array_equal(voxels.coords.numpy(), coords)
    np.testing.assert_array_equal(voxels.inverse.numpy(), inverse)
    np.testing.assert_array_equal(voxels.counts.numpy(), counts)
    np.testing.assert_allclose(voxels.features.numpy(), means, rtol=MEAN_RTOL, atol=1e-7)


def test_benchmark_runs_on_generated_clouds(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_voxelize", REPO_ROOT / "benchmarks" / "bench_voxelize.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses resolve their module through sys.modules
    try:
        spec.loader.exec_module(bench)
        messages: list[str] = []
        results = bench.run(repeats=1, data_dir=tmp_path, generated_points=4000, log=messages.append)
    finally:
        del sys.modules[spec.name]
    assert len(messages) == 2 and all("not found" in message for message in messages)
    assert [result.points for result in results] == [4000, 4000]
    for result in results:
        assert 0 < result.voxels <= result.points
        assert result.ours_seconds > 0 and result.numpy_seconds > 0
        assert result.as_dict()["speedup"] == pytest.approx(result.numpy_seconds / result.ours_seconds)


@pytest.mark.cuda
def test_cuda_matches_cpu(cuda_device):
    points = torch.from_numpy(sphere_points(20000))
    on_cpu = voxelize(points, VOXEL)
    on_cuda = voxelize(points.to(cuda_device), VOXEL)
    assert on_cuda.coords.is_cuda and on_cuda.features.is_cuda
    for name in ("coords", "inverse", "counts", "origin"):
        assert torch.equal(getattr(on_cpu, name), getattr(on_cuda, name).cpu())
    torch.testing.assert_close(on_cpu.features, on_cuda.features.cpu())


@pytest.mark.parametrize(
    ("points", "kwargs", "message"),
    [
        (
            np.array([[0.0, 0.0, np.nan], [1.0, 1.0, 1.0], [np.nan, 0.0, 0.0]]),
            {},
            "2 of 3 points have NaN or Inf coordinates",
        ),
        (
            np.array([[0.0, 0.0, 0.0], [np.inf, 1.0, 1.0]]),
            {},
            r"1 of 2 points have NaN or Inf coordinates \(first at row 1\)",
        ),
        (np.zeros((4, 2)), {}, r"\[N, 3\].*got shape \(4, 2\)"),
        (np.zeros(3), {}, r"\[N, 3\]"),
        (np.zeros((0, 3)), {}, "empty"),
        (np.zeros((4, 3), dtype=np.int32), {}, "float32 or float64"),
        (np.array([["a", "b", "c"]]), {}, "must hold numbers"),
        ([[0.0, 0.0, 0.0]], {}, "numpy array or a torch tensor"),
        (np.zeros((4, 3)), {"features": np.zeros((5, 2))}, r"one row per point \(N=4\)"),
        (np.zeros((4, 3)), {"features": np.zeros(4)}, r"\[N, C\]"),
        (np.zeros((4, 3)), {"features": np.zeros((4, 0))}, "no channels"),
        (np.zeros((2, 3)), {"features": np.array([[1.0], [np.nan]])}, "1 of 2 points have NaN or Inf features"),
        (np.zeros((2, 3)), {"features": np.array([[True], [False]])}, "real numbers"),
        (np.zeros((4, 3)), {"voxel_size": 0.0}, "positive finite"),
        (np.zeros((4, 3)), {"voxel_size": -0.05}, "positive finite"),
        (np.zeros((4, 3)), {"voxel_size": float("nan")}, "positive finite"),
        (np.zeros((4, 3)), {"voxel_size": "0.05"}, "must be a number"),
    ],
)
def test_bad_input_raises_data_error(points, kwargs, message):
    arguments = {"voxel_size": VOXEL, **kwargs}
    with pytest.raises(DataError, match=message):
        voxelize(points, **arguments)


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="unknown voxelization method"):
        voxelize(sphere_points(10), VOXEL, method="hash")


def make_batch() -> tuple[list[np.ndarray], list[Voxels]]:
    clouds = [sphere_points(n, seed=n) * scale for n, scale in ((700, 1.0), (50, 0.2), (1200, 2.0))]
    intensities = [np.random.default_rng(i).uniform(size=(len(c), 1)).astype(np.float32) for i, c in enumerate(clouds)]
    return clouds, [voxelize(cloud, VOXEL, intensity) for cloud, intensity in zip(clouds, intensities)]


def test_collate_stacks_samples_with_batch_column():
    clouds, samples = make_batch()
    batch = collate_voxels(samples)
    assert isinstance(batch, CollatedVoxels) and isinstance(batch.tensor, SparseTensor)
    assert batch.tensor.batch_size == batch.batch_size == 3 and batch.tensor.stride == 1
    assert batch.sites_per_sample == [s.num_voxels for s in samples]
    assert batch.points_per_sample == [len(c) for c in clouds]
    assert batch.tensor.coords.shape == (sum(batch.sites_per_sample), 4)
    expected_batch_column = torch.cat([torch.full((s.num_voxels,), i) for i, s in enumerate(samples)])
    assert torch.equal(batch.tensor.coords[:, 0], expected_batch_column)
    assert torch.equal(batch.tensor.coords[:, 1:], torch.cat([s.coords for s in samples]))
    assert torch.equal(batch.tensor.features, torch.cat([s.features for s in samples]))


def test_point_to_site_reaches_every_points_own_voxel():
    _, samples = make_batch()
    batch = collate_voxels(samples)
    assert batch.point_to_site.shape == (sum(s.num_points for s in samples),)
    site_of_point = batch.tensor.coords[batch.point_to_site]
    expected_sample = torch.cat([torch.full((s.num_points,), i) for i, s in enumerate(samples)])
    assert torch.equal(site_of_point[:, 0], expected_sample)
    assert torch.equal(site_of_point[:, 1:], torch.cat([s.coords[s.inverse] for s in samples]))
    assert torch.equal(batch.tensor.features[batch.point_to_site], torch.cat([s.features[s.inverse] for s in samples]))


def test_split_by_sample_inverts_concatenation():
    _, samples = make_batch()
    batch = collate_voxels(samples, backend="spconv")
    assert batch.tensor.backend == "spconv"
    site_pieces = split_by_sample(batch.tensor.features, batch.sites_per_sample)
    for piece, sample in zip(site_pieces, samples):
        assert torch.equal(piece, sample.features)
    point_predictions = batch.tensor.features[batch.point_to_site]
    for piece, sample in zip(batch.split_points(point_predictions), samples):
        assert torch.equal(piece, sample.features[sample.inverse])
    assert [p.shape[0] for p in batch.split_sites(batch.tensor.coords)] == batch.sites_per_sample
    with pytest.raises(ValueError, match="rows but the samples hold"):
        split_by_sample(batch.tensor.features[1:], batch.sites_per_sample)


def test_collate_rejects_inconsistent_batches():
    points = sphere_points(100)
    with pytest.raises(DataError, match="empty batch"):
        collate_voxels([])
    with pytest.raises(DataError, match="different feature widths"):
        collate_voxels([voxelize(points, VOXEL), voxelize(points, VOXEL, np.ones((100, 1)))])
    with pytest.raises(DataError, match="different voxel sizes"):
        collate_voxels([voxelize(points, VOXEL), voxelize(points, 2 * VOXEL)])
    with pytest.raises(ValueError, match="unknown sparse backend"):
        collate_voxels([voxelize(points, VOXEL)], backend="minkowski")
