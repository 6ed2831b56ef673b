"""Strided-shortcut benchmark: the children shortcut as a segment sum + one matmul, against the same
values computed as a generic 2×2×2 stride-2 sparse conv (the 1×1 weight on all 8 taps, the authors'
form) and against today's 1×1 stride-2 conv that reads the child at 2q only.

Run: ``.venv/bin/python benchmarks/bench_shortcuts.py [--quick] [--threads N] [--json out.json]``.

Workloads (real data from ``<repo>/../shared/data``, voxel 0.05): A, 32 ModelNet40 shapes (8 with
``--quick``); B, one SemanticKITTI scan. The shortcut is ResNet-18's ``layer2.0.downsample``
(64 → 128 channels), applied to the voxel level of the workload with random features. Every call
starts from a fresh sparse tensor, so the child→parent map (ours) or kernel map (conv) is built inside
the timed region, as in training. Forward and forward+backward (loss = sum of outputs), both sparse
backends when spconv is installed, ``floor`` stride convention. Before timing, the segment sum and the
generic conv must agree. Medians over interleaved repetitions; ratios are the generic conv's time (and
the 2q conv's) over the segment sum's.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BenchmarkSkipped,
    format_table,
    load_kitti_scan,
    load_modelnet_shapes,
    median,
    standard_arguments,
    time_interleaved,
    write_json,
)

from image2point.sparse import SparseTensor  # noqa: E402
from image2point.sparse import functional as SF  # noqa: E402
from image2point.sparse.backends import spconv_available  # noqa: E402
from image2point.voxelize import collate_voxels, voxelize  # noqa: E402

VOXEL_SIZE = 0.05
IN_CHANNELS, OUT_CHANNELS = 64, 128
SHAPES, QUICK_SHAPES = 32, 8
REPETITIONS, QUICK_REPETITIONS = 7, 2
KITTI_SCAN = "000000.bin"
CHECK_TOLERANCE = 1e-3
CHILD_TAPS = (2, 2, 2)
SEED = 0


@dataclass(frozen=True)
class ShortcutResult:
    workload: str
    backend: str
    mode: str  # "forward" or "forward+backward"
    sites: int
    segment_sum_ms: float
    generic_conv_ms: float
    center_conv_ms: float

    @property
    def speedup_over_generic(self) -> float:
        return self.generic_conv_ms / self.segment_sum_ms


def workload_coords(name: str, quick: bool) -> torch.Tensor:
    if name == "ModelNet40":
        clouds = load_modelnet_shapes(QUICK_SHAPES if quick else SHAPES)
        voxelized = [voxelize(points, VOXEL_SIZE, points) for points in clouds]
    else:
        scan = load_kitti_scan(KITTI_SCAN)
        voxelized = [voxelize(scan[:, :3], VOXEL_SIZE, scan)]
    return collate_voxels(voxelized).tensor.coords


def candidates(coords: torch.Tensor, backend: str, backward: bool):
    generator = torch.Generator().manual_seed(SEED)
    features = torch.randn(coords.shape[0], IN_CHANNELS, generator=generator)
    weight = torch.randn(OUT_CHANNELS, IN_CHANNELS, 1, 1, 1, generator=generator, requires_grad=backward)
    batch_size = int(coords[:, 0].max()) + 1

    def fresh() -> SparseTensor:
        return SparseTensor(features.clone().requires_grad_(backward), coords, batch_size, backend=backend)

    def run(op):
        def call():
            with torch.set_grad_enabled(backward):
                out = op(fresh())
                if backward:
                    out.features.sum().backward()
            return out
        return call

    return {
        "segment_sum": run(lambda x: SF.children_conv3d(x, weight)),
        "generic_conv": run(lambda x: SF.conv3d(x, weight.expand(*weight.shape[:2], *CHILD_TAPS), stride=2)),
        "center_conv": run(lambda x: SF.conv3d(x, weight, stride=2)),
    }


def check(coords: torch.Tensor, backend: str) -> float:
    calls = candidates(coords, backend, backward=False)
    ours, generic = calls["segment_sum"](), calls["generic_conv"]()
    difference = float((ours.features - generic.features).abs().max())
    if not torch.equal(ours.coords, generic.coords) or difference > CHECK_TOLERANCE:
        raise AssertionError(f"segment sum and generic 2×2×2 conv disagree ({backend}): {difference}")
    return difference


def run(quick: bool) -> list[ShortcutResult]:
    backends = ["torch"] + (["spconv"] if spconv_available() else [])
    repetitions = QUICK_REPETITIONS if quick else REPETITIONS
    results = []
    for workload in ("ModelNet40", "SemanticKITTI"):
        coords = workload_coords(workload, quick)
        for backend in backends:
            difference = check(coords, backend)
            print(f"{workload} {backend}: segment sum = generic 2×2×2 conv (max |difference| {difference:.2g})")
            for backward in (False, True):
                times = time_interleaved(candidates(coords, backend, backward), repetitions)
                ms = {name: 1e3 * median(values) for name, values in times.items()}
                results.append(ShortcutResult(workload, backend, "forward+backward" if backward else "forward",
                                              coords.shape[0], ms["segment_sum"], ms["generic_conv"],
                                              ms["center_conv"]))
    return results


def main() -> None:
    parser = standard_arguments(__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        results = run(args.quick)
    except BenchmarkSkipped as skipped:
        print(f"skipped: {skipped}")
        return
    rows = [(r.workload, r.backend, r.mode, r.sites, r.segment_sum_ms, r.generic_conv_ms, r.center_conv_ms,
             r.speedup_over_generic, r.center_conv_ms / r.segment_sum_ms) for r in results]
    print(format_table(f"Strided 1×1 shortcut {IN_CHANNELS}→{OUT_CHANNELS}, voxel {VOXEL_SIZE}, "
                       f"{args.threads} thread(s), median ms",
                       ["workload", "backend", "mode", "sites", "segment sum", "2×2×2 conv", "2q conv",
                        "2×2×2 / segment sum", "2q / segment sum"], rows))
    if args.json:
        write_json(args.json, "bench_shortcuts", results, {"quick": args.quick, "threads": args.threads})


if __name__ == "__main__":
    main()
