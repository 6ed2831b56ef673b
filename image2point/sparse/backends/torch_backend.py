"""PyTorch execution of sparse convolution: per-offset gather → GEMM → scatter-add.

Runs wherever PyTorch runs (any CPU, CUDA, MPS). On the CPU in float32 and float64 the gather → GEMM →
scatter-add runs in compiled kernels (cpu_kernels.py: every offset's pairs of one cache-sized tile of
output rows before the next tile) where they can be built; otherwise with torch ops as below. One gather
buffer and one GEMM buffer are reused across all offsets of a call instead of allocating per offset: on
the CPU sized for a step of CPU_CHUNK_BYTES (an offset's pairs run in such steps, so that what a step
gathers is still in cache when its GEMM and scatter-add read it), elsewhere for the busiest offset.

Under ``torch.autocast`` on a GPU a convolution behaves like ``F.conv3d`` does: features and weights are
cast to the autocast dtype (bf16 or fp16) for the gathers and GEMMs, and the result has that dtype; the
sums over kernel offsets are accumulated in float32, since up to K³ scatter-adds in bf16 would lose
several bits. CPU autocast leaves sparse convolutions in float32 (see HALF_PRECISION_DEVICE_TYPES).

Every sum over kernel offsets is an ``index_add_`` (per offset, or per offset group on CUDA). On CUDA it
adds with atomics, so results differ in their last bits from run to run; under
``torch.use_deterministic_algorithms(True)`` (``train.deterministic``, train/determinism.py) torch runs
it as a sort-based accumulation instead, and no op of this backend lacks a deterministic CUDA
implementation (tests/train/test_determinism.py), so the same results repeat exactly.
"""

from __future__ import annotations

import torch

from image2point.sparse.backends import SparseOp, cpu_kernels, narrow_conv, offset_groups, weight_layout
# The backend's members (SparseBackend) live in three modules: the pairs here, grouped convs apart.
from image2point.sparse.backends.torch_grouped import (  # noqa: F401  (depthwise_conv, window_sum: members)
    _GroupedConvFunction,
    _merge_groups,
    depthwise_conv,
    super_group_size,
    window_sum,
)
from image2point.sparse.backends.torch_pairs import TorchPairs, _spans, prepare  # noqa: F401

NAME = "torch"
# Device types on which autocast runs sparse convolutions in its half-precision dtype. Not the CPU by
# default: CPU fp16 GEMMs are many times slower than float32 ones, and bf16 pays only on processors with
# bf16 dot products (see CPU_BF16_SPARSE_CONV).
HALF_PRECISION_DEVICE_TYPES = {"cuda"}
# Whether CPU autocast in bf16 reaches sparse convolutions, where the processor computes bf16 natively
# (AVX512-BF16 or AMX; elsewhere they stay float32). Off: docs/benchmarks.md ("bf16 on the CPU") measures
# the speed and the accuracy cost on a short training run (benchmarks/bench_cpu_bf16.py).
CPU_BF16_SPARSE_CONV = False
# Device types on which a convolution runs its offsets in groups, one bmm each (offset_groups.py), rather
# than one gather-GEMM-scatter per offset: where every kernel launch costs (a GPU runs a network of small
# per-offset launches far below its rate). Not the CPU, where a call costs microseconds and the padding
# would be wasted work.
BATCHED_OFFSET_DEVICE_TYPES = {"cuda"}
# Bytes of gathered rows and GEMM products per gather-GEMM-scatter step on the CPU: an offset's pairs go
# in steps this size so that the rows a step gathers are still in cache when its GEMM reads them and its
# products when they are scattered (1.1-1.2x on the 64- and 128-channel convs of the benchmark's backbone,
# best between 2 and 4 MiB on a 1 MiB-L2 core; docs/benchmarks.md, "Each change alone").
CPU_CHUNK_BYTES = 4 << 20
# Fewest pairs per step, so that wide layers still run GEMMs of useful height.
MIN_CHUNK_ROWS = 256
# Runs every op itself.
FALLBACKS: dict[SparseOp, str] = {}


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for the half-precision types, the dtype itself otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _offset_weight(filters: torch.Tensor, offset: int) -> torch.Tensor:
    """``[C_in, C_out]`` weight of one offset: a strided view of ``[C_out, K³, C_in]`` filters (BLAS reads
    it transposed, so no copy)."""
    return filters[:, offset, :].t()


def _chunk_rows(source: torch.Tensor, widths: int, max_count: int) -> int:
    """Pairs per gather-GEMM-scatter step: on the CPU as many as keep the step's buffers (``widths``
    values per row) within CPU_CHUNK_BYTES, elsewhere a whole offset at once."""
    if source.device.type != "cpu":
        return max_count
    return min(max_count, max(MIN_CHUNK_ROWS, CPU_CHUNK_BYTES // (source.element_size() * widths)))


def _chunks(pairs: TorchPairs, rows: int):
    """(offset, start, end) of every non-identity offset's pairs in steps of at most ``rows``."""
    for offset, start, end in _spans(pairs):
        for chunk_start in range(start, end, rows):
            yield offset, chunk_start, min(chunk_start + rows, end)


def _gather_gemm_scatter(
    source: torch.Tensor,
    filters: torch.Tensor,
    gather_index: torch.Tensor,
    scatter_index: torch.Tensor,
    pairs: TorchPairs,
    out: torch.Tensor,
    transpose_weights: bool,
) -> torch.Tensor:
    """``out[scatter[p]] += source[gather[p]] @ W[k]`` for the pairs p of every offset k (``W[k]``
    transposed for the input gradient; ``out`` may be wider than ``source``: each product is widened to
    it before the scatter-add)."""
    if pairs.max_count == 0:
        return out
    if cpu_kernels.applies(source, out):
        cpu_kernels.gather_gemm_scatter(source, filters, gather_index, scatter_index, pairs.counts,
                                        pairs.identity_offset, transpose_weights, out)
        return out
    rows = _chunk_rows(source, source.shape[1] + out.shape[1], pairs.max_count)
    gathered = source.new_empty((rows, source.shape[1]))
    product = source.new_empty((rows, out.shape[1]))
    for offset, start, end in _chunks(pairs, rows):
        count = end - start
        weight = _offset_weight(filters, offset)
        torch.index_select(source, 0, gather_index[start:end], out=gathered[:count])
        torch.mm(gathered[:count], weight.t() if transpose_weights else weight, out=product[:count])
        out.index_add_(0, scatter_index[start:end], product[:count].to(out.dtype))
    return out


def _weight_gradient(features, grad_out, filters, pairs: TorchPairs, grad_features) -> torch.Tensor:
    """``[C_out, K³, C_in]`` filter gradient; also scatters the input gradient into ``grad_features``
    (unless None) from the same gathered output-gradient rows: one gather of them per offset, in the
    input-ascending order the input gradient's scatter wants."""
    grad_filters = torch.zeros_like(filters)
    identity = pairs.identity_offset
    if identity is not None:
        torch.mm(grad_out.t(), features, out=grad_filters[:, identity, :])
    if pairs.max_count == 0:
        return grad_filters
    gather_index, scatter_index = pairs.backward_order
    if cpu_kernels.applies(features, grad_out if grad_features is None else grad_features):
        cpu_kernels.weight_gradient(features, grad_out, filters, gather_index, scatter_index, pairs.counts,
                                    pairs.identity_offset, grad_filters, grad_features)
        return grad_filters
    rows = _chunk_rows(features, grad_out.shape[1] + 2 * features.shape[1], pairs.max_count)
    grad_rows = grad_out.new_empty((rows, grad_out.shape[1]))
    input_rows = features.new_empty((rows, features.shape[1]))
    product = None if grad_features is None else features.new_empty((rows, features.shape[1]))
    for offset, start, end in _chunks(pairs, rows):
        count = end - start
        torch.index_select(grad_out, 0, gather_index[start:end], out=grad_rows[:count])
        torch.index_select(features, 0, scatter_index[start:end], out=input_rows[:count])
        grad_filters[:, offset, :].addmm_(grad_rows[:count].t(), input_rows[:count])
        if grad_features is not None:
            torch.mm(grad_rows[:count], filters[:, offset, :], out=product[:count])
            grad_features.index_add_(0, scatter_index[start:end], product[:count].to(grad_features.dtype))
    return grad_filters


def _batches_offsets(tensor: torch.Tensor) -> bool:
    return tensor.device.type in BATCHED_OFFSET_DEVICE_TYPES


def _initial_sum(source: torch.Tensor, weight: torch.Tensor | None, rows: int, width: int, dtype: torch.dtype,
                 dummy_rows: int) -> torch.Tensor:
    """``[rows + dummy_rows, width]`` sums in ``dtype``: ``source @ weight`` (the identity offset; zeros
    without one), then zeroed dummy rows."""
    out = source.new_empty((rows + dummy_rows, width), dtype=dtype)
    if weight is None:
        return out.zero_()
    if dtype == source.dtype:
        torch.mm(source, weight, out=out[:rows])
    else:
        out[:rows].copy_(source @ weight)
    out[rows:].zero_()
    return out


class _SparseConvFunction(torch.autograd.Function):
    """features [N_in, C_in], filters [C_out, K³, C_in] → [N_out, C_out].

    Filters in spconv's layout: from a torch weight ``[C_out, C_in, K, K, K]`` that is a transpose of small
    ``[C_in, K³]`` blocks, several times cheaper than ``[K³, C_in, C_out]`` for wide layers (35 vs 7 ms
    per 512-channel 3×3×3 weight on one core), and each offset's ``[C_out, C_in]`` slice is a BLAS
    operand as it is.
    """

    @staticmethod
    def forward(ctx, features, filters, pairs: TorchPairs):
        ctx.save_for_backward(features, filters)
        ctx.pairs = pairs
        identity = pairs.identity_offset
        weight = None if identity is None else _offset_weight(filters, identity)
        batched = _batches_offsets(features)
        out = _initial_sum(features, weight, pairs.num_out, filters.shape[0], _accumulation_dtype(features.dtype),
                           int(batched))
        if batched:
            plan = pairs.offset_plan((filters.shape[2], filters.shape[0]), features.element_size())
            out = offset_groups.forward(features, filters, plan, out)[:pairs.num_out]
        else:
            out = _gather_gemm_scatter(features, filters, pairs.forward_gather, pairs.forward_scatter, pairs, out,
                                       False)
        return out.to(features.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        features, filters = ctx.saved_tensors
        pairs: TorchPairs = ctx.pairs
        grad_out = grad_out.contiguous()
        need_features, need_filters = ctx.needs_input_grad[:2]
        identity = pairs.identity_offset
        batched = _batches_offsets(features)
        grad_features = grad_filters = None
        if need_features:
            weight = None if identity is None else filters[:, identity, :]
            grad_features = _initial_sum(grad_out, weight, pairs.num_in, filters.shape[2],
                                         _accumulation_dtype(features.dtype), int(batched))
        if batched:
            grad_filters = _batched_backward(features, grad_out, filters, pairs, grad_features, need_filters)
            if grad_features is not None:
                grad_features = grad_features[:pairs.num_in]
        elif need_filters:
            grad_filters = _weight_gradient(features, grad_out, filters, pairs, grad_features)
        elif need_features:
            backward_gather, backward_scatter = pairs.backward_order
            _gather_gemm_scatter(grad_out, filters, backward_gather, backward_scatter, pairs, grad_features, True)
        if grad_features is not None:
            grad_features = grad_features.to(features.dtype)
        return grad_features, grad_filters, None


def _batched_backward(features, grad_out, filters, pairs: TorchPairs, grad_features, need_filters):
    """The filter gradient (or None) of the offset-group path; scatters into ``grad_features``."""
    grad_filters = None
    if need_filters:
        grad_filters = torch.zeros_like(filters)
        if pairs.identity_offset is not None:
            torch.mm(grad_out.t(), features, out=grad_filters[:, pairs.identity_offset, :])
    plan = pairs.offset_plan((filters.shape[2], filters.shape[0]), features.element_size())
    if plan:
        with_zero_row = torch.cat([grad_out, grad_out.new_zeros((1, grad_out.shape[1]))])
        offset_groups.backward(features, with_zero_row, filters, plan, grad_features, grad_filters)
    return grad_filters


def cpu_has_native_bf16() -> bool:
    """Whether this processor has bf16 dot-product instructions (AVX512-BF16 or AMX tiles)."""
    import torch.cpu

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The half-precision dtype sparse convolutions compute in under the current autocast (None: as given)."""
    if not torch.is_autocast_enabled(device_type):
        return None
    dtype = torch.get_autocast_dtype(device_type)
    if device_type in HALF_PRECISION_DEVICE_TYPES:
        return dtype
    if device_type == "cpu" and CPU_BF16_SPARSE_CONV and dtype == torch.bfloat16 and cpu_has_native_bf16():
        return dtype
    return None


def conv(features: torch.Tensor, weight: torch.Tensor, prepared: TorchPairs) -> torch.Tensor:
    """Sparse convolution; ``weight`` is torch-style ``[C_out, C_in, K, K, K]``."""
    device_type = features.device.type
    half = autocast_dtype(device_type)
    if half is not None:
        # What autocast does for F.conv3d: compute in its dtype (the sums stay float32, see the function).
        features = features.to(half)
    features = features.contiguous()
    filters = weight_layout.filters_of(weight, features.dtype)
    # The buffers take the dtype chosen above, so autocast must not change the GEMMs' dtype again.
    with torch.autocast(device_type, enabled=False):
        if narrow_conv.applies(filters.shape[2], filters.shape[1]):
            return narrow_conv.NarrowConvFunction.apply(features, filters, prepared.neighbour_table,
                                                        prepared.num_out)
        return _SparseConvFunction.apply(features, filters, prepared)


def max_pool(features: torch.Tensor, prepared: TorchPairs) -> torch.Tensor:
    """Maximum over each output's input sites (empty sites do not take part, as in spconv)."""
    channels = features.shape[1]
    out = features.new_full((prepared.num_out, channels), float("-inf"))
    index = prepared.forward_scatter[:, None].expand(-1, channels)
    out = out.scatter_reduce(0, index, features[prepared.forward_gather], reduce="amax", include_self=True)
    # A site with no input at all (possible only for kernels smaller than the stride) gets zero.
    return torch.where(torch.isneginf(out), torch.zeros_like(out), out)


def grouped_conv(features: torch.Tensor, weight: torch.Tensor, prepared: TorchPairs, groups: int) -> torch.Tensor:
    """Grouped convolution; ``weight`` is torch-style ``[C_out, C_in / groups, K, K, K]``."""
    size = super_group_size(groups, weight.shape[1])
    if size > 1:
        weight = _merge_groups(weight, groups, size)
        groups //= size
    if groups == 1:
        return conv(features, weight, prepared)
    c_out, width = weight.shape[:2]
    weights = weight.reshape(groups, c_out // groups, width, -1).permute(3, 0, 2, 1).contiguous()
    features = features.contiguous()
    if weights.dtype != features.dtype:
        weights = weights.to(features.dtype)
    with torch.autocast(features.device.type, enabled=False):
        return _GroupedConvFunction.apply(features, weights, prepared)
