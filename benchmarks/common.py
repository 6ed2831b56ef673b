"""Shared utilities of the benchmark scripts: timing, the shared sample data, tables, JSON, peak memory.

Timings are wall-clock ``time.perf_counter`` intervals. Candidates that are compared with each other are
measured in the same process and interleaved (one repetition of every candidate, then the next
repetition, in a rotating order), so slow drifts of a shared machine hit all of them alike; results are
medians over the repetitions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
# The shared data lives next to the repository, never inside it; DATA_ENV_VAR points elsewhere (a machine
# that has the repository without ../shared, such as the GPU machine of benchmarks/device_check.sh).
DATA_ENV_VAR = "IMAGE2POINT_BENCH_DATA"
SHARED_DATA = Path(os.environ.get(DATA_ENV_VAR) or REPO_ROOT.parent / "shared" / "data")
MODELNET_DIR = SHARED_DATA / "modelnet40_normal_resampled"
KITTI_VELODYNE_DIR = SHARED_DATA / "semantickitti" / "sequences" / "00" / "velodyne"

BYTES_PER_MIB = 2**20
BYTES_PER_KIB = 2**10
GIGA = 1e9
THOUSAND = 1000
PROC_STATUS = Path("/proc/self/status")
# High-water mark of this process's resident memory, in kB (Linux).
PEAK_RSS_FIELD = "VmHWM:"


class BenchmarkSkipped(RuntimeError):
    """Something a benchmark needs is missing; it reports why instead of measuring."""


class SharedDataMissing(BenchmarkSkipped):
    """The shared sample data a benchmark needs is not there."""


def require_shared(path: Path) -> Path:
    if not path.exists():
        raise SharedDataMissing(f"shared data not found at {path} (expected <repo>/../shared/data, "
                                f"or under ${DATA_ENV_VAR})")
    return path


# ---------------------------------------------------------------------------------------------------
# Shared samples.


def load_modelnet_shapes(count: int) -> list[np.ndarray]:
    """``count`` ModelNet40 shapes (xyz, float32, unit sphere), spread evenly over the training list."""
    from image2point.data.modelnet40 import ModelNet40

    dataset = ModelNet40(require_shared(MODELNET_DIR), split="train")
    if count > len(dataset):
        raise ValueError(f"asked for {count} shapes, the shared training list has {len(dataset)}")
    indices = np.linspace(0, len(dataset) - 1, count).round().astype(int)
    return [dataset.load(int(index)).points for index in indices]


def load_kitti_scan(name: str) -> np.ndarray:
    """One SemanticKITTI scan: float32 ``[N, 4]`` x, y, z, intensity."""
    from image2point.data.semantickitti import read_velodyne_scan

    return read_velodyne_scan(require_shared(KITTI_VELODYNE_DIR / name))


# ---------------------------------------------------------------------------------------------------
# Timing.


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` inside the block, restored after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def time_call(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def thread_cpu_time_call(function: Callable[[], Any]) -> float:
    """This thread's CPU seconds for one call: with one torch thread, the work itself, and less inflated than
    the wall clock by other jobs on the machine (memory and cache contention still count)."""
    start = time.thread_time()
    function()
    return time.thread_time() - start


def time_interleaved(
    candidates: Mapping[str, Callable[[], Any]], repetitions: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of every candidate, ``repetitions`` each, interleaved in a rotating order.

    ``warmup`` untimed rounds come first (allocator, lazy imports, first-touch of memory).
    """
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for repetition in range(repetitions):
        shift = repetition % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(time_call(candidates[name]))
    return times


def dense_matmul_gflops(rows: int, channels: int, repetitions: int) -> float:
    """Achieved GFLOP/s of ``torch.mm`` of ``[rows, channels] @ [channels, channels]`` (float32)."""
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(rows, channels, generator=generator)
    right = torch.randn(channels, channels, generator=generator)
    out = torch.empty(rows, channels)
    times = time_interleaved({"mm": lambda: torch.mm(left, right, out=out)}, repetitions)["mm"]
    return 2 * rows * channels * channels / median(times) / GIGA


# ---------------------------------------------------------------------------------------------------
# Memory.


def peak_rss_bytes() -> int:
    """Peak resident memory of this process.

    On Linux this is ``VmHWM`` of ``/proc/self/status``, the high-water mark of the process's own
    address space. ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is not used there: a child started
    by ``subprocess`` inherits the parent's peak through fork/exec and reports at least the parent's
    size. Elsewhere ``ru_maxrss`` is the fallback (kB on Linux, bytes on macOS).
    """
    if PROC_STATUS.exists():
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith(PEAK_RSS_FIELD):
                return int(line.split()[1]) * BYTES_PER_KIB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if platform.system() == "Darwin" else peak * BYTES_PER_KIB


def run_json_subprocess(arguments: Sequence[str], timeout_s: float) -> dict:
    """Run ``python <arguments>`` in a fresh interpreter and parse the JSON object on its last line."""
    completed = subprocess.run(
        [sys.executable, *arguments], capture_output=True, text=True, timeout=timeout_s, cwd=REPO_ROOT
    )
    if completed.returncode != 0:
        raise RuntimeError(f"subprocess {arguments} failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------
# Output.


def format_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: text left-aligned, numbers right-aligned."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(header)] + [len(row[column]) for row in cells]) for column, header in enumerate(headers)]
    numeric = [bool(rows) and all(_is_number(row[column]) for row in rows) for column in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [value.rjust(width) if is_numeric else value.ljust(width)
                 for value, width, is_numeric in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    separator = "  ".join("-" * width for width in widths)
    return "\n".join([title, line(headers), separator] + [line(row) for row in cells])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    """Floats to three significant digits (thousands grouped), ints grouped, the rest as ``str``."""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= THOUSAND else f"{value:.3g}"
    if _is_number(value):
        return f"{value:,}"
    return str(value)


def results_to_json(results: Sequence[Any]) -> list[dict]:
    """Dataclass results as dicts, each tagged with its type name under ``"kind"``."""
    return [{"kind": type(result).__name__, **dataclasses.asdict(result)} for result in results]


def write_json(path: str | Path, benchmark: str, results: Sequence[Any], settings: Mapping[str, Any]) -> None:
    payload = {
        "benchmark": benchmark,
        "settings": dict(settings),
        "environment": environment(),
        "results": results_to_json(results),
    }
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
    }


def standard_arguments(description: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes: ``--quick`` and ``--json PATH``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and smaller inputs")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    return parser


def device_arguments(description: str) -> argparse.ArgumentParser:
    """:func:`standard_arguments` plus ``--device`` (cpu or cuda) and ``--threads`` (one by default)."""
    parser = standard_arguments(description)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    return parser
