"""The torch backend's compiled CPU kernels by tile size, against the same convolutions in torch ops.

Runs ``bench_sparse.py``'s backbone (kernel maps built once and reused, so only convolution time is
compared) with ``cpu_kernels.TILE_BYTES`` set to each size in turn, and once with the kernels off
(``IMAGE2POINT_CPU_KERNELS=0``: the torch ops' steps), interleaved in one process, one thread, this
thread's CPU time. Ratios are time(torch ops) / time(row). Needs the shared samples and a C++ compiler.

    python benchmarks/bench_cpu_tiles.py [--workload A|B] [--shapes N] [--mode floor|window] [--reps N]
        [--tiles-kib 256,512,1024,2048,4096]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

import torch

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
    import bench_sparse as bench  # type: ignore[import-not-found]
    import common  # type: ignore[import-not-found]
else:
    from benchmarks import bench_sparse as bench
    from benchmarks import common

from image2point.sparse.backends import cpu_kernels

TORCH_OPS = "torch ops"
DEFAULT_TILES_KIB = "256,512,1024,2048,4096"


def _with_kernels(tile_bytes: int | None, function: Callable[[], None]) -> Callable[[], None]:
    """``function`` with the kernels at ``tile_bytes`` per tile (None: the kernels off)."""

    def run() -> None:
        previous_env, previous_tile = os.environ.get(cpu_kernels.KERNELS_ENV_VAR), cpu_kernels.TILE_BYTES
        os.environ[cpu_kernels.KERNELS_ENV_VAR] = "0" if tile_bytes is None else "1"
        cpu_kernels.TILE_BYTES = tile_bytes or previous_tile
        try:
            function()
        finally:
            cpu_kernels.TILE_BYTES = previous_tile
            if previous_env is None:
                os.environ.pop(cpu_kernels.KERNELS_ENV_VAR, None)
            else:
                os.environ[cpu_kernels.KERNELS_ENV_VAR] = previous_env

    return run


def candidates(args) -> dict[tuple, Callable[[], None]]:
    workload = bench.modelnet_workload(args.shapes) if args.workload == "A" else bench.kitti_workload()
    model = bench.build_backbones(workload.features.shape[1])[args.mode]
    tensor = workload.tensor("torch")

    def fresh():  # same coordinate cache: maps built once, reused
        return type(tensor)(tensor.features, tensor.coords, tensor.batch_size, tensor.backend, tensor.cache,
                            tensor.level)

    def forward() -> None:
        model.eval()
        with torch.no_grad():
            model(fresh())

    def forward_backward() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        model(fresh()).features.sum().backward()

    sizes: list[int | None] = [kib * common.BYTES_PER_KIB for kib in args.tiles_kib] + [None]
    runs = {}
    for name, function in (("forward", forward), ("forward+backward", forward_backward)):
        for size in sizes:
            label = TORCH_OPS if size is None else f"tiles of {size // common.BYTES_PER_KIB} KiB"
            runs[(f"{args.workload} {args.mode}", name, label)] = _with_kernels(size, function)
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("A", "B"), default="A")
    parser.add_argument("--shapes", type=int, default=bench.MODELNET_SHAPES, help="workload A's shapes")
    parser.add_argument("--mode", choices=("floor", "window"), default="floor")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tiles-kib", default=DEFAULT_TILES_KIB)
    args = parser.parse_args(argv)
    args.tiles_kib = [int(size) for size in args.tiles_kib.split(",")]
    if cpu_kernels.load() is None:
        raise SystemExit(f"compiled CPU kernels unavailable: {cpu_kernels.status()}")
    torch.set_num_threads(1)
    common.time_call = common.thread_cpu_time_call
    times = common.time_interleaved(candidates(args), args.reps)
    rows = []
    for key, seconds in times.items():
        reference = times[key[:-1] + (TORCH_OPS,)]
        rows.append([*key, common.median(seconds), min(seconds),
                     f"{common.median(reference) / common.median(seconds):.3f}"])
    print(common.format_table(
        f"cpu kernels by tile size: cpu clock, 1 thread, {args.reps} interleaved repetitions; "
        f"ratio = median({TORCH_OPS}) / median(row)",
        ["workload mode", "pass", "engine", "median s", "min s", "ratio"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
