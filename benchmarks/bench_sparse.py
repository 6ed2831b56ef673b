"""Sparse backbone benchmark: an inflated ResNet-18 on both image2point backends and on raw spconv.

Run: ``.venv/bin/python benchmarks/bench_sparse.py [--quick | --full] [--threads N] [--clock wall|cpu]
[--json out.json]``. ``--clock cpu`` times with the process's CPU time (all threads) instead of the wall
clock: on a machine shared with other jobs, one-thread rows then measure the work itself.

On a GPU (no spconv needed): ``bench_sparse.py --device cuda [--quick] [--precisions fp32,tf32,bf16]``
times the PyTorch backend there in each precision against dense matmul on the same device instead
(``sparse_on_device.py`` says what it measures); ``--device cpu`` does the same on the CPU.

Workloads (real data from ``<repo>/../shared/data``, voxel size 0.05, skipped with a message if absent):

- A: a batch of 32 ModelNet40 shapes (points in the unit sphere, features = xyz); 8 with ``--quick``.
- B: one full SemanticKITTI scan (features = xyz + intensity).

Network (:class:`StemAndBackbone`): a 3×3×3 submanifold input conv (features → 64 channels) with BatchNorm
and ReLU, then the package's inflated ResNet-18 backbone (``layer1``..``layer4``,
``image2point.models.networks.inflate_backbone``), the backbone as the paper uses it. It holds no pooling layer (the 2D stem's 7×7 conv and max pool are replaced by the input
conv), so no max pool is timed.

Engines, each timed forward (inference: eval mode, no autograd) and forward+backward (training mode,
loss = sum of the output features). Every call starts from fresh inputs, so kernel maps (ours) and
indice pairs (spconv) are built inside the timed region, as in training:

- ours, backends ``torch`` and ``spconv``, stride conventions ``floor`` and ``window``;
- raw spconv: the same network written directly with ``spconv.pytorch`` (SubMConv3d, SparseConv3d,
  BatchNorm1d on the features, residual adds on the features), weights copied from ours (spconv's
  layout ``[C_out, K, K, K, C_in]`` is ours ``.permute(0, 2, 3, 4, 1)``), indices as contiguous int32
  ``(batch, x, y, z)``. spconv's strided ``SparseConv3d(k=3, s=2, p=1)`` has the geometry of our
  ``window`` convention, so raw spconv is compared with ours in ``window`` mode; ``floor`` has no raw
  spconv counterpart. Its spatial shape gets a margin of ``2 ** (number of downsamplings)`` voxels:
  spconv drops output sites at or beyond ``floor((D + 2p - k) / s) + 1``, which with a tight shape
  would cut the last row of sites of odd extents that our unbounded grid keeps.

The 1×1 stride-2 downsample shortcut. Ours computes it on the sites of the block's 3×3 stride-2 conv
(one set of coarse sites per level): the value at coarse site ``q`` is ``W · x[2q]``, zero when ``2q``
is empty, then BatchNorm. A spconv ``SparseConv3d(k=1, s=2)`` would output only the sites
``{q : 2q occupied}``, so its BatchNorm and the residual add would run on other sites. Input ``2q``
feeding output ``q`` is exactly the centre tap (offset (1, 1, 1)) of the 3×3 stride-2 padding-1 window
of ``q``, so raw spconv runs the shortcut as spconv's own ``indice_conv`` (the autograd function
behind SparseConv3d) over the centre-offset pairs of the main conv's indice pairs, fetched through the
main conv's ``indice_key``. The result lies on the main branch's sites in the main branch's row
order, costs one gather-GEMM-scatter over those pairs like ours, and the check below confirms that
both networks produce the same sites and values.

Threads. spconv 2.3.8's CPU kernels return wrong sums when torch's intra-op pool runs more than one
thread, so our spconv backend switches to one thread around each spconv kernel and raw spconv runs
its whole forward and backward under ``torch.set_num_threads(1)``. Everything else (the torch
backend, our kernel maps, BatchNorm) runs with ``--threads`` threads, 1 by default: spconv's kernels
are then compared with ours on equal terms, and timings stay stable on a shared machine, where an
intra-op pool competing with other processes for cores runs several times slower. Raw spconv's CPU
backward also needs the CUDA-stream workaround that our spconv backend installs when it loads spconv.

Check: before timing, the window-mode outputs of both our backends on workload A are compared with
raw spconv's (eval mode, rows matched by coordinates); the maximum absolute difference is printed.
Workload B is checked the same way on the outputs of its first timed forward (an extra untimed pass
over a full scan in window mode would take about as long as the measurement).

Metrics:

- GFLOP/s: ``2 · C_in · C_out`` per kernel-map pair summed over the convs (:func:`conv_pair_flops`
  reads the pairs from our cached kernel maps); forward+backward counts three times the forward (input
  and weight gradients). Beside it the rate ``torch.mm`` reaches on the same FLOPs at the same widths
  (``[rows, C] @ [C, C]`` per width C, measured in the same run).
- Per stage: sites kept and forward time of every stage under ``floor`` and ``window``.
- Kernel maps: time to build all maps of one batch (ours: the layers' own per-level path,
  ``functional.kernel_map`` on one site index per level, + backend preparation; raw spconv:
  ``ops.get_indice_pairs``), and in window mode (the same geometry) raw spconv's time over ours
  (target ≥ 1).
- The default network (``sparse_default_network.py``: floor, the default ``children_sum`` shortcut, the
  ``conv3`` input layer and MLP head, as ``image2point train`` builds it): forward per stage on both
  backends, and on workload A one training step against the time inside its sparse convs (target
  ≤ 1.2×), each at 1 and 2 threads (``--step-threads``).
- Peak memory of full-scan inference on workload B: a fresh subprocess per backend (and stride
  convention) reads its resident-memory high-water mark (``VmHWM`` in ``/proc/self/status``; see
  ``common.peak_rss_bytes`` for why not ``ru_maxrss``). It counts every allocation of the process,
  torch's included, which tracemalloc would not see. Target: 2 GB.
- Speed ratios (time of the reference / time of the candidate; ≥ 1: the candidate is at least as
  fast): ours-on-spconv against raw spconv in ``window`` mode (target ≥ 0.95), and the torch backend
  against the spconv backend in each mode, i.e. ``time_spconv / time_torch`` (target ≥ 1.0); and every
  torch-backend row at ≥ 80 % of the dense matmul rate.

Plans. A full-scan forward+backward in ``window`` mode takes about 100 s per engine on one core, so
the default run (about 5 minutes) times workload B once per engine, its forward+backward in ``floor``
mode only, and its peak memory in ``window`` mode (the convention that keeps more sites, so the worst
case). ``--full`` times everything with repetitions and measures memory in both modes; ``--quick``
(about a minute) uses 8 shapes, one repetition, and workload B in ``floor`` mode only. The report
lists what a plan left out.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

if __package__ in (None, ""):
    # Run as a script: make the repository and this folder importable.
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
    import common  # type: ignore[import-not-found]
    import sparse_default_network as default_network  # type: ignore[import-not-found]
else:
    from benchmarks import common
    from benchmarks import sparse_default_network as default_network

from image2point.inflate.converter import InflationSettings
from image2point.models.networks import inflate_backbone
from image2point.models2d import create_model_2d
from image2point.sparse import SparseTensor
from image2point.sparse import functional as SF
from image2point.sparse.backends import get_backend, spconv_available
from image2point.sparse.kernel_map import DOWNSAMPLE_FACTOR, KernelMap
from image2point.sparse.modules import SparseBatchNorm, SparseConv3d, SparseReLU
from image2point.voxelize import collate_voxels, voxelize

VOXEL_SIZE = 0.05
MODELNET_SHAPES = 32
QUICK_MODELNET_SHAPES = 8
KITTI_SCAN = "000000.bin"
XYZ = slice(0, 3)

MODEL_NAME = "resnet18"
STEM_CHANNELS = 64
KERNEL_SIZE = 3
SHORTCUT_KERNEL_SIZE = 1
STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
# layer2, layer3 and layer4 each start with a stride-2 block.
NUM_DOWNSAMPLINGS = len(STAGES) - 2
SEED = 0

STRIDE_MODES = ("floor", "window")
FLOOR, WINDOW = STRIDE_MODES
OUR_BACKENDS = ("torch", "spconv")
OURS = "ours"
RAW_SPCONV = "raw spconv"
FORWARD = "forward"
FORWARD_BACKWARD = "forward+backward"
PASSES = (FORWARD, FORWARD_BACKWARD)
# Backward computes an input gradient and a weight gradient, each as costly as the forward.
FORWARD_BACKWARD_FLOP_FACTOR = 3

DEFAULT_THREADS = 1
DENSE_ROWS = 32768
DENSE_WIDTHS = (64, 128, 256, 512)

TARGET_RAW_SPEED_RATIO = 0.95
TARGET_BACKEND_SPEED_RATIO = 1.0
# Every row of the torch backend reaches this share of dense torch.mm at the same widths.
TARGET_SHARE_OF_DENSE = 0.8
# Our kernel maps (torch backend, window) at least as fast as raw spconv's indice pairs.
TARGET_KERNEL_MAP_RATIO = 1.0
# Thread counts of the default-network sections (sparse_default_network.py), side by side.
DEFAULT_STEP_THREADS = (1, 2)
MEMORY_TARGET_BYTES = 2 * 10**9
MEMORY_PROBE_TIMEOUT_S = 900
# Outputs agree when the largest difference is this small relative to the largest output value.
CHECK_RELATIVE_TOLERANCE = 1e-5
GIGA = common.GIGA


# ---------------------------------------------------------------------------------------------------
# What to measure.


@dataclass(frozen=True)
class WorkloadPlan:
    repetitions: int
    # Untimed forwards of every engine before timing (they also feed the output check).
    warmup: bool
    forward_modes: tuple[str, ...]
    backward_modes: tuple[str, ...]

    def __post_init__(self) -> None:
        # FLOPs and sites are read during forwards, so every timed mode is also timed forward.
        if not set(self.backward_modes) <= set(self.forward_modes):
            raise ValueError("every mode timed forward+backward must also be timed forward")


@dataclass(frozen=True)
class Plan:
    name: str
    modelnet_shapes: int
    modelnet: WorkloadPlan
    kitti: WorkloadPlan
    memory_modes: tuple[str, ...]
    dense_repetitions: int


QUICK_PLAN = Plan(
    "quick", QUICK_MODELNET_SHAPES,
    modelnet=WorkloadPlan(1, True, STRIDE_MODES, STRIDE_MODES),
    kitti=WorkloadPlan(1, False, (FLOOR,), ()),
    memory_modes=(FLOOR,), dense_repetitions=2,
)
DEFAULT_PLAN = Plan(
    "default", MODELNET_SHAPES,
    modelnet=WorkloadPlan(3, True, STRIDE_MODES, STRIDE_MODES),
    kitti=WorkloadPlan(1, False, STRIDE_MODES, (FLOOR,)),
    memory_modes=(WINDOW,), dense_repetitions=3,
)
FULL_PLAN = Plan(
    "full", MODELNET_SHAPES,
    modelnet=WorkloadPlan(5, True, STRIDE_MODES, STRIDE_MODES),
    kitti=WorkloadPlan(3, True, STRIDE_MODES, STRIDE_MODES),
    memory_modes=STRIDE_MODES, dense_repetitions=5,
)


def select_plan(quick: bool, full: bool) -> Plan:
    if quick and full:
        raise ValueError("choose one of quick and full")
    return QUICK_PLAN if quick else FULL_PLAN if full else DEFAULT_PLAN


# ---------------------------------------------------------------------------------------------------
# Results.


@dataclass
class WorkloadInfo:
    workload: str
    description: str
    points: int
    sites: int
    batch_size: int


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
    """One stage of the forward pass: the sites it outputs, its work and its median time."""

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
    """Time to build every kernel map (or spconv indice-pair set) the network needs for one batch."""

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
    """Agreement of an engine's window-mode output with raw spconv's on the same sites (eval mode)."""

    workload: str
    reference: str
    candidate: str
    source: str
    same_sites: bool
    max_abs_diff: float | None  # None when the sites differ
    max_abs_output: float
    agrees: bool


@dataclass
class MemoryResult:
    workload: str
    backend: str
    stride_mode: str
    threads: int
    peak_bytes: int
    before_inference_bytes: int
    target_bytes: int
    met: bool


@dataclass
class RatioResult:
    """``time(reference) / time(candidate)`` against its target (≥ target is met)."""

    workload: str
    passes: str
    stride_mode: str
    candidate: str
    reference: str
    ratio: float
    target: float
    met: bool


@dataclass
class SkippedResult:
    workload: str
    what: str
    reason: str


# ---------------------------------------------------------------------------------------------------
# Workloads.


@dataclass
class Workload:
    name: str
    description: str
    coords: torch.Tensor  # [N, 4] int64 (batch, x, y, z)
    features: torch.Tensor
    batch_size: int
    points: int

    def tensor(self, backend: str) -> SparseTensor:
        """A fresh tensor (empty kernel-map cache) on ``backend``."""
        return SparseTensor(self.features, self.coords, self.batch_size, backend=backend)

    def info(self) -> WorkloadInfo:
        return WorkloadInfo(self.name, self.description, self.points, self.coords.shape[0], self.batch_size)


def modelnet_workload(num_shapes: int) -> Workload:
    shapes = common.load_modelnet_shapes(num_shapes)
    tensor = collate_voxels([voxelize(points, VOXEL_SIZE, points) for points in shapes]).tensor
    points = sum(len(shape) for shape in shapes)
    return Workload("A", f"ModelNet40, {num_shapes} shapes, xyz", tensor.coords, tensor.features,
                    tensor.batch_size, points)


def kitti_workload() -> Workload:
    scan = common.load_kitti_scan(KITTI_SCAN)
    tensor = collate_voxels([voxelize(scan[:, XYZ], VOXEL_SIZE, scan)]).tensor
    return Workload("B", f"SemanticKITTI 00/{KITTI_SCAN}, xyz + intensity", tensor.coords, tensor.features,
                    tensor.batch_size, len(scan))


# ---------------------------------------------------------------------------------------------------
# Our network and its work.


class StemAndBackbone(nn.Module):
    """Input conv (features → 64, 3×3×3 submanifold) + BN + ReLU, then the package's
    :class:`~image2point.models.networks.InflatedBackbone` of ResNet-18 (``layer1``..``layer4`` in 3D), as
    :func:`~image2point.models.networks.inflate_backbone` builds it for every voxel network."""

    def __init__(self, in_channels: int, stride_mode: str):
        super().__init__()
        torch.manual_seed(SEED)
        # "center" shortcuts: raw spconv below runs the 1×1 stride-2 shortcut as the centre tap.
        settings = InflationSettings(stride_mode=stride_mode, shortcut="center")
        self.backbone, _ = inflate_backbone(create_model_2d(MODEL_NAME), settings)
        if self.backbone.stage_names != STAGES[1:]:
            raise ValueError(f"{MODEL_NAME}'s stages are {self.backbone.stage_names}, not {STAGES[1:]}")
        self.stem = nn.Sequential(
            SparseConv3d(in_channels, STEM_CHANNELS, KERNEL_SIZE, stride_mode=stride_mode),
            SparseBatchNorm(STEM_CHANNELS),
            SparseReLU(),
        )

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [("stem", self.stem)] + [(name, getattr(self.backbone, name)) for name in self.backbone.stage_names]

    def forward(self, x: SparseTensor) -> SparseTensor:
        return self.backbone(self.stem(x))


def build_backbones(in_channels: int) -> dict[str, StemAndBackbone]:
    """One backbone per stride convention, all with the same weights."""
    backbones = {mode: StemAndBackbone(in_channels, mode) for mode in STRIDE_MODES}
    reference = backbones[STRIDE_MODES[0]].state_dict()
    for backbone in backbones.values():
        backbone.load_state_dict(reference)
    return backbones


@dataclass(frozen=True)
class ConvWork:
    """One conv call of a forward pass: its stage, channels and number of kernel-map pairs."""

    stage: str
    in_channels: int
    out_channels: int
    pairs: int

    @property
    def flops(self) -> int:
        return 2 * self.in_channels * self.out_channels * self.pairs


def kernel_map_pairs(x: SparseTensor, conv: SparseConv3d) -> int:
    """Pairs of the kernel map that ``conv`` uses on input ``x``, read from the batch's map cache."""
    # The functional layer's own cache key, so the lookup cannot drift from what the conv cached.
    _, key = SF._output_sites(x, conv.kernel_size, conv.stride, conv.stride_mode, "conv")
    kernel_map = x.cache.kernel_maps.get(key)
    if not isinstance(kernel_map, KernelMap):
        raise KeyError(f"no kernel map {key} in the cache: run the conv on this batch first")
    return sum(kernel_map.counts)


@contextmanager
def conv_pair_flops(backbone: StemAndBackbone) -> Iterator[list[ConvWork]]:
    """Record the :class:`ConvWork` (2·C_in·C_out FLOPs per pair) of every conv of ``backbone`` that runs
    inside the ``with`` block, pairs read from the batch's kernel-map cache."""
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
        yield work
    finally:
        for handle in handles:
            handle.remove()


# ---------------------------------------------------------------------------------------------------
# The same network on raw spconv.


def _spconv_weight(conv: SparseConv3d) -> torch.Tensor:
    """A copy of our ``[C_out, C_in, K, K, K]`` kernel in spconv's ``[C_out, K, K, K, C_in]`` layout."""
    return conv.weight.detach().permute(0, 2, 3, 4, 1).clone(memory_format=torch.contiguous_format)


def _with_weight(module: nn.Module, weight: torch.Tensor) -> nn.Module:
    with torch.no_grad():
        module.weight.copy_(weight)
    return module


def _batch_norm_1d(bn: SparseBatchNorm) -> nn.BatchNorm1d:
    plain = nn.BatchNorm1d(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    plain.load_state_dict(bn.state_dict())
    return plain


class RawCentreTapShortcut(nn.Module):
    """1×1 stride-2 conv on the sites of the block's 3×3 stride-2 conv: the centre tap of its pairs."""

    def __init__(self, conv: SparseConv3d, indice_key: str):
        super().__init__()
        import spconv.pytorch as spconv

        self.weight = nn.Parameter(_spconv_weight(conv))
        self.indice_key = indice_key
        self.algo = spconv.ConvAlgo.Native

    def forward(self, x, main_output) -> torch.Tensor:
        from spconv.pytorch import functional as spconv_functional

        pairs = main_output.find_indice_pair(self.indice_key)
        centre = pairs.indice_pairs.shape[1] // 2
        return spconv_functional.indice_conv(
            x.features,
            self.weight,
            pairs.indice_pairs[:, centre:centre + 1].contiguous(),
            pairs.indice_pair_num[centre:centre + 1].contiguous(),
            main_output.features.shape[0],
            self.algo,
        )


class RawBasicBlock(nn.Module):
    """A ResNet basic block in spconv; one submanifold and one strided indice key per level."""

    def __init__(self, block: nn.Module, level: int):
        super().__init__()
        import spconv.pytorch as spconv

        conv1, conv2 = block.conv1, block.conv2
        subm_key, down_key = f"subm{level}", f"down{level}"
        if conv1.stride == 1:
            self.conv1 = spconv.SubMConv3d(conv1.in_channels, conv1.out_channels, conv1.kernel_size,
                                           bias=False, indice_key=subm_key)
        else:
            self.conv1 = spconv.SparseConv3d(conv1.in_channels, conv1.out_channels, conv1.kernel_size,
                                             stride=conv1.stride, padding=(conv1.kernel_size - 1) // 2,
                                             bias=False, indice_key=down_key)
        _with_weight(self.conv1, _spconv_weight(conv1))
        self.conv2 = _with_weight(
            spconv.SubMConv3d(conv2.in_channels, conv2.out_channels, conv2.kernel_size, bias=False,
                              indice_key=subm_key),
            _spconv_weight(conv2),
        )
        self.bn1, self.bn2 = _batch_norm_1d(block.bn1), _batch_norm_1d(block.bn2)
        self.shortcut = self.shortcut_bn = None
        if block.downsample is not None:
            shortcut_conv, shortcut_bn = block.downsample
            self.shortcut = RawCentreTapShortcut(shortcut_conv, down_key)
            self.shortcut_bn = _batch_norm_1d(shortcut_bn)

    def forward(self, x):
        out = self.conv1(x)
        out = out.replace_feature(torch.relu(self.bn1(out.features)))
        identity = x.features if self.shortcut is None else self.shortcut_bn(self.shortcut(x, out))
        out = self.conv2(out)
        return out.replace_feature(torch.relu(self.bn2(out.features) + identity))


class RawSpconvBackbone(nn.Module):
    """:class:`StemAndBackbone` (window convention) written directly with spconv modules."""

    def __init__(self, ours: StemAndBackbone):
        super().__init__()
        import spconv.pytorch as spconv

        stem_conv, stem_bn, _ = ours.stem
        self.stem_conv = _with_weight(
            spconv.SubMConv3d(stem_conv.in_channels, stem_conv.out_channels, stem_conv.kernel_size,
                              bias=False, indice_key="subm0"),
            _spconv_weight(stem_conv),
        )
        self.stem_bn = _batch_norm_1d(stem_bn)
        for level, name in enumerate(STAGES[1:]):
            self.add_module(name, nn.Sequential(*(RawBasicBlock(block, level)
                                                  for block in getattr(ours.backbone, name))))

    def stem(self, x):
        out = self.stem_conv(x)
        return out.replace_feature(torch.relu(self.stem_bn(out.features)))

    def stages(self) -> list[tuple[str, Callable]]:
        return [("stem", self.stem)] + [(name, getattr(self, name)) for name in STAGES[1:]]

    def forward(self, x):
        for _, stage in self.stages():
            x = stage(x)
        return x


def raw_spconv_input(workload: Workload) -> Callable[[], Any]:
    """spconv input factory: contiguous int32 (batch, x, y, z) indices, spatial shape with a margin."""
    import spconv.pytorch as spconv

    margin = DOWNSAMPLE_FACTOR**NUM_DOWNSAMPLINGS
    spatial_shape = [int(v) + 1 + margin for v in workload.coords[:, 1:].max(0).values.tolist()]
    indices = workload.coords.to(torch.int32).contiguous()
    return lambda: spconv.SparseConvTensor(workload.features, indices, spatial_shape, workload.batch_size)


# ---------------------------------------------------------------------------------------------------
# Engines: a model, its input factory and what its timed forwards recorded.


@contextmanager
def _unguarded() -> Iterator[None]:
    yield


@dataclass
class Engine:
    label: str
    engine: str
    backend: str
    stride_mode: str
    model: nn.Module
    make_input: Callable[[], Any]
    # (coords, features) of an output, whatever the engine's tensor type.
    sites_and_features: Callable[[Any], tuple[torch.Tensor, torch.Tensor]]
    thread_guard: Callable[[], Any] = _unguarded
    stage_times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    stage_sites: dict[str, int] = field(default_factory=dict)
    conv_work: list[ConvWork] | None = None
    first_output: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self) -> None:
        with torch.no_grad(), self.thread_guard(), self._work_recorder() as work:
            self.model.eval()
            x = self.make_input()
            for name, stage in self.model.stages():
                start = default_network.clock()
                x = stage(x)
                self.stage_times[name].append(default_network.clock() - start)
                self.stage_sites[name] = x.features.shape[0]
        if self.first_output is None:
            self.first_output = self.sites_and_features(x)
            if work is not None:
                self.conv_work = work

    def forward_backward(self) -> None:
        with self.thread_guard():
            self.model.train()
            self.model.zero_grad(set_to_none=True)
            out = self.model(self.make_input())
            self.sites_and_features(out)[1].sum().backward()

    def reset_stage_times(self) -> None:
        self.stage_times.clear()

    def _work_recorder(self):
        if self.engine == OURS and self.conv_work is None:
            return conv_pair_flops(self.model)
        return _unguarded()


def build_engines(workload: Workload, modes: Sequence[str]) -> list[Engine]:
    backbones = build_backbones(workload.features.shape[1])
    engines = []
    for mode in modes:
        for backend in OUR_BACKENDS:
            engines.append(Engine(engine_label(OURS, backend, mode), OURS, backend, mode, backbones[mode],
                                  lambda backend=backend: workload.tensor(backend),
                                  lambda out: (out.coords, out.features)))
    if WINDOW in modes:
        raw = RawSpconvBackbone(backbones[WINDOW])
        engines.append(Engine(engine_label(RAW_SPCONV, "spconv", WINDOW), RAW_SPCONV, "spconv", WINDOW, raw,
                              raw_spconv_input(workload), lambda out: (out.indices.to(torch.int64), out.features),
                              lambda: common.torch_threads(1)))
    return engines


def engine_name(engine: str, backend: str) -> str:
    """Display name: ``ours torch``, ``ours spconv`` or ``raw spconv``."""
    return RAW_SPCONV if engine == RAW_SPCONV else f"{OURS} {backend}"


def engine_label(engine: str, backend: str, mode: str) -> str:
    return f"{engine_name(engine, backend)}/{mode}"


# ---------------------------------------------------------------------------------------------------
# Output check.


def _sorted_by_site(coords: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    extent = int(coords.max()) + 1
    keys = ((coords[:, 0] * extent + coords[:, 1]) * extent + coords[:, 2]) * extent + coords[:, 3]
    order = torch.argsort(keys)
    return coords[order], features[order]


def check_outputs(workload: Workload, engines: Sequence[Engine], source: str) -> list[CheckResult]:
    """Our window-mode first outputs against raw spconv's, rows matched by coordinates."""
    reference = next((engine for engine in engines if engine.engine == RAW_SPCONV), None)
    if reference is None or reference.first_output is None:
        return []
    ref_coords, ref_features = _sorted_by_site(*reference.first_output)
    results = []
    for engine in engines:
        if engine.engine != OURS or engine.stride_mode != WINDOW or engine.first_output is None:
            continue
        coords, features = _sorted_by_site(*engine.first_output)
        same_sites = torch.equal(coords, ref_coords)
        diff = float((features - ref_features).abs().max()) if same_sites else None
        scale = float(ref_features.abs().max())
        agrees = diff is not None and diff <= CHECK_RELATIVE_TOLERANCE * scale
        results.append(CheckResult(workload.name, reference.label, engine.label, source, same_sites, diff,
                                   scale, agrees))
    return results


# ---------------------------------------------------------------------------------------------------
# Kernel maps alone.


def build_our_kernel_maps(workload: Workload, backend: str, stride_mode: str) -> None:
    """Every map the backbone builds, as its layers build them (one site index per level, shared): per
    level a 3×3×3 submanifold map, then both stride-2 maps, each prepared for ``backend``."""
    prepare = get_backend(backend).prepare
    x = workload.tensor(backend)
    for level in range(NUM_DOWNSAMPLINGS + 1):
        prepare(SF.kernel_map(x, KERNEL_SIZE))
        if level == NUM_DOWNSAMPLINGS:
            break
        for kernel_size in (KERNEL_SIZE, SHORTCUT_KERNEL_SIZE):
            prepare(SF.kernel_map(x, kernel_size, DOWNSAMPLE_FACTOR, stride_mode))
        coarse = SF.coarser_coords(x, stride_mode)
        x = x.coarser(stride_mode, coarse, x.features.new_zeros((coarse.shape[0], 0)))


def build_raw_spconv_pairs(make_input: Callable[[], Any]) -> None:
    """spconv's indice pairs for the same geometry (the shortcut reuses the strided conv's pairs)."""
    from spconv.core import ConvAlgo
    from spconv.pytorch import ops

    x = make_input()
    indices, spatial_shape = x.indices, x.spatial_shape
    kernel = [KERNEL_SIZE] * 3
    ones, zeros = [1] * 3, [0] * 3
    padding = [(KERNEL_SIZE - 1) // 2] * 3
    stride = [DOWNSAMPLE_FACTOR] * 3
    for level in range(NUM_DOWNSAMPLINGS + 1):
        ops.get_indice_pairs(indices, x.batch_size, spatial_shape, ConvAlgo.Native, kernel, ones, padding, ones,
                             zeros, True, False)
        if level == NUM_DOWNSAMPLINGS:
            break
        indices, _, _ = ops.get_indice_pairs(indices, x.batch_size, spatial_shape, ConvAlgo.Native, kernel,
                                             stride, padding, ones, zeros, False, False)
        spatial_shape = ops.get_conv_output_size(spatial_shape, kernel, stride, padding, ones)


def time_kernel_maps(workload: Workload, engines: Sequence[Engine], repetitions: int) -> list[KernelMapResult]:
    candidates: dict[str, Callable[[], None]] = {}
    for engine in engines:
        if engine.engine == OURS:
            candidates[engine.label] = lambda e=engine: build_our_kernel_maps(workload, e.backend, e.stride_mode)
        else:
            candidates[engine.label] = lambda e=engine: _guarded(e, lambda: build_raw_spconv_pairs(e.make_input))
    times = common.time_interleaved(candidates, repetitions)
    return [KernelMapResult(workload.name, engine.engine, engine.backend, engine.stride_mode,
                            common.median(times[engine.label])) for engine in engines]


def _guarded(engine: Engine, function: Callable[[], None]) -> None:
    with engine.thread_guard():
        function()


# ---------------------------------------------------------------------------------------------------
# Backbone timing.


def measure_workload(workload: Workload, plan: WorkloadPlan, dense: dict[int, float]) -> list[Any]:
    modes = tuple(mode for mode in STRIDE_MODES if mode in plan.forward_modes or mode in plan.backward_modes)
    engines = build_engines(workload, modes)
    results: list[Any] = []
    if plan.warmup:
        _progress(f"workload {workload.name}: warm-up forwards and output check")
        for engine in engines:
            engine.forward()
            engine.reset_stage_times()
        results += check_outputs(workload, engines, "warm-up forward, before timing")

    candidates: dict[tuple[str, str], Callable[[], None]] = {}
    for engine in engines:
        if engine.stride_mode in plan.forward_modes:
            candidates[(engine.label, FORWARD)] = engine.forward
        if engine.stride_mode in plan.backward_modes:
            candidates[(engine.label, FORWARD_BACKWARD)] = engine.forward_backward
    _progress(f"workload {workload.name}: timing {len(candidates)} runs × {plan.repetitions}")
    times = common.time_interleaved(candidates, plan.repetitions, warmup=0)
    if not plan.warmup:
        results += check_outputs(workload, engines, "first timed forward")

    work_by_mode = {engine.stride_mode: engine.conv_work for engine in engines if engine.conv_work is not None}
    by_label = {engine.label: engine for engine in engines}
    for (label, passes), seconds in times.items():
        engine = by_label[label]
        work = work_by_mode[engine.stride_mode]
        factor = FORWARD_BACKWARD_FLOP_FACTOR if passes == FORWARD_BACKWARD else 1
        flops = factor * sum(item.flops for item in work)
        elapsed = common.median(seconds)
        results.append(RunResult(workload.name, engine.engine, engine.backend, engine.stride_mode, passes,
                                 elapsed, seconds, flops / GIGA, flops / elapsed / GIGA,
                                 dense_equivalent_gflops(work, dense)))
    for engine in engines:
        if engine.stride_mode in plan.forward_modes:
            results += stage_results(workload, engine, work_by_mode[engine.stride_mode])

    _progress(f"workload {workload.name}: kernel maps")
    results += time_kernel_maps(workload, engines, plan.repetitions)
    for mode in STRIDE_MODES:
        for passes, timed in ((FORWARD, plan.forward_modes), (FORWARD_BACKWARD, plan.backward_modes)):
            if mode not in timed:
                results.append(SkippedResult(workload.name, f"{passes}, {mode}", "not in this plan (--full runs it)"))
    return results


def stage_results(workload: Workload, engine: Engine, work: Sequence[ConvWork]) -> list[StageResult]:
    results = []
    for stage in STAGES:
        pairs = sum(item.pairs for item in work if item.stage == stage)
        flops = sum(item.flops for item in work if item.stage == stage)
        results.append(StageResult(workload.name, engine.engine, engine.backend, engine.stride_mode, stage,
                                   engine.stage_sites[stage], pairs, flops / GIGA,
                                   common.median(engine.stage_times[stage])))
    return results


def dense_equivalent_gflops(work: Sequence[ConvWork], dense: dict[int, float]) -> float:
    """GFLOP/s of dense ``torch.mm`` on the same FLOPs: each conv at the rate of its output width."""
    total = sum(item.flops for item in work)
    seconds = sum(item.flops / (dense[item.out_channels] * GIGA) for item in work)
    return total / seconds / GIGA


def measure_dense(repetitions: int) -> list[DenseResult]:
    return [DenseResult(DENSE_ROWS, width, torch.get_num_threads(),
                        common.dense_matmul_gflops(DENSE_ROWS, width, repetitions))
            for width in DENSE_WIDTHS]


# ---------------------------------------------------------------------------------------------------
# Peak memory of full-scan inference, one fresh process each.


def peak_memory_probe(backend: str, stride_mode: str) -> dict[str, int]:
    """In this (fresh) process: one full-scan inference; the peak memory before and after it."""
    workload = kitti_workload()
    backbone = StemAndBackbone(workload.features.shape[1], stride_mode).eval()
    before = common.peak_rss_bytes()
    with torch.no_grad():
        backbone(workload.tensor(backend))
    return {"peak_bytes": common.peak_rss_bytes(), "before_inference_bytes": before}


def measure_memory(modes: Sequence[str], threads: int) -> list[MemoryResult]:
    results = []
    for mode in modes:
        for backend in OUR_BACKENDS:
            _progress(f"workload B: peak memory, {backend}/{mode}, fresh process")
            probe = common.run_json_subprocess(
                [str(Path(__file__).resolve()), "--peak-memory-probe", backend, mode, "--threads", str(threads)],
                MEMORY_PROBE_TIMEOUT_S,
            )
            results.append(MemoryResult("B", backend, mode, threads, probe["peak_bytes"],
                                        probe["before_inference_bytes"], MEMORY_TARGET_BYTES,
                                        probe["peak_bytes"] <= MEMORY_TARGET_BYTES))
    return results


# ---------------------------------------------------------------------------------------------------
# Ratios.


def speed_ratios(runs: Sequence[RunResult]) -> list[RatioResult]:
    """raw spconv vs ours on spconv (window) and spconv vs torch backend (each mode), per pass."""
    median_of = {(run.workload, run.passes, run.stride_mode, engine_name(run.engine, run.backend)): run.median_s
                 for run in runs}
    ours_spconv, ours_torch = engine_name(OURS, "spconv"), engine_name(OURS, "torch")
    comparisons = [(WINDOW, ours_spconv, RAW_SPCONV, TARGET_RAW_SPEED_RATIO)]
    comparisons += [(mode, ours_torch, ours_spconv, TARGET_BACKEND_SPEED_RATIO) for mode in STRIDE_MODES]
    results = []
    for workload in sorted({run.workload for run in runs}):
        for passes in PASSES:
            for mode, candidate, reference, target in comparisons:
                candidate_s = median_of.get((workload, passes, mode, candidate))
                reference_s = median_of.get((workload, passes, mode, reference))
                if candidate_s is None or reference_s is None:
                    continue
                ratio = reference_s / candidate_s
                results.append(RatioResult(workload, passes, mode, candidate, reference, ratio, target,
                                           ratio >= target))
    return results


# ---------------------------------------------------------------------------------------------------
# The run.


def run(quick: bool, full: bool = False, threads: int = DEFAULT_THREADS,
        step_threads: Sequence[int] = DEFAULT_STEP_THREADS) -> list[Any]:
    """All measurements of one plan (``quick``, default or ``full``), with ``threads`` torch threads (the
    default-network sections at each of ``step_threads``)."""
    plan = select_plan(quick, full)
    if not spconv_available():
        raise common.BenchmarkSkipped("spconv is not installed (`pip install spconv`, Linux x86-64); "
                                      "this benchmark compares against it")
    results: list[Any] = []
    with common.torch_threads(threads):
        _progress("loading and voxelizing the shared samples")
        workloads = [(modelnet_workload(plan.modelnet_shapes), plan.modelnet), (kitti_workload(), plan.kitti)]
        results += [workload.info() for workload, _ in workloads]
        _progress("dense matmul")
        dense = measure_dense(plan.dense_repetitions)
        results += dense
        dense_rate = {item.channels: item.gflops for item in dense}
        for workload, workload_plan in workloads:
            results += measure_workload(workload, workload_plan, dense_rate)
        results += measure_default_networks(workloads, step_threads)
        results += measure_memory(plan.memory_modes, threads)
        results += [SkippedResult("B", f"peak memory, {mode}", "not in this plan (--full runs it)")
                    for mode in STRIDE_MODES if mode not in plan.memory_modes]
    results += speed_ratios([result for result in results if isinstance(result, RunResult)])
    return results


def measure_default_networks(workloads: Sequence[tuple[Workload, WorkloadPlan]],
                             step_threads: Sequence[int]) -> list[Any]:
    """The default network per stage on every workload, and its training step on the first (A)."""
    results: list[Any] = []
    for index, (workload, workload_plan) in enumerate(workloads):
        results += default_network.measure_default_network(
            workload, workload.tensor, OUR_BACKENDS, step_threads, workload_plan.repetitions, train=index == 0,
            median=common.median, time_interleaved=common.time_interleaved, progress=_progress)
    return results


def kernel_map_ratios(maps: Sequence[KernelMapResult]) -> list[list[Any]]:
    """Rows (workload, ours, raw spconv s, ours s, raw / ours, met) for our window-mode maps."""
    raw = {k.workload: k.median_s for k in maps if k.engine == RAW_SPCONV}
    return [[k.workload, engine_label(k.engine, k.backend, k.stride_mode), raw[k.workload], k.median_s,
             f"{raw[k.workload] / k.median_s:.2f}", raw[k.workload] / k.median_s >= TARGET_KERNEL_MAP_RATIO]
            for k in maps if k.engine == OURS and k.stride_mode == WINDOW and k.workload in raw]


def _process_cpu_time(function: Callable[[], Any]) -> float:
    """CPU seconds of this process (every thread) spent in ``function``: ``--clock cpu``."""
    start = time.process_time()
    function()
    return time.process_time() - start


def _progress(message: str) -> None:
    print(f"[bench_sparse] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------
# Report.


def _of(results: Sequence[Any], kind: type) -> list:
    return [result for result in results if isinstance(result, kind)]


def report(results: Sequence[Any], plan_name: str, threads: int) -> str:
    sections = [f"image2point sparse benchmark: plan {plan_name}, torch {torch.__version__}, "
                f"{threads} thread(s), voxel {VOXEL_SIZE}, inflated {MODEL_NAME} backbone"]
    sections.append(common.format_table(
        "Workloads", ["workload", "description", "points", "sites", "batch"],
        [[w.workload, w.description, w.points, w.sites, w.batch_size] for w in _of(results, WorkloadInfo)]))
    sections.append(common.format_table(
        "Output check: ours (window) vs raw spconv, eval mode, rows matched by coordinates",
        ["workload", "candidate", "reference", "from", "same sites", "max |diff|", "max |output|"],
        [[c.workload, c.candidate, c.reference, c.source, c.same_sites,
          "-" if c.max_abs_diff is None else c.max_abs_diff, c.max_abs_output]
         for c in _of(results, CheckResult)]))
    sections.append(common.format_table(
        f"Dense matmul: torch.mm [{DENSE_ROWS}, C] @ [C, C]",
        ["C", "threads", "GFLOP/s"],
        [[d.channels, d.threads, d.gflops] for d in _of(results, DenseResult)]))
    sections.append(common.format_table(
        "Backbone time (median over repetitions; GFLOP counts 2·C_in·C_out per kernel-map pair)",
        ["workload", "pass", "engine", "mode", "reps", "median s", "GFLOP", "GFLOP/s", "dense GFLOP/s", "% dense"],
        [[r.workload, r.passes, engine_name(r.engine, r.backend), r.stride_mode,
          len(r.times_s), r.median_s, r.gflop, r.gflops, r.dense_gflops, 100 * r.gflops / r.dense_gflops]
         for r in sorted(_of(results, RunResult), key=_run_order)]))
    sections.append(_stage_table(_of(results, StageResult)))
    sections.append(common.format_table(
        "Kernel maps of one batch, built alone (median s)",
        ["workload", "engine", "mode", "median s"],
        [[k.workload, engine_name(k.engine, k.backend), k.stride_mode, k.median_s]
         for k in _of(results, KernelMapResult)]))
    sections.append(common.format_table(
        "Kernel maps vs raw spconv's indice pairs, window mode (same geometry); ≥ 1: ours at least as fast",
        ["workload", "ours", "raw spconv s", "ours s", "raw / ours", "met"],
        kernel_map_ratios(_of(results, KernelMapResult))))
    sections.append(default_network.stage_table(_of(results, default_network.DefaultStageResult),
                                                common.format_table))
    sections.append(default_network.step_table(_of(results, default_network.TrainingStepResult),
                                               common.format_table))
    sections.append(common.format_table(
        f"Peak memory, full-scan inference on B, fresh process each (target {MEMORY_TARGET_BYTES / GIGA:g} GB)",
        ["backend", "mode", "threads", "peak MiB", "before inference MiB", "inference MiB", "met"],
        [[m.backend, m.stride_mode, m.threads, m.peak_bytes / common.BYTES_PER_MIB,
          m.before_inference_bytes / common.BYTES_PER_MIB,
          (m.peak_bytes - m.before_inference_bytes) / common.BYTES_PER_MIB, m.met]
         for m in _of(results, MemoryResult)]))
    sections.append(common.format_table(
        "Speed ratios: time(reference) / time(candidate); ≥ target is met",
        ["workload", "pass", "mode", "candidate", "reference", "ratio", "target", "met"],
        [[r.workload, r.passes, r.stride_mode, r.candidate, r.reference,
          f"{r.ratio:.3f}", f"{r.target:.2f}", r.met] for r in _of(results, RatioResult)]))
    sections.append(_target_summary(results))
    skipped = _of(results, SkippedResult)
    if skipped:
        sections.append(common.format_table("Not measured in this plan", ["workload", "what", "why"],
                                            [[s.workload, s.what, s.reason] for s in skipped]))
    return "\n\n".join(sections)


def _target_summary(results: Sequence[Any]) -> str:
    checks, ratios, memory = _of(results, CheckResult), _of(results, RatioResult), _of(results, MemoryResult)
    lines = ["Targets"]
    lines.append(f"  outputs of ours and raw spconv agree: {sum(c.agrees for c in checks)} of {len(checks)} checks")
    for target, what in ((TARGET_RAW_SPEED_RATIO, "ours on spconv ≥ {:.2f} × raw spconv speed"),
                         (TARGET_BACKEND_SPEED_RATIO, "torch backend ≥ {:.2f} × spconv backend speed")):
        selected = [r for r in ratios if r.target == target]
        lines.append(f"  {what.format(target)}: met in {sum(r.met for r in selected)} of {len(selected)}")
    lines.append(f"  full-scan inference peak ≤ {MEMORY_TARGET_BYTES / GIGA:g} GB: "
                 f"met in {sum(m.met for m in memory)} of {len(memory)}")
    torch_rows = [r for r in _of(results, RunResult) if r.engine == OURS and r.backend == "torch"]
    lines.append(f"  torch backend ≥ {TARGET_SHARE_OF_DENSE:.0%} of dense matmul: met in "
                 f"{sum(r.gflops >= TARGET_SHARE_OF_DENSE * r.dense_gflops for r in torch_rows)} of {len(torch_rows)}")
    map_rows = kernel_map_ratios(_of(results, KernelMapResult))
    lines.append(f"  kernel maps (window) ≥ {TARGET_KERNEL_MAP_RATIO:g} × raw spconv speed: met in "
                 f"{sum(row[-1] for row in map_rows)} of {len(map_rows)}")
    steps = _of(results, default_network.TrainingStepResult)
    lines.append(f"  default-network training step ≤ {default_network.TARGET_STEP_OVER_CONV} × its conv time: "
                 f"met in {sum(s.met for s in steps)} of {len(steps)}")
    return "\n".join(lines)


def _run_order(run: RunResult) -> tuple:
    engine_rank = {(OURS, "torch"): 0, (OURS, "spconv"): 1, (RAW_SPCONV, "spconv"): 2}
    return (run.workload, PASSES.index(run.passes), STRIDE_MODES.index(run.stride_mode),
            engine_rank[(run.engine, run.backend)])


def _stage_table(stages: Sequence[StageResult]) -> str:
    """One row per (workload, mode, stage): sites, work, and each engine's forward time."""
    columns = [(OURS, "torch"), (OURS, "spconv"), (RAW_SPCONV, "spconv")]
    rows: dict[tuple[str, str, str], dict] = {}
    for stage in stages:
        key = (stage.workload, stage.stride_mode, stage.stage)
        row = rows.setdefault(key, {"sites": stage.sites, "pairs": stage.pairs, "gflop": stage.gflop})
        row[(stage.engine, stage.backend)] = stage.median_s
    ordered = sorted(rows.items(), key=lambda item: (item[0][0], STRIDE_MODES.index(item[0][1]),
                                                     STAGES.index(item[0][2])))
    return common.format_table(
        "Per stage, forward (median s); sites = sites the stage outputs",
        ["workload", "mode", "stage", "sites", "pairs", "GFLOP", "ours torch s", "ours spconv s", "raw spconv s"],
        [[workload, mode, stage, row["sites"], row["pairs"], row["gflop"]]
         + [row.get(column, "-") for column in columns]
         for (workload, mode, stage), row in ordered])


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.standard_arguments(__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true",
                        help="also time workload B in window mode forward+backward, with repetitions")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="torch intra-op threads outside spconv's kernels (default: %(default)s)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time; cpu: CPU time of this process, all its threads (on a machine "
                             "shared with other jobs, one-thread rows then measure the work itself; "
                             "default: %(default)s)")
    parser.add_argument("--step-threads", default=",".join(map(str, DEFAULT_STEP_THREADS)),
                        help="comma-separated thread counts of the default-network sections (default: %(default)s)")
    parser.add_argument("--peak-memory-probe", nargs=2, metavar=("BACKEND", "MODE"),
                        help="internal: run one full-scan inference in this process and print its peak memory")
    parser.add_argument("--device", choices=("cpu", "cuda"),
                        help="instead of the engine comparison: the torch backend on this device in each "
                             "--precisions, against dense matmul there (no spconv needed; see sparse_on_device.py)")
    parser.add_argument("--precisions", default="fp32,tf32,bf16",
                        help="with --device: comma-separated, of fp32, tf32 (CUDA only), bf16 (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.quick and args.full:
        parser.error("--quick and --full exclude each other")
    if args.device is not None:
        return _main_on_device(parser, args)
    if args.peak_memory_probe:
        backend, mode = args.peak_memory_probe
        with common.torch_threads(args.threads):
            print(json.dumps(peak_memory_probe(backend, mode)))
        return 0
    plan_name = select_plan(args.quick, args.full).name
    if args.clock == "cpu":
        common.time_call = _process_cpu_time
        default_network.clock = time.process_time
    try:
        step_threads = tuple(int(count) for count in args.step_threads.split(",") if count.strip())
        results = run(args.quick, args.full, args.threads, step_threads)
    except common.BenchmarkSkipped as skipped:
        print(f"bench_sparse: skipped: {skipped}")
        return 0
    print(report(results, plan_name, args.threads) + f"\n\nclock: {args.clock}")
    if args.json:
        common.write_json(args.json, "bench_sparse", results,
                          {"plan": plan_name, "threads": args.threads, "step_threads": list(step_threads),
                           "clock": args.clock, "voxel_size": VOXEL_SIZE})
    return 0



def _main_on_device(parser, args) -> int:
    """``--device``: the torch backend on one device, per precision (benchmarks/sparse_on_device.py)."""
    if __package__ in (None, ""):
        import sparse_on_device  # type: ignore[import-not-found]
    else:
        from benchmarks import sparse_on_device
    precisions = [name.strip() for name in args.precisions.split(",") if name.strip()]
    unknown = sorted(set(precisions) - set(sparse_on_device.PRECISIONS))
    if args.full or not precisions or unknown:
        parser.error(f"--device takes --quick or neither, and --precisions from {sparse_on_device.PRECISIONS}")
    device = torch.device(args.device)
    plan = sparse_on_device.QUICK_DEVICE_PLAN if args.quick else sparse_on_device.DEFAULT_DEVICE_PLAN
    try:
        with common.torch_threads(args.threads):
            results = sparse_on_device.run_on_device(device, plan, precisions)
    except common.BenchmarkSkipped as skipped:
        print(f"bench_sparse: skipped: {skipped}")
        return 0
    print(sparse_on_device.device_report(results, device, plan, args.threads))
    if args.json:
        settings = {"device": args.device, "plan": plan.name, "precisions": precisions, "threads": args.threads,
                    "voxel_size": VOXEL_SIZE, "backend": sparse_on_device.BACKEND}
        if device.type == "cuda":
            settings["gpu"] = torch.cuda.get_device_name(device)
        common.write_json(args.json, "bench_sparse", results, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
