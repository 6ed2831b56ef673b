"""Before/after of engine changes: an engine module as of a git revision against the working tree, with
the spconv backend (or raw spconv's indice pairs) as the fixed reference, interleaved in one process.

Run from the repository (needs git, spconv and the shared samples):

    python benchmarks/bench_engine_ab.py backend REV [REV ...] [--workload A|B] [--shapes N]
        [--modes floor,window] [--passes forward,forward+backward] [--reps N] [--clock cpu|wall]
    python benchmarks/bench_engine_ab.py maps REV [REV ...] [--reps N] [--clock cpu|wall]

``backend``: ``image2point/sparse/backends/torch_backend.py`` as of each REV is loaded as a module of its
own and runs the convolutions of ``bench_sparse.py``'s backbone in place of the working tree's torch
backend (kernel maps are the working tree's, built once per engine and reused, so only convolution
time is compared). ``maps``: every kernel map of that backbone, built from a fresh batch, with
``image2point/sparse/downsample.py`` as of each REV on the working tree's per-level path, or, for a
revision before the per-level path, with that revision's ``kernel_map.build_kernel_map`` and
``downsample_coords`` as ``bench_sparse.py`` built them then. Ratios are time(reference) / time(row).

``--clock cpu`` (the default) times with this thread's CPU time, not the wall clock: one torch thread
then measures the work itself, and a machine shared with other jobs inflates it less (memory and cache
contention still do). Medians and minima over ``--reps`` interleaved repetitions.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
    import bench_sparse as bench  # type: ignore[import-not-found]
    import common  # type: ignore[import-not-found]
else:
    from benchmarks import bench_sparse as bench
    from benchmarks import common

from image2point.sparse import functional as SF
from image2point.sparse.backends import get_backend
from image2point.sparse.downsample import downsample_coords

BACKEND_PATH = "image2point/sparse/backends/torch_backend.py"
DOWNSAMPLE_PATH = "image2point/sparse/downsample.py"
KERNEL_MAP_PATH = "image2point/sparse/kernel_map.py"
WORKING_TREE = "working tree"


def source_at(revision: str, path: str) -> str | None:
    """``path`` as of ``revision`` (None when it did not exist there)."""
    shown = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=common.REPO_ROOT, capture_output=True,
                           text=True)
    return shown.stdout if shown.returncode == 0 else None


def load_module(name: str, source: str) -> ModuleType:
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def backend_candidates(args) -> dict[tuple, Callable[[], None]]:
    """Every (mode, pass, engine) run: the torch backend of each revision, the working tree's, spconv."""
    workload = bench.modelnet_workload(args.shapes) if args.workload == "A" else bench.kitti_workload()
    modules = {WORKING_TREE: get_backend("torch")}
    for index, revision in enumerate(args.revisions):
        source = source_at(revision, BACKEND_PATH)
        if source is None:
            raise SystemExit(f"{BACKEND_PATH} does not exist at {revision}")
        modules[revision] = load_module(f"torch_backend_at_{index}", source)
    active: dict[str, ModuleType | None] = {"torch": None}
    original = SF.get_backend
    SF.get_backend = lambda name: active["torch"] if name == "torch" and active["torch"] else original(name)
    backbones = bench.build_backbones(workload.features.shape[1])
    candidates = {}
    for mode in args.modes:
        for engine, module in list(modules.items()) + [("spconv backend", None)]:
            tensor = workload.tensor("spconv" if module is None else "torch")

            def fresh(tensor=tensor):  # same coordinate cache: maps built once, reused
                return type(tensor)(tensor.features, tensor.coords, tensor.batch_size, tensor.backend,
                                    tensor.cache, tensor.level)

            def forward(module=module, model=backbones[mode], fresh=fresh):
                active["torch"] = module
                with torch.no_grad():
                    model.eval()
                    model(fresh())

            def forward_backward(module=module, model=backbones[mode], fresh=fresh):
                active["torch"] = module
                model.train()
                model.zero_grad(set_to_none=True)
                model(fresh()).features.sum().backward()

            for name, function in (("forward", forward), ("forward+backward", forward_backward)):
                if name in args.passes:
                    candidates[(f"{args.workload} {mode}", name, engine)] = function
    return candidates


def _flat_maps(kernel_map: ModuleType, backend: ModuleType, workload, mode: str) -> None:
    """The maps as ``bench_sparse.py`` built them before the per-level path (one search per map)."""
    coords = workload.coords
    for level in range(bench.NUM_DOWNSAMPLINGS + 1):
        backend.prepare(kernel_map.build_kernel_map(coords, coords, bench.KERNEL_SIZE, 1))
        if level == bench.NUM_DOWNSAMPLINGS:
            break
        # Older revisions define downsample_coords in kernel_map; it now lives in sparse/downsample.py.
        coarse = getattr(kernel_map, "downsample_coords", downsample_coords)(coords, mode)
        for kernel_size in (bench.KERNEL_SIZE, bench.SHORTCUT_KERNEL_SIZE):
            backend.prepare(kernel_map.build_kernel_map(coords, coarse, kernel_size, bench.DOWNSAMPLE_FACTOR))
        coords = coarse


def map_candidates(args) -> dict[tuple, Callable[[], None]]:
    candidates = {}
    for workload in (bench.modelnet_workload(args.shapes), bench.kitti_workload()):
        builders: dict[str, Callable[[str], None]] = {
            WORKING_TREE: lambda mode, workload=workload: bench.build_our_kernel_maps(workload, "torch", mode)}
        for index, revision in enumerate(args.revisions):
            downsample = source_at(revision, DOWNSAMPLE_PATH)
            if downsample is not None:
                module = load_module(f"downsample_at_{index}", downsample)
                builders[revision] = lambda mode, module=module, workload=workload: _with_downsample(
                    module, lambda: bench.build_our_kernel_maps(workload, "torch", mode))
            else:
                kernel_map = load_module(f"kernel_map_at_{index}", source_at(revision, KERNEL_MAP_PATH))
                backend = load_module(f"torch_backend_at_{index}", source_at(revision, BACKEND_PATH))
                builders[revision] = lambda mode, kernel_map=kernel_map, backend=backend, workload=workload: (
                    _flat_maps(kernel_map, backend, workload, mode))
        for mode in args.modes:
            for engine, build in builders.items():
                candidates[(workload.name, mode, engine)] = lambda build=build, mode=mode: build(mode)
        raw_input = bench.raw_spconv_input(workload)
        candidates[(workload.name, "window", "raw spconv")] = lambda raw_input=raw_input: (
            bench.build_raw_spconv_pairs(raw_input))
    return candidates


def _with_downsample(module: ModuleType, function: Callable[[], None]) -> None:
    saved = SF.downsample, SF.strided_map
    SF.downsample, SF.strided_map = module.downsample, module.strided_map
    try:
        function()
    finally:
        SF.downsample, SF.strided_map = saved


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("backend", "maps"))
    parser.add_argument("revisions", nargs="*", help="git revisions to compare with the working tree")
    parser.add_argument("--workload", choices=("A", "B"), default="A")
    parser.add_argument("--shapes", type=int, default=bench.MODELNET_SHAPES)
    parser.add_argument("--modes", default="floor,window")
    parser.add_argument("--passes", default="forward,forward+backward")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args(argv)
    args.modes = tuple(args.modes.split(","))
    args.passes = tuple(args.passes.split(","))
    torch.set_num_threads(1)
    if args.clock == "cpu":
        common.time_call = common.thread_cpu_time_call
    candidates = backend_candidates(args) if args.what == "backend" else map_candidates(args)
    times = common.time_interleaved(candidates, args.reps)
    reference_engine = "spconv backend" if args.what == "backend" else "raw spconv"
    rows = []
    for key, seconds in times.items():
        group = key[:-1] if args.what == "backend" else (key[0], "window")
        reference = times.get(group + (reference_engine,))
        ratio = "-" if reference is None else f"{common.median(reference) / common.median(seconds):.3f}"
        rows.append([*key, common.median(seconds), min(seconds), ratio])
    headers = (["workload mode", "pass", "engine"] if args.what == "backend" else ["workload", "mode", "engine"])
    print(common.format_table(
        f"{args.what}: {args.clock} clock, 1 thread, {args.reps} interleaved repetitions; ratio = "
        f"median({reference_engine}{' window' if args.what == 'maps' else ''}) / median(row)",
        headers + ["median s", "min s", "ratio"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
