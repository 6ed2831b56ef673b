"""The torch backend on CUDA with its offsets in groups (one gather, bmm and index_add per group of similar
pair counts) against one gather-GEMM-scatter per offset, side by side in one process: the inflated
ResNet-18 backbone of bench_sparse on workloads A (32 ModelNet40 shapes) and B (a SemanticKITTI scan),
forward and forward+backward, floor and window stride modes, medians of interleaved repetitions.

    python benchmarks/bench_cuda_offset_groups.py [--reps 15] [--json PATH]

Needs a GPU; the data as bench_sparse finds it (../shared/data or IMAGE2POINT_BENCH_DATA).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_sparse  # noqa: E402
from image2point.sparse.backends import torch_backend  # noqa: E402

SHAPES = 32
PATHS = {"grouped": {"cuda"}, "per offset": set()}


def timed(device: torch.device, step) -> float:
    torch.cuda.synchronize(device)
    started = time.perf_counter()
    step()
    torch.cuda.synchronize(device)
    return time.perf_counter() - started


def measure(workload, device: torch.device, reps: int) -> list[dict]:
    rows = []
    backbones = bench_sparse.build_backbones(workload.features.shape[1])
    for mode, backbone in backbones.items():
        backbone = backbone.to(device)
        features, coords = workload.features.to(device), workload.coords.to(device)

        def make_input(grad: bool):
            x = bench_sparse.SparseTensor(features.clone().requires_grad_(grad), coords, workload.batch_size,
                                          backend="torch")
            return x

        def forward():
            with torch.no_grad():
                backbone(make_input(False))

        def forward_backward():
            out = backbone(make_input(True))
            out.features.float().square().mean().backward()

        for name, step in (("forward", forward), ("forward+backward", forward_backward)):
            times = {path: [] for path in PATHS}
            for path, devices in PATHS.items():  # warm-up: kernel maps, allocator, cuBLAS plans
                torch_backend.BATCHED_OFFSET_DEVICE_TYPES = devices
                step(); step()
            for _ in range(reps):
                for path, devices in PATHS.items():
                    torch_backend.BATCHED_OFFSET_DEVICE_TYPES = devices
                    times[path].append(timed(device, step))
            medians = {path: statistics.median(values) for path, values in times.items()}
            rows.append({"workload": workload.name, "mode": mode, "pass": name,
                         **{f"{path} s": medians[path] for path in PATHS},
                         "speed-up": medians["per offset"] / medians["grouped"]})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_cuda_offset_groups: no GPU", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    rows = []
    for workload in (bench_sparse.modelnet_workload(SHAPES), bench_sparse.kitti_workload()):
        rows += measure(workload, device, args.reps)
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, fp32 (TF32 {torch.backends.cuda.matmul.allow_tf32})")
    print("| workload | mode | pass | grouped s | per offset s | speed-up |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['workload']} | {row['mode']} | {row['pass']} | {row['grouped s']:.4f} | "
              f"{row['per offset s']:.4f} | {row['speed-up']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
