"""``bench_sparse.py --device DEVICE``: the inflated ResNet-18 backbone on one device, per precision.

The PyTorch backend only (no spconv needed, so it runs on a machine without it), on the workloads of
``bench_sparse.py`` moved to ``DEVICE``, in each stride convention and each precision:

- ``fp32``: float32 with TF32 off (cuBLAS and cuDNN), the numerics of the CPU;
- ``tf32``: float32 tensors, TF32 allowed for matmuls (CUDA only: the CPU has no TF32);
- ``bf16``: ``torch.autocast(dtype=bfloat16)``, the training loop's ``train.amp=bf16``. On the CPU autocast
  leaves sparse convolutions in float32 (``torch_backend.HALF_PRECISION_DEVICE_TYPES``), so there the bf16
  rows differ from fp32 in the BatchNorm and ReLU layers only, and their "% dense" compares float32 sparse
  GEMMs with bf16 dense ones.

Every run is timed forward (eval, no autograd) and forward+backward (train, loss = sum of the outputs),
median over repetitions after one untimed round, each call from fresh inputs (kernel maps are built
inside the timed region, as in training) and closed by a device synchronisation. Throughput counts
2·C_in·C_out FLOPs per kernel-map pair, set beside ``torch.mm`` of ``[rows, C] @ [C, C]`` on the same
device in the same precision (each conv at the dense rate of its output width, as the CPU table does);
"% dense" is the ratio. Also: kernel-map build time of one batch, on the device; on CUDA the peak
allocated GPU memory of each run (``torch.cuda.max_memory_allocated``); and the mean relative
difference of each precision's first forward output from the fp32 one.
"""

from __future__ import annotations

import dataclasses
import enum
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch

try:  # run through bench_sparse.py as a script, or imported as benchmarks.sparse_on_device
    import bench_sparse as bench  # type: ignore[import-not-found]
    import common  # type: ignore[import-not-found]
except ImportError:
    from benchmarks import bench_sparse as bench
    from benchmarks import common

from image2point.voxelize import collate_voxels, voxelize

BACKEND = "torch"
GIGA = common.GIGA
DENSE_ROWS = {"cpu": bench.DENSE_ROWS, "cuda": 262_144}  # a GPU needs a larger GEMM to be busy
QUICK_KITTI_POINTS = 2048


class Precision(enum.Enum):
    FP32 = "fp32"
    TF32 = "tf32"
    BF16 = "bf16"


PRECISIONS = tuple(precision.value for precision in Precision)


@dataclass(frozen=True)
class DevicePlan:
    name: str
    modelnet_shapes: int
    kitti_points: int | None  # None: the whole scan
    repetitions: int
    dense_repetitions: int
    warmup: int  # untimed rounds before the timed ones


DEFAULT_DEVICE_PLAN = DevicePlan("default", bench.MODELNET_SHAPES, None, 3, 5, 1)
# Small enough for two CPU cores in about half a minute: the device check's CPU mode.
QUICK_DEVICE_PLAN = DevicePlan("quick", 2, QUICK_KITTI_POINTS, 1, 2, 0)


@dataclass
class DeviceDenseResult:
    device: str
    precision: str
    rows: int
    channels: int
    gflops: float


@dataclass
class DeviceRunResult:
    device: str
    workload: str
    stride_mode: str
    precision: str
    passes: str
    median_s: float
    times_s: list[float]
    gflop: float
    gflops: float
    dense_gflops: float
    peak_bytes: int | None  # CUDA only: peak allocated memory of one call


@dataclass
class DeviceKernelMapResult:
    device: str
    workload: str
    stride_mode: str
    median_s: float


@dataclass
class PrecisionErrorResult:
    """Mean |out - out_fp32| / mean |out_fp32| of the first forward outputs."""

    device: str
    workload: str
    stride_mode: str
    precision: str
    relative_error: float


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def matmul_precision(precision: Precision) -> Iterator[None]:
    """TF32 allowed for ``tf32`` only, off otherwise (restored afterwards); covers backward passes too."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    allow = precision is Precision.TF32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def autocast(precision: Precision, device: torch.device):
    """bf16 autocast for ``bf16`` (forward passes only, as in the training loop)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision is Precision.BF16)


def usable_precisions(requested: Sequence[str], device: torch.device) -> tuple[list[Precision], list[Any]]:
    """The requested precisions this device has, and a skipped row for each one it has not."""
    usable, skipped = [], []
    for name in requested:
        precision = Precision(name)
        if precision is Precision.TF32 and device.type != "cuda":
            skipped.append(bench.SkippedResult("-", f"{name} on {device.type}", "TF32 exists on CUDA devices only"))
        else:
            usable.append(precision)
    return usable, skipped


# ---------------------------------------------------------------------------------------------------
# Workloads on the device.


def device_workloads(plan: DevicePlan, device: torch.device) -> list[bench.Workload]:
    modelnet = bench.modelnet_workload(plan.modelnet_shapes)
    if plan.kitti_points is None:
        kitti = bench.kitti_workload()
    else:
        scan = common.load_kitti_scan(bench.KITTI_SCAN)[:plan.kitti_points]
        tensor = collate_voxels([voxelize(scan[:, bench.XYZ], bench.VOXEL_SIZE, scan)]).tensor
        kitti = bench.Workload("B", f"SemanticKITTI 00/{bench.KITTI_SCAN}, first {len(scan):,} points, xyz + "
                                    "intensity", tensor.coords, tensor.features, tensor.batch_size, len(scan))
    return [dataclasses.replace(workload, coords=workload.coords.to(device), features=workload.features.to(device))
            for workload in (modelnet, kitti)]


def measure_dense(device: torch.device, precisions: Sequence[Precision], repetitions: int) -> list[DeviceDenseResult]:
    rows = DENSE_ROWS[device.type]
    results = []
    for precision in precisions:
        dtype = torch.bfloat16 if precision is Precision.BF16 else torch.float32
        for width in bench.DENSE_WIDTHS:
            generator = torch.Generator().manual_seed(0)
            left = torch.randn(rows, width, generator=generator).to(device, dtype)
            right = torch.randn(width, width, generator=generator).to(device, dtype)
            out = torch.empty(rows, width, device=device, dtype=dtype)
            with matmul_precision(precision):
                seconds = timed({"mm": lambda: torch.mm(left, right, out=out)}, device, repetitions)["mm"]
            results.append(DeviceDenseResult(device.type, precision.value, rows, width,
                                             2 * rows * width * width / common.median(seconds) / GIGA))
    return results


def timed(candidates: dict[Any, Callable[[], Any]], device: torch.device, repetitions: int,
          peaks: dict[Any, int] | None = None, warmup: int = 1) -> dict[Any, list[float]]:
    """``common.time_interleaved`` with every call closed by a synchronisation; on CUDA, each candidate's
    largest peak allocated memory over its calls goes into ``peaks``."""

    def closed(key, function):
        def call():
            if peaks is not None and device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            function()
            synchronize(device)
            if peaks is not None and device.type == "cuda":
                peaks[key] = max(peaks.get(key, 0), torch.cuda.max_memory_allocated(device))
        return call

    synchronize(device)
    return common.time_interleaved({key: closed(key, function) for key, function in candidates.items()}, repetitions,
                                   warmup)


# ---------------------------------------------------------------------------------------------------
# The backbone.


def forward(backbone: bench.StemAndBackbone, workload: bench.Workload, precision: Precision,
            device: torch.device) -> torch.Tensor:
    backbone.eval()
    with torch.no_grad(), matmul_precision(precision), autocast(precision, device):
        return backbone(workload.tensor(BACKEND)).features


def forward_backward(backbone: bench.StemAndBackbone, workload: bench.Workload, precision: Precision,
                     device: torch.device) -> None:
    backbone.train()
    backbone.zero_grad(set_to_none=True)
    with matmul_precision(precision):
        with autocast(precision, device):
            loss = backbone(workload.tensor(BACKEND)).features.float().sum()
        loss.backward()


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.float() - reference).abs().mean() / reference.abs().mean().clamp_min(1e-30))


def measure_mode(workload: bench.Workload, backbone: bench.StemAndBackbone, mode: str,
                 precisions: Sequence[Precision], device: torch.device, plan: DevicePlan,
                 dense: dict[tuple[str, int], float]) -> list[Any]:
    """Every precision of one stride convention: error against fp32, times, throughput, peak memory."""
    device_name = device.type
    with bench.conv_pair_flops(backbone) as work:
        reference = forward(backbone, workload, Precision.FP32, device)
    results: list[Any] = [
        PrecisionErrorResult(device_name, workload.name, mode, precision.value,
                             relative_error(forward(backbone, workload, precision, device), reference))
        for precision in precisions if precision is not Precision.FP32]
    del reference
    candidates = {}
    for precision in precisions:
        candidates[(precision, bench.FORWARD)] = lambda p=precision: forward(backbone, workload, p, device)
        candidates[(precision, bench.FORWARD_BACKWARD)] = lambda p=precision: forward_backward(backbone, workload, p,
                                                                                               device)
    bench._progress(f"{device_name}: workload {workload.name}, {mode}: timing {len(candidates)} runs "
                    f"× {plan.repetitions}")
    peaks: dict[Any, int] = {}
    times = timed(candidates, device, plan.repetitions, peaks, plan.warmup)
    flops = sum(item.flops for item in work)
    for (precision, passes), seconds in times.items():
        factor = bench.FORWARD_BACKWARD_FLOP_FACTOR if passes == bench.FORWARD_BACKWARD else 1
        rates = {width: dense[(precision.value, width)] for width in bench.DENSE_WIDTHS}
        elapsed = common.median(seconds)
        results.append(DeviceRunResult(device_name, workload.name, mode, precision.value, passes, elapsed, seconds,
                                       factor * flops / GIGA, factor * flops / elapsed / GIGA,
                                       bench.dense_equivalent_gflops(work, rates), peaks.get((precision, passes))))
    kernel_map_times = timed({mode: lambda: bench.build_our_kernel_maps(workload, BACKEND, mode)}, device,
                             plan.repetitions, warmup=plan.warmup)
    results.append(DeviceKernelMapResult(device_name, workload.name, mode, common.median(kernel_map_times[mode])))
    return results


def run_on_device(device: torch.device, plan: DevicePlan, requested: Sequence[str]) -> list[Any]:
    """All measurements of ``plan`` on ``device`` in the ``requested`` precisions."""
    if device.type == "cuda" and not torch.cuda.is_available():
        raise common.BenchmarkSkipped(f"--device {device}: no CUDA device is visible")
    precisions, results = usable_precisions(requested, device)
    bench._progress(f"{device.type}: loading and voxelizing the shared samples")
    workloads = device_workloads(plan, device)
    results = [workload.info() for workload in workloads] + results
    bench._progress(f"{device.type}: dense matmul")
    dense_results = measure_dense(device, precisions, plan.dense_repetitions)
    results += dense_results
    dense = {(item.precision, item.channels): item.gflops for item in dense_results}
    for workload in workloads:
        backbones = bench.build_backbones(workload.features.shape[1])
        for mode in bench.STRIDE_MODES:
            results += measure_mode(workload, backbones[mode].to(device), mode, precisions, device, plan, dense)
    return results


# ---------------------------------------------------------------------------------------------------
# Report.


def _of(results: Sequence[Any], kind: type) -> list:
    return [result for result in results if isinstance(result, kind)]


def _mib(value: int | None) -> Any:
    return "-" if value is None else value / common.BYTES_PER_MIB


def device_report(results: Sequence[Any], device: torch.device, plan: DevicePlan, threads: int) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {threads} thread(s)"
    sections = [f"image2point sparse benchmark on {device.type} ({name}): plan {plan.name}, torch "
                f"{torch.__version__}, backend {BACKEND}, voxel {bench.VOXEL_SIZE}, inflated {bench.MODEL_NAME} "
                "backbone"]
    sections.append(common.format_table(
        "Workloads", ["workload", "description", "points", "sites", "batch"],
        [[w.workload, w.description, w.points, w.sites, w.batch_size] for w in _of(results, bench.WorkloadInfo)]))
    dense = _of(results, DeviceDenseResult)
    sections.append(common.format_table(
        f"Dense matmul: torch.mm [{dense[0].rows if dense else '-'}, C] @ [C, C]", ["precision", "C", "GFLOP/s"],
        [[d.precision, d.channels, d.gflops] for d in dense]))
    sections.append(common.format_table(
        "Backbone time (median; GFLOP counts 2·C_in·C_out per kernel-map pair; peak = allocated GPU memory)",
        ["workload", "pass", "mode", "precision", "reps", "median s", "GFLOP", "GFLOP/s", "dense GFLOP/s",
         "% dense", "peak MiB"],
        [[r.workload, r.passes, r.stride_mode, r.precision, len(r.times_s), r.median_s, r.gflop, r.gflops,
          r.dense_gflops, 100 * r.gflops / r.dense_gflops, _mib(r.peak_bytes)]
         for r in _of(results, DeviceRunResult)]))
    sections.append(common.format_table(
        "Kernel maps of one batch, built alone on the device (median s)", ["workload", "mode", "median s"],
        [[k.workload, k.stride_mode, k.median_s] for k in _of(results, DeviceKernelMapResult)]))
    sections.append(common.format_table(
        "First forward output against fp32: mean |difference| / mean |fp32 output|",
        ["workload", "mode", "precision", "relative difference"],
        [[e.workload, e.stride_mode, e.precision, e.relative_error] for e in _of(results, PrecisionErrorResult)]))
    skipped = _of(results, bench.SkippedResult)
    if skipped:
        sections.append(common.format_table("Not measured", ["workload", "what", "why"],
                                            [[s.workload, s.what, s.reason] for s in skipped]))
    return "\n\n".join(sections)
