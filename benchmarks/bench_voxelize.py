"""Voxelization speed: ``image2point.voxelize`` against a plain numpy implementation, side by side.

Cases: 32 ModelNet40 shapes (unit sphere, voxel 0.05), one SemanticKITTI scan (voxel 0.05, intensity
as the feature), a generated 1M-point LiDAR sweep, and a generated 1M-point uniform box, the worst
case (no locality in point order, about one point per voxel). Each repetition times both
implementations back to back; the reported times are medians over repetitions, of wall-clock time and
of the process's CPU time (the latter is the steadier figure on a machine shared with other work).
Before timing, the two implementations must agree on the voxels and the per-point means.

    python benchmarks/bench_voxelize.py [--repeats 7] [--threads N] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from image2point.voxelize import voxelize

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
MODELNET_DIR = "modelnet40_normal_resampled"
KITTI_SCAN = "semantickitti/sequences/00/velodyne/000000.bin"
VOXEL_SIZE = 0.05
MODELNET_SHAPES = 32
KITTI_COLUMNS = 4  # x, y, z, intensity
GENERATED_POINTS = 1_000_000
DEFAULT_REPEATS = 7
# Agreement check between the two implementations: float32 means against float64 ones.
MEAN_TOLERANCE = 1e-5

# The generated sweep imitates a 64-beam spinning LiDAR in a street: sensor height, beam elevations,
# facades on both sides, a far boundary, and range noise, all in metres and degrees.
SENSOR_HEIGHT = 1.73
BEAMS = 64
LOWEST_ELEVATION_DEG = -24.8
HIGHEST_ELEVATION_DEG = 2.0
FACADE_OFFSET = 8.0
MAX_RANGE = 80.0
RANGE_NOISE = 0.02
# The uniform box spans a KITTI-sized scene: 100 m x 100 m x 5 m.
BOX_HALF_WIDTH = 50.0
BOX_HEIGHT = 5.0
SEED = 0


@dataclass(frozen=True)
class VoxelizeBenchResult:
    case: str
    clouds: int
    points: int
    voxels: int
    repeats: int
    ours_seconds: float
    numpy_seconds: float
    ours_cpu_seconds: float
    numpy_cpu_seconds: float

    @property
    def ours_points_per_second(self) -> float:
        return self.points / self.ours_seconds

    @property
    def numpy_points_per_second(self) -> float:
        return self.points / self.numpy_seconds

    @property
    def ours_points_per_cpu_second(self) -> float:
        return self.points / self.ours_cpu_seconds

    @property
    def speedup(self) -> float:
        return self.numpy_seconds / self.ours_seconds

    def as_dict(self) -> dict[str, str | int | float]:
        return {
            **asdict(self),
            "ours_points_per_second": self.ours_points_per_second,
            "numpy_points_per_second": self.numpy_points_per_second,
            "ours_points_per_cpu_second": self.ours_points_per_cpu_second,
            "speedup": self.speedup,
        }


@dataclass(frozen=True)
class BenchCase:
    name: str
    clouds: list[tuple[np.ndarray, np.ndarray | None]]  # (points [N, 3] float32, features [N, C] or None)


def numpy_voxelize(
    points: np.ndarray, voxel_size: float, features: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The straightforward numpy voxelization: floor, row-wise unique, unbuffered scatter-add mean.

    Returns voxel coordinates [V, 3], per-voxel means [V, C] and the voxel row of each point [N].
    """
    cells = np.floor(points.astype(np.float64) / voxel_size).astype(np.int64)
    cells -= cells.min(axis=0)
    coords, inverse, counts = np.unique(cells, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)  # numpy 2.0.0 returns it as [N, 1]
    values = (points if features is None else features).astype(np.float64)
    sums = np.zeros((len(coords), values.shape[1]))
    np.add.at(sums, inverse, values)
    return coords, sums / counts[:, None], inverse


def modelnet_case(data_dir: Path) -> BenchCase | None:
    shape_dir = data_dir / MODELNET_DIR
    files = sorted(shape_dir.glob("*/*.txt"))
    if len(files) < MODELNET_SHAPES:
        return None
    # Evenly spaced over the sorted list, so the shapes span many classes.
    chosen = [files[i * len(files) // MODELNET_SHAPES] for i in range(MODELNET_SHAPES)]
    clouds = []
    for path in chosen:
        xyz = np.loadtxt(path, delimiter=",", dtype=np.float64)[:, :3]
        xyz -= xyz.mean(axis=0)
        xyz /= np.linalg.norm(xyz, axis=1).max()
        clouds.append((xyz.astype(np.float32), None))
    return BenchCase(f"ModelNet40 x{MODELNET_SHAPES} (unit sphere)", clouds)


def kitti_case(data_dir: Path) -> BenchCase | None:
    path = data_dir / KITTI_SCAN
    if not path.is_file():
        return None
    scan = np.fromfile(path, dtype=np.float32).reshape(-1, KITTI_COLUMNS)
    return BenchCase("SemanticKITTI 00/000000 (+intensity)", [(scan[:, :3].copy(), scan[:, 3:].copy())])


def lidar_sweep(num_points: int, rng: np.random.Generator) -> np.ndarray:
    """Returns of a spinning LiDAR in a street, in scan order (beam-major), like a real sensor's output."""
    steps = math.ceil(num_points / BEAMS)
    elevation = np.deg2rad(np.linspace(LOWEST_ELEVATION_DEG, HIGHEST_ELEVATION_DEG, BEAMS))[:, None]
    azimuth = np.linspace(0.0, 2.0 * np.pi, steps, endpoint=False)[None, :]
    direction = np.stack(
        np.broadcast_arrays(
            np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)
        ),
        axis=-1,
    ).reshape(-1, 3)[:num_points]
    with np.errstate(divide="ignore"):
        to_ground = np.where(direction[:, 2] < 0, SENSOR_HEIGHT / -direction[:, 2], np.inf)
        to_facade = FACADE_OFFSET / np.abs(direction[:, 1])
    distance = np.minimum(np.minimum(to_ground, to_facade), MAX_RANGE)
    distance += rng.normal(scale=RANGE_NOISE, size=num_points)
    points = direction * distance[:, None]
    points[:, 2] += SENSOR_HEIGHT
    return points.astype(np.float32)


def generated_cases(num_points: int) -> list[BenchCase]:
    rng = np.random.default_rng(SEED)
    sweep = lidar_sweep(num_points, rng)
    box = rng.uniform(-BOX_HALF_WIDTH, BOX_HALF_WIDTH, size=(num_points, 3))
    box[:, 2] = rng.uniform(0.0, BOX_HEIGHT, size=num_points)
    return [
        BenchCase(f"generated LiDAR sweep {num_points:,}", [(sweep, None)]),
        BenchCase(f"generated uniform box {num_points:,} (worst case)", [(box.astype(np.float32), None)]),
    ]


def check_agreement(case: BenchCase) -> int:
    """Both implementations give the same voxels and per-point means; returns the total voxel count."""
    voxels_total = 0
    for points, features in case.clouds:
        ours = voxelize(points, VOXEL_SIZE, features)
        coords, means, inverse = numpy_voxelize(points, VOXEL_SIZE, features)
        if not np.array_equal(ours.coords.numpy(), coords) or not np.array_equal(ours.inverse.numpy(), inverse):
            raise RuntimeError(f"{case.name}: voxelize and the numpy reference disagree on the voxels")
        if not np.allclose(ours.features.numpy(), means, rtol=MEAN_TOLERANCE, atol=MEAN_TOLERANCE):
            raise RuntimeError(f"{case.name}: voxelize and the numpy reference disagree on the voxel means")
        voxels_total += ours.num_voxels
    return voxels_total


def time_case(case: BenchCase, repeats: int) -> VoxelizeBenchResult:
    voxels_total = check_agreement(case)

    def ours() -> None:
        for points, features in case.clouds:
            voxelize(points, VOXEL_SIZE, features)

    def reference() -> None:
        for points, features in case.clouds:
            numpy_voxelize(points, VOXEL_SIZE, features)

    ours_times, numpy_times = [], []
    for _ in range(repeats):
        ours_times.append(_wall_and_cpu_seconds(ours))
        numpy_times.append(_wall_and_cpu_seconds(reference))
    return VoxelizeBenchResult(
        case=case.name,
        clouds=len(case.clouds),
        points=sum(len(points) for points, _ in case.clouds),
        voxels=voxels_total,
        repeats=repeats,
        ours_seconds=statistics.median(wall for wall, _ in ours_times),
        numpy_seconds=statistics.median(wall for wall, _ in numpy_times),
        ours_cpu_seconds=statistics.median(cpu for _, cpu in ours_times),
        numpy_cpu_seconds=statistics.median(cpu for _, cpu in numpy_times),
    )


def _wall_and_cpu_seconds(work: Callable[[], None]) -> tuple[float, float]:
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall_start, time.process_time() - cpu_start


def run(
    repeats: int = DEFAULT_REPEATS,
    data_dir: Path = DEFAULT_DATA_DIR,
    generated_points: int = GENERATED_POINTS,
    log: Callable[[str], None] = print,
) -> list[VoxelizeBenchResult]:
    """Time every case whose data is present; cases with missing data are reported and skipped."""
    cases: list[BenchCase] = []
    for loader, what in ((modelnet_case, MODELNET_DIR), (kitti_case, KITTI_SCAN)):
        case = loader(data_dir)
        if case is None:
            log(f"skipped: {data_dir / what} not found")
        else:
            cases.append(case)
    cases.extend(generated_cases(generated_points))
    return [time_case(case, repeats) for case in cases]


def format_table(results: list[VoxelizeBenchResult]) -> str:
    """Millions of points per second: wall clock for both, and per CPU second for ours."""
    header = (
        f"{'case':44s} {'points':>10s} {'voxels':>10s} {'ours Mpt/s':>11s} {'numpy Mpt/s':>12s} "
        f"{'ours/numpy':>11s} {'ours Mpt/CPU-s':>15s}"
    )
    rows = [
        f"{r.case:44s} {r.points:>10,d} {r.voxels:>10,d} {r.ours_points_per_second / 1e6:>11.1f} "
        f"{r.numpy_points_per_second / 1e6:>12.2f} {r.speedup:>10.1f}x {r.ours_points_per_cpu_second / 1e6:>15.1f}"
        for r in results
    ]
    return "\n".join([header, *rows])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="timed repetitions per case")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--points", type=int, default=GENERATED_POINTS, help="points in each generated cloud")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="the shared data folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results = run(args.repeats, args.data_dir, args.points)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"voxel {VOXEL_SIZE}, median of {args.repeats}"
    )
    print(format_table(results))
    if args.json is not None:
        report = {
            "benchmark": "voxelize",
            "torch": torch.__version__,
            "numpy": np.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "voxel_size": VOXEL_SIZE,
            "results": [result.as_dict() for result in results],
        }
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
