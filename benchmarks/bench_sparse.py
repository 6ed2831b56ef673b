"""Sparse backbone benchmark: an inflated ResNet-18 on both image2point backends and on raw spconv.

Run: ``.venv/bin/python benchmarks/bench_sparse.py [--quick] [--json out.json]``.

Workloads (real data from ``<repo>/../shared/data``, voxel size 0.05):

- A: a batch of 32 ModelNet40 shapes (points in the unit sphere, features = xyz); 8 with ``--quick``.
- B: one full SemanticKITTI scan (features = xyz + intensity).

Network: a 3×3×3 submanifold input conv (features → 64 channels) with BatchNorm and ReLU, then
``layer1``..``layer4`` of ``convert_2d_to_3d(create_model_2d("resnet18"))``, the backbone as the paper
uses it. It holds no pooling layer (the 2D stem's 7×7 conv and max pool are replaced by the input conv),
so no max pool is timed.

Engines, each timed forward (inference: eval mode, no autograd) and forward+backward (training mode,
loss = sum of the output features):

- ours, backend ``torch`` and ``spconv``, stride conventions ``floor`` and ``window``. Each call starts
  from a fresh SparseTensor, so kernel maps are built inside the timed region, as in training.
- raw spconv: the same network written directly with ``spconv.pytorch`` (SubMConv3d, SparseConv3d,
  BatchNorm1d on the features, residual adds on the features), weights copied from ours (spconv's
  layout is ``[C_out, K, K, K, C_in]``, ours ``.permute(0, 2, 3, 4, 1)``). spconv's strided conv
  ``SparseConv3d(k=3, s=2, p=1)`` has the geometry of our ``window`` convention, so raw spconv is
  compared with ours in ``window`` mode; ``floor`` has no raw spconv counterpart. Its spatial shape
  gets a margin of ``2 ** (number of downsamplings)`` voxels: spconv drops output sites beyond
  ``floor((D + 2p - k) / s) + 1``, which with a tight shape would cut the last site row of odd extents
  that our unbounded grid keeps.

The 1×1 stride-2 downsample shortcut. Ours computes it on the sites of the block's 3×3 stride-2 conv
(one set of coarse sites per level): the value at coarse site ``q`` is ``W · x[2q]``, zero when ``2q`` is
empty, followed by BatchNorm. A spconv ``SparseConv3d(k=1, s=2)`` would instead output only the sites
``{q : 2q occupied}``, so its BatchNorm and residual add would run on other sites. Input ``2q`` feeding
output ``q`` is exactly the centre tap (offset (1, 1, 1)) of the 3×3 stride-2 padding-1 window of ``q``.
So raw spconv runs the shortcut as spconv's own ``indice_conv`` (the autograd function behind
SparseConv3d) over the centre-offset pairs of the main branch's indice pairs, fetched through the
main conv's ``indice_key``. The result lives on the main branch's sites in the main branch's row order,
and costs one gather-GEMM-scatter over those pairs, like ours.

Threads. spconv 2.3.8's CPU kernels return wrong sums when torch's intra-op pool runs more than one
thread. Our spconv backend switches to one thread around each spconv kernel; raw spconv runs its
whole forward and backward under ``torch.set_num_threads(1)``. The torch backend uses the process's
thread count. Raw spconv's CPU backward also needs the CUDA-stream workaround that our spconv backend
installs when it loads spconv.

Checks before timing: on each workload, the window-mode outputs of raw spconv and of both our
backends are compared with each other (eval mode, rows matched by coordinates) and the maximum
absolute difference is printed.

Metrics:

- GFLOP/s: ``2 · C_in · C_out`` per kernel-map pair, summed over the convs (:func:`conv_pair_flops`,
  which reads the pairs from our cached kernel maps); forward+backward counts three times the forward
  (input and weight gradients). Beside it, ``torch.mm`` of ``[rows, C] @ [C, C]`` at the network's
  widths, measured in the same run, and the rate a dense matmul would reach on the same FLOPs.
- Per stage: sites kept and forward time of each stage under ``floor`` and ``window``.
- Kernel maps: time to build all of a batch's maps (ours: ``downsample_coords`` + ``build_kernel_map``
  + backend preparation; raw spconv: ``ops.get_indice_pairs``).
- Peak memory of full-scan inference on workload B: one fresh subprocess per backend and stride
  convention, reading the process's resident-memory high-water mark (``VmHWM`` in
  ``/proc/self/status``; see ``common.peak_rss_bytes`` for why not ``ru_maxrss``). It covers every
  allocation of the process, torch's included, which tracemalloc would miss. Target: 2 GB.
- Ratios, as speed ratios (> 1: the numerator engine is faster): raw spconv time / ours-on-spconv time
  (target ≥ 0.95) and spconv-backend time / torch-backend time (target ≥ 0.9), both in ``window`` mode
  for the first and in each mode for the second.
"""

from __future__ import annotations

import argparse
import copy
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

if __package__ in (None, ""):
    # Run as a script: make the repository and this folder importable.
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
    import common  # type: ignore[import-not-found]
else:
    from benchmarks import common

from image2point.inflate.converter import convert_2d_to_3d
from image2point.models2d import create_model_2d
from image2point.sparse import SparseTensor
from image2point.sparse.backends import get_backend, spconv_available
from image2point.sparse.kernel_map import DOWNSAMPLE_FACTOR, KernelMap, build_kernel_map, downsample_coords
from image2point.sparse.modules import SparseBatchNorm, SparseConv3d, SparseReLU
from image2point.voxelize import collate_voxels, voxelize

VOXEL_SIZE = 0.05
MODELNET_SHAPES = 32
QUICK_MODELNET_SHAPES = 8
KITTI_SCAN = "000000.bin"
XYZ = slice(0, 3)

MODEL_NAME = "resnet18"
STEM_CHANNELS = 64
STEM_KERNEL = 3
STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
NUM_DOWNSAMPLINGS = 3
SEED = 0

STRIDE_MODES = ("floor", "window")
OUR_BACKENDS = ("torch", "spconv")
OURS = "ours"
RAW_SPCONV = "raw spconv"
# spconv's strided conv has the geometry of our window convention.
RAW_SPCONV_MODE = "window"
FORWARD = "forward"
FORWARD_BACKWARD = "forward+backward"
# Backward computes an input gradient and a weight gradient, each as costly as the forward.
FORWARD_BACKWARD_FLOP_FACTOR = 3

REPETITIONS = 3
QUICK_REPETITIONS = 1
DENSE_ROWS = 32768
DENSE_REPETITIONS = 5

TARGET_RAW_SPEED_RATIO = 0.95
TARGET_BACKEND_SPEED_RATIO = 0.9
MEMORY_TARGET_BYTES = 2 * 10**9
MEMORY_PROBE_TIMEOUT_S = 600
MAX_ABS_DIFF_TOLERANCE = 1e-3


# ---------------------------------------------------------------------------------------------------
# Results.


@dataclass
class RunResult:
    """One engine on one workload, forward or forward+backward."""

    workload: str
    engine: str
    backend: str
    stride_mode: str
    passes: str
    median_s: float
    times_s: list[float]
    gflop: float
    gflops: float
    dense_gflops: float


@dataclass
class StageResult:
    """One stage of the forward pass: sites it outputs, its work and its time."""

    workload: str
    engine: str
    backend: str
    stride_mode: str
    stage: str
    sites: int
    pairs: int
    gflop: float
    median_s: float


@dataclass
class KernelMapResult:
    """Time to build every kernel map (or spconv indice pair set) the network needs for one batch."""

    workload: str
    engine: str
    backend: str
    stride_mode: str
    median_s: float


@dataclass
class DenseResult:
    rows: int
    channels: int
    threads: int
    gflops: float


@dataclass
class CheckResult:
    """Agreement of two engines' outputs on the same sites (eval mode, window convention)."""

    workload: str
    reference: str
    candidate: str
    same_sites: bool
    max_abs_diff: float
    max_abs_output: float


@dataclass
class MemoryResult:
    workload: str
    backend: str
    stride_mode: str
    peak_bytes: int
    before_inference_bytes: int
    target_bytes: int
    met: bool


@dataclass
class RatioResult:
    """A speed ratio (time of ``slower_candidate`` / time of ``candidate``) against its target."""

    workload: str
    passes: str
    name: str
    ratio: float
    target: float
    met: bool


# ---------------------------------------------------------------------------------------------------
# Workloads.


@dataclass
class Workload:
    name: str
    description: str
    coords: torch.Tensor  # [N, 4] int64 (batch, x, y, z)
    features: torch.Tensor
    batch_size: int

    def tensor(self, backend: str) -> SparseTensor:
        """A fresh tensor (empty kernel-map cache) on ``backend``."""
        return SparseTensor(self.features, self.coords, self.batch_size, backend=backend)


def modelnet_workload(num_shapes: int) -> Workload:
    shapes = common.load_modelnet_shapes(num_shapes)
    batch = collate_voxels([voxelize(points, VOXEL_SIZE, points) for points in shapes])
    tensor = batch.tensor
    return Workload("A", f"ModelNet40, {num_shapes} shapes", tensor.coords, tensor.features, tensor.batch_size)


def kitti_workload() -> Workload:
    scan = common.load_kitti_scan(KITTI_SCAN)
    tensor = collate_voxels([voxelize(scan[:, XYZ], VOXEL_SIZE, scan)]).tensor
    return Workload("B", f"SemanticKITTI scan {KITTI_SCAN}", tensor.coords, tensor.features, tensor.batch_size)


# ---------------------------------------------------------------------------------------------------
# Our network.


class InflatedBackbone(nn.Module):
    """Input conv (features → 64, 3×3×3 submanifold) + BN + ReLU, then layer1..layer4 of ResNet-18 in 3D."""

    def __init__(self, in_channels: int, stride_mode: str):
        super().__init__()
        torch.manual_seed(SEED)
        converted = convert_2d_to_3d(create_model_2d(MODEL_NAME), stride_mode=stride_mode).model
        self.stem = nn.Sequential(
            SparseConv3d(in_channels, STEM_CHANNELS, STEM_KERNEL, stride_mode=stride_mode),
            SparseBatchNorm(STEM_CHANNELS),
            SparseReLU(),
        )
        for name in STAGES[1:]:
            self.add_module(name, getattr(converted, name))

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [(name, getattr(self, name)) for name in STAGES]

    def forward(self, x: SparseTensor) -> SparseTensor:
        for _, stage in self.stages():
            x = stage(x)
        return x


def build_backbones(in_channels: int) -> dict[str, InflatedBackbone]:
    """One backbone per stride convention, all with the same weights."""
    backbones = {mode: InflatedBackbone(in_channels, mode) for mode in STRIDE_MODES}
    reference = backbones[STRIDE_MODES[0]].state_dict()
    for backbone in backbones.values():
        backbone.load_state_dict(reference)
    return backbones


@dataclass
class ConvWork:
    """One conv call of a forward pass: its stage, channels and kernel-map pairs."""

    stage: str
    in_channels: int
    out_channels: int
    pairs: int

    @property
    def flops(self) -> int:
        return 2 * self.in_channels * self.out_channels * self.pairs


def kernel_map_pairs(x: SparseTensor, conv: SparseConv3d) -> int:
    """Pairs of the kernel map ``conv`` uses on input ``x``, read from the batch's map cache."""
    if conv.stride == 1:
        key = ("subm", x.stride, conv.kernel_size)
    else:
        key = ("down", x.stride, conv.stride_mode, conv.kernel_size)
    kernel_map = x.cache.kernel_maps[key]
    if not isinstance(kernel_map, KernelMap):
        raise TypeError(f"cache entry {key} is not a kernel map")
    return sum(kernel_map.counts)


def conv_pair_flops(backbone: InflatedBackbone, x: SparseTensor) -> list[ConvWork]:
    """Every conv of one forward of ``backbone`` on ``x`` with its pair count (2·C_in·C_out FLOPs each)."""
    work: list[ConvWork] = []
    handles = []
    for stage, module in backbone.stages():
        for conv in module.modules():
            if isinstance(conv, SparseConv3d):
                def record(conv_module, inputs, _output, stage=stage):
                    pairs = kernel_map_pairs(inputs[0], conv_module)
                    work.append(ConvWork(stage, conv_module.in_channels, conv_module.out_channels, pairs))
                handles.append(conv.register_forward_hook(record))
    try:
        with torch.no_grad():
            backbone.eval()(x)
    finally:
        for handle in handles:
            handle.remove()
    return work


# ---------------------------------------------------------------------------------------------------
# The same network on raw spconv.


@contextmanager
def single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _spconv_weight(conv: SparseConv3d) -> torch.Tensor:
    """Our ``[C_out, C_in, K, K, K]`` kernel in spconv's ``[C_out, K, K, K, C_in]`` layout."""
    return conv.weight.detach().permute(0, 2, 3, 4, 1).contiguous()


def _batch_norm_1d(bn: SparseBatchNorm) -> nn.BatchNorm1d:
    plain = nn.BatchNorm1d(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    plain.load_state_dict(bn.state_dict())
    return plain


def _set_weight(module: nn.Module, weight: torch.Tensor) -> nn.Module:
    with torch.no_grad():
        module.weight.copy_(weight)
    return module


class RawCentreTapShortcut(nn.Module):
    """1×1 stride-2 conv on the sites of the block's 3×3 stride-2 conv: the centre tap of its pairs."""

    def __init__(self, conv: SparseConv3d, indice_key: str):
        super().__init__()
        import spconv.pytorch as spconv

        self.weight = nn.Parameter(_spconv_weight(conv))
        self.indice_key = indice_key
        self.algo = spconv.ConvAlgo.Native

    def forward(self, x, main_output):
        from spconv.pytorch import functional as spconv_functional

        pairs = main_output.find_indice_pair(self.indice_key)
        centre = pairs.indice_pairs.shape[1] // 2
        features = spconv_functional.indice_conv(
            x.features,
            self.weight,
            pairs.indice_pairs[:, centre:centre + 1].contiguous(),
            pairs.indice_pair_num[centre:centre + 1].contiguous(),
            main_output.features.shape[0],
            self.algo,
        )
        return features


class RawBasicBlock(nn.Module):
    def __init__(self, block: nn.Module, level: int):
        super().__init__()
        import spconv.pytorch as spconv

        conv1, conv2 = block.conv1, block.conv2
        subm_key = f"subm{level}"
        self.down_key = f"down{level}"
        if conv1.stride == 1:
            self.conv1 = spconv.SubMConv3d(conv1.in_channels, conv1.out_channels, conv1.kernel_size,
                                           bias=False, indice_key=subm_key)
        else:
            self.conv1 = spconv.SparseConv3d(conv1.in_channels, conv1.out_channels, conv1.kernel_size,
                                             stride=conv1.stride, padding=(conv1.kernel_size - 1) // 2,
                                             bias=False, indice_key=self.down_key)
        _set_weight(self.conv1, _spconv_weight(conv1))
        self.conv2 = _set_weight(
            spconv.SubMConv3d(conv2.in_channels, conv2.out_channels, conv2.kernel_size, bias=False,
                              indice_key=subm_key),
            _spconv_weight(conv2),
        )
        self.bn1, self.bn2 = _batch_norm_1d(block.bn1), _batch_norm_1d(block.bn2)
        self.shortcut = self.shortcut_bn = None
        if block.downsample is not None:
            shortcut_conv, shortcut_bn = block.downsample
            self.shortcut = RawCentreTapShortcut(shortcut_conv, self.down_key)
            self.shortcut_bn = _batch_norm_1d(shortcut_bn)

    def forward(self, x):
        out = self.conv1(x)
        out = out.replace_feature(torch.relu(self.bn1(out.features)))
        identity = x.features if self.shortcut is None else self.shortcut_bn(self.shortcut(x, out))
        out = self.conv2(out)
        return out.replace_feature(torch.relu(self.bn2(out.features) + identity))


class RawSpconvBackbone(nn.Module):
    """:class:`InflatedBackbone` (window convention) written directly with spconv modules."""

    def __init__(self, ours: InflatedBackbone):
        super().__init__()
        import spconv.pytorch as spconv

        stem_conv, stem_bn, _ = ours.stem
        self.stem_conv = _set_weight(
            spconv.SubMConv3d(stem_conv.in_channels, stem_conv.out_channels, stem_conv.kernel_size,
                              bias=False, indice_key="subm0"),
            _spconv_weight(stem_conv),
        )
        self.stem_bn = _batch_norm_1d(stem_bn)
        for level, name in enumerate(STAGES[1:]):
            blocks = [RawBasicBlock(block, level) for block in getattr(ours, name)]
            self.add_module(name, nn.Sequential(*blocks))

    def stem(self, x):
        out = self.stem_conv(x)
        return out.replace_feature(torch.relu(self.stem_bn(out.features)))

    def stages(self) -> list[tuple[str, Callable]]:
        return [("stem", self.stem)] + [(name, getattr(self, name)) for name in STAGES[1:]]

    def forward(self, x):
        for _, stage in self.stages():
            x = stage(x)
        return x


def raw_spconv_input(workload: Workload):
    """spconv's input: contiguous int32 (batch, x, y, z) indices and a spatial shape with a margin."""
    import spconv.pytorch as spconv

    margin = 2**NUM_DOWNSAMPLINGS
    spatial_shape = [int(v) + 1 + margin for v in workload.coords[:, 1:].max(0).values.tolist()]
    indices = workload.coords.to(torch.int32).contiguous()
    return lambda: spconv.SparseConvTensor(workload.features, indices, spatial_shape, workload.batch_size)


# ---------------------------------------------------------------------------------------------------
# Timed passes.


@dataclass
class Engine:
    """A runnable configuration: per-stage forward and a training step."""

    label: str
    engine: str
    backend: str
    stride_mode: str
    model: nn.Module
    make_input: Callable[[], object]
    thread_guard: Callable = field(default=lambda: _no_guard())
    stage_times: dict[str, list[float]] = field(default_factory=dict)

    def forward(self) -> None:
        with torch.no_grad(), self.thread_guard():
            self.model.eval()
            x = self.make_input()
            for name, stage in self.model.stages():
                x, seconds = _timed(stage, x)
                self.stage_times.setdefault(name, []).append(seconds)

    def forward_backward(self) -> None:
        with self.thread_guard():
            self.model.train()
            self.model.zero_grad(set_to_none=True)
            out = self.model(self.make_input())
            out.features.sum().backward()

    def output(self):
        with torch.no_grad(), self.thread_guard():
            self.model.eval()
            return self.model(self.make_input())


@contextmanager
def _no_guard() -> Iterator[None]:
    yield


def _timed(function: Callable, argument):
    start = common.time.perf_counter()
    result = function(argument)
    return result, common.time.perf_counter() - start


def build_engines(workload: Workload) -> list[Engine]:
    backbones = build_backbones(workload.features.shape[1])
    engines = []
    for mode in STRIDE_MODES:
        for backend in OUR_BACKENDS:
            engines.append(Engine(f"{OURS} {backend}/{mode}", OURS, backend, mode, backbones[mode],
                                  lambda backend=backend: workload.tensor(backend)))
    raw = RawSpconvBackbone(backbones[RAW_SPCONV_MODE])
    engines.append(Engine(f"{RAW_SPCONV}/{RAW_SPCONV_MODE}", RAW_SPCONV, "spconv", RAW_SPCONV_MODE, raw,
                          raw_spconv_input(workload), single_thread))
    return engines


# ---------------------------------------------------------------------------------------------------
# Checks.


def _row_keys(coords: torch.Tensor) -> torch.Tensor:
    coords = coords.to(torch.int64)
    extent = int(coords.max()) + 1
    return ((coords[:, 0] * extent + coords[:, 1]) * extent + coords[:, 2]) * extent + coords[:, 3]


def _sorted_by_site(coords: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.argsort(_row_keys(coords))
    return coords.to(torch.int64)[order], features[order]


def check_outputs(workload: Workload, engines: list[Engine]) -> list[CheckResult]:
    """Window-mode outputs of every engine against raw spconv's, rows matched by coordinates."""
    window = [engine for engine in engines if engine.stride_mode == RAW_SPCONV_MODE]
    reference = next(engine for engine in window if engine.engine == RAW_SPCONV)
    raw_out = reference.output()
    ref_coords, ref_features = _sorted_by_site(raw_out.indices, raw_out.features)
    results = []
    for engine in window:
        if engine is reference:
            continue
        out = engine.output()
        coords, features = _sorted_by_site(out.coords, out.features)
        same_sites = torch.equal(coords, ref_coords)
        diff = float((features - ref_features).abs().max()) if same_sites else float("nan")
        results.append(CheckResult(workload.name, reference.label, engine.label, same_sites, diff,
                                   float(ref_features.abs().max())))
    return results


# ---------------------------------------------------------------------------------------------------
# Kernel maps alone.


def our_kernel_maps(workload: Workload, backend: str, stride_mode: str) -> None:
    """Every map the backbone builds: per level a 3×3×3 submanifold map, then the stride-2 maps."""
    prepare = get_backend(backend).prepare
    coords = workload.coords
    for level in range(NUM_DOWNSAMPLINGS + 1):
        prepare(build_kernel_map(coords, coords, STEM_KERNEL, 1))
        if level == NUM_DOWNSAMPLINGS:
            break
        coarse = downsample_coords(coords, stride_mode)
        prepare(build_kernel_map(coords, coarse, STEM_KERNEL, DOWNSAMPLE_FACTOR))
        prepare(build_kernel_map(coords, coarse, 1, DOWNSAMPLE_FACTOR))
        coords = coarse


def raw_spconv_kernel_maps(make_input: Callable) -> None:
    """spconv's indice pairs for the same geometry (the shortcut reuses the strided conv's pairs)."""
    from spconv.core import ConvAlgo
    from spconv.pytorch import ops

    x = make_input()
    indices, spatial_shape = x.indices, x.spatial_shape
    kernel = [STEM_KERNEL] * 3
    ones, zeros = [1] * 3, [0] * 3
    pad = [(STEM_KERNEL - 1) // 2] * 3
    stride = [DOWNSAMPLE_FACTOR] * 3
    for level in range(NUM_DOWNSAMPLINGS + 1):
        ops.get_indice_pairs(indices, x.batch_size, spatial_shape, ConvAlgo.Native, kernel, ones, pad, ones,
                             zeros, True, False)
        if level == NUM_DOWNSAMPLINGS:
            break
        out_shape = ops.get_conv_output_size(spatial_shape, kernel, stride, pad, ones)
        indices, _, _ = ops.get_indice_pairs(indices, x.batch_size, spatial_shape, ConvAlgo.Native, kernel,
                                             stride, pad, ones, zeros, False, False)
        spatial_shape = out_shape
