"""Depthwise and grouped sparse convolutions: achieved memory bandwidth, and the dense-equivalent work.

Run: ``.venv/bin/python benchmarks/bench_depthwise.py [--quick] [--threads 1 2] [--json out.json]``.

Workload: a batch of 32 ModelNet40 shapes (``<repo>/../shared/data/modelnet40_normal_resampled``,
voxel 0.05, the batch of ``bench_sparse.py``); 32 procedural shapes of 10,000 points each when the
shared data is absent (the report says which). ``--quick``: 8 shapes, 2 repetitions.

Layers (kernel maps built before timing, as every layer after the first of a level finds them cached):
depthwise 3×3×3 (MobileNet, EfficientNet), 7×7×7 (ConvNeXt) and 3×3×3 stride 2, 64 channels; grouped
3×3×3 with 128 channels in 32 groups of 4 (ResNeXt-50 32×4d's first stage) and in 8 groups of 16.

Candidates, each timed forward (no autograd) and forward+backward (input and weight gradients):

- ``ours``: ``functional.conv3d(groups=...)``, the torch backend (spconv has no groups);
- ``block-diagonal``: the same layer as an ungrouped conv whose weight is zero between groups — the
  dense-equivalent work an engine without groups does (the same output, G× the multiply-adds);
- ``index ops`` (depthwise): gather, multiply and ``index_add_`` per offset with autograd's own
  backward, against ours with its hand-written backward;
- ``bmm per group`` (groups of 4): one batched GEMM over the 32 groups, without merging them into
  16-channel block-diagonal super-groups (``torch_grouped.MIN_GROUP_WIDTH``).

They are memory-bound, so the measure is achieved bandwidth: bytes gathered + scattered + weights per
second. Forward: ``pairs × (C_in + C_out) × 4`` bytes (each pair gathers an input row and scatter-adds
an output row) plus the weights; forward+backward three times that (the input-gradient pass gathers
output rows and scatters input rows; the weight-gradient pass gathers both). Every candidate is
credited the same bytes, so GB/s ratios are speed ratios. The reference is the machine's copy
bandwidth measured in the same process at the same thread count: bytes copied per second by
``Tensor.copy_`` of a 256 MiB float32 tensor (each byte read once and written once, like a gathered
byte). ``speed vs ours`` is ``time(ours) / time(candidate)``: below 1 the candidate is slower.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
    import common  # type: ignore[import-not-found]
else:
    from benchmarks import common

from image2point.sparse import SparseTensor
from image2point.sparse import functional as SF
from image2point.sparse.backends import torch_backend, torch_grouped
from image2point.voxelize import collate_voxels, voxelize

VOXEL_SIZE = 0.05
SHAPES = 32
QUICK_SHAPES = 8
PROCEDURAL_POINTS = 10_000
REPETITIONS = 5
QUICK_REPETITIONS = 2
DEFAULT_THREADS = (1, 2)
FLOAT_BYTES = 4
COPY_ELEMENTS = 2**26  # 256 MiB of float32
COPY_REPETITIONS = 7
SEED = 0

FORWARD = "forward"
FORWARD_BACKWARD = "forward+backward"
# The input-gradient and weight-gradient passes each move as many bytes as the forward.
BACKWARD_BYTE_FACTOR = 3

OURS = "ours"
BLOCK_DIAGONAL = "block-diagonal"
INDEX_OPS = "index ops"
BMM_PER_GROUP = "bmm per group"


@dataclass(frozen=True)
class Layer:
    name: str
    channels_in: int
    channels_out: int
    groups: int
    kernel_size: int
    stride: int = 1
    stride_mode: str = "floor"

    @property
    def depthwise(self) -> bool:
        return self.groups == self.channels_in == self.channels_out


LAYERS = (
    Layer("depthwise 3x3x3, C=64", 64, 64, 64, 3),
    Layer("depthwise 7x7x7, C=64", 64, 64, 64, 7),
    Layer("depthwise 3x3x3 /2, C=64", 64, 64, 64, 3, stride=2),
    Layer("grouped 3x3x3, C=128, 32 groups of 4", 128, 128, 32, 3),
    Layer("grouped 3x3x3, C=128, 8 groups of 16", 128, 128, 8, 3),
)


@dataclass
class WorkloadInfo:
    description: str
    points: int
    sites: int
    batch_size: int


@dataclass
class CopyResult:
    threads: int
    gbytes_per_s: float


@dataclass
class LayerResult:
    layer: str
    candidate: str
    threads: int
    passes: str
    pairs: int
    median_s: float
    gbytes: float
    gbytes_per_s: float
    percent_of_copy: float
    speed_vs_ours: float


def load_workload(num_shapes: int) -> tuple[SparseTensor, WorkloadInfo]:
    """The ModelNet40 batch, or procedural shapes when the shared data is absent."""
    try:
        shapes = common.load_modelnet_shapes(num_shapes)
        description = f"ModelNet40, {num_shapes} shapes"
    except common.SharedDataMissing:
        from image2point.data.procedural import SHAPE_CLASS_NAMES, generate_shape

        rng = np.random.default_rng(SEED)
        shapes = [generate_shape(rng, index % len(SHAPE_CLASS_NAMES), PROCEDURAL_POINTS) for index in range(num_shapes)]
        description = f"procedural, {num_shapes} shapes × {PROCEDURAL_POINTS:,} points (shared data absent)"
    tensor = collate_voxels([voxelize(points, VOXEL_SIZE, points) for points in shapes]).tensor
    info = WorkloadInfo(description, sum(len(points) for points in shapes), tensor.num_sites, tensor.batch_size)
    return tensor, info


def copy_bandwidth(threads: int, repetitions: int) -> CopyResult:
    source = torch.rand(COPY_ELEMENTS)
    target = torch.empty_like(source)
    times = common.time_interleaved({"copy": lambda: target.copy_(source)}, repetitions)["copy"]
    return CopyResult(threads, COPY_ELEMENTS * FLOAT_BYTES / common.median(times) / common.GIGA)


def block_diagonal(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``[C_out, C_in/G, K, K, K]`` → the ungrouped ``[C_out, C_in, K, K, K]`` weight of the same conv."""
    c_out, width = weight.shape[:2]
    full = weight.new_zeros((c_out, width * groups, *weight.shape[2:]))
    per_group = c_out // groups
    for group in range(groups):
        full[group * per_group:(group + 1) * per_group, group * width:(group + 1) * width] = \
            weight[group * per_group:(group + 1) * per_group]
    return full


def depthwise_by_index_ops(x: SparseTensor, weight: torch.Tensor, layer: Layer) -> torch.Tensor:
    """Depthwise conv written with differentiable index ops; autograd derives the backward."""
    _, key = SF._output_sites(x, layer.kernel_size, layer.stride, layer.stride_mode, "conv")
    pairs = x.cache.kernel_maps[(key, "torch")]
    weights = weight.reshape(weight.shape[0], -1).t()
    if pairs.identity_offset is not None:
        out = x.features * weights[pairs.identity_offset]
    else:
        out = x.features.new_zeros((pairs.num_out, x.num_channels))
    for offset, start, end in torch_backend._spans(pairs):
        rows = x.features.index_select(0, pairs.forward_gather[start:end]) * weights[offset]
        out.index_add_(0, pairs.forward_scatter[start:end], rows)
    return out


@contextmanager
def no_super_groups() -> Iterator[None]:
    previous = torch_grouped.MIN_GROUP_WIDTH
    torch_grouped.MIN_GROUP_WIDTH = 1
    try:
        yield
    finally:
        torch_grouped.MIN_GROUP_WIDTH = previous


def conv_candidates(x: SparseTensor, layer: Layer) -> dict[str, Callable[[SparseTensor, torch.Tensor], torch.Tensor]]:
    """Functions of (input, grouped weight) → output features, one per candidate, all equal."""
    def ours(inputs, weight):
        return SF.conv3d(inputs, weight, None, layer.stride, layer.stride_mode, groups=layer.groups).features

    def dense_equivalent(inputs, weight):
        return SF.conv3d(inputs, block_diagonal(weight, layer.groups), None, layer.stride, layer.stride_mode).features

    candidates = {OURS: ours, BLOCK_DIAGONAL: dense_equivalent}
    if layer.depthwise:
        candidates[INDEX_OPS] = lambda inputs, weight: depthwise_by_index_ops(inputs, weight, layer)
    elif torch_backend.super_group_size(layer.groups, layer.channels_in // layer.groups) > 1:
        def bmm_per_group(inputs, weight):
            with no_super_groups():
                return ours(inputs, weight)

        candidates[BMM_PER_GROUP] = bmm_per_group
    return candidates


def timed_calls(x: SparseTensor, weight: torch.Tensor, candidates) -> dict[tuple[str, str], Callable[[], None]]:
    calls = {}
    for name, function in candidates.items():
        def forward(function=function):
            with torch.no_grad():
                function(x, weight)

        def forward_backward(function=function):
            inputs = x.replace_features(x.features.detach().requires_grad_())
            function(inputs, weight).sum().backward()

        calls[(name, FORWARD)] = forward
        calls[(name, FORWARD_BACKWARD)] = forward_backward
    return calls


def measure_layer(tensor: SparseTensor, layer: Layer, threads: int, copy: CopyResult,
                  repetitions: int) -> list[LayerResult]:
    generator = torch.Generator().manual_seed(SEED)
    features = torch.randn(tensor.num_sites, layer.channels_in, generator=generator)
    x = SparseTensor(features, tensor.coords, tensor.batch_size)
    weight = torch.randn(layer.channels_out, layer.channels_in // layer.groups, *(layer.kernel_size,) * 3,
                         generator=generator).requires_grad_()
    candidates = conv_candidates(x, layer)
    with torch.no_grad():
        reference = candidates[OURS](x, weight)
        for name, function in candidates.items():
            difference = (function(x, weight) - reference).abs().max().item()
            if difference > 1e-3 * max(reference.abs().max().item(), 1.0):
                raise RuntimeError(f"{layer.name}: {name} differs from ours by {difference}")
    _, key = SF._output_sites(x, layer.kernel_size, layer.stride, layer.stride_mode, "conv")
    pairs = sum(x.cache.kernel_maps[key].counts)
    times = common.time_interleaved(timed_calls(x, weight, candidates), repetitions)
    forward_bytes = pairs * (layer.channels_in + layer.channels_out) * FLOAT_BYTES + weight.numel() * FLOAT_BYTES
    results = []
    for (name, passes), samples in times.items():
        seconds = common.median(samples)
        gbytes = forward_bytes * (1 if passes == FORWARD else BACKWARD_BYTE_FACTOR) / common.GIGA
        ours_seconds = common.median(times[(OURS, passes)])
        results.append(LayerResult(layer.name, name, threads, passes, pairs, seconds, gbytes, gbytes / seconds,
                                   100 * gbytes / seconds / copy.gbytes_per_s, ours_seconds / seconds))
    return results


def run(quick: bool, thread_counts: Sequence[int]) -> tuple[WorkloadInfo, list[CopyResult], list[LayerResult]]:
    tensor, info = load_workload(QUICK_SHAPES if quick else SHAPES)
    repetitions = QUICK_REPETITIONS if quick else REPETITIONS
    copies, results = [], []
    for threads in thread_counts:
        with common.torch_threads(threads):
            copy = copy_bandwidth(threads, COPY_REPETITIONS)
            copies.append(copy)
            for layer in LAYERS:
                print(f"bench_depthwise: {threads} thread(s): {layer.name}", file=sys.stderr, flush=True)
                results += measure_layer(tensor, layer, threads, copy, repetitions)
    return info, copies, results


def report(info: WorkloadInfo, copies: Sequence[CopyResult], results: Sequence[LayerResult]) -> str:
    sections = [
        f"image2point depthwise/grouped sparse conv benchmark: torch {torch.__version__}, voxel {VOXEL_SIZE}",
        f"Workload: {info.description}: {info.points:,} points, {info.sites:,} sites, batch {info.batch_size}",
        common.format_table("Copy bandwidth (Tensor.copy_ of 256 MiB, bytes copied per second)",
                            ["threads", "GB/s"], [[c.threads, c.gbytes_per_s] for c in copies]),
        common.format_table(
            "Layers (median s; GB = bytes gathered + scattered + weights; speed vs ours = t(ours) / t)",
            ["layer", "threads", "pass", "candidate", "pairs", "median s", "GB", "GB/s", "% copy", "speed vs ours"],
            [[r.layer, r.threads, r.passes, r.candidate, r.pairs, r.median_s, r.gbytes, r.gbytes_per_s,
              r.percent_of_copy, r.speed_vs_ours] for r in results]),
    ]
    return "\n\n".join(sections)


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.standard_arguments(__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=list(DEFAULT_THREADS),
                        help="torch intra-op thread counts to measure (default: %(default)s)")
    args = parser.parse_args(argv)
    info, copies, results = run(args.quick, args.threads)
    print(report(info, copies, results))
    if args.json:
        common.write_json(args.json, "bench_depthwise", [info, *copies, *results],
                          {"quick": args.quick, "threads": args.threads, "voxel_size": VOXEL_SIZE})
    return 0


if __name__ == "__main__":
    sys.exit(main())
