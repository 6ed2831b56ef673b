"""Pure-PyTorch execution of sparse convolution: per-offset gather → GEMM → scatter-add.

Runs wherever PyTorch runs (any CPU, CUDA, MPS). One gather buffer and one GEMM buffer, sized for the
busiest offset, are reused across all offsets of a call instead of allocating per offset.

Under ``torch.autocast`` on a GPU a convolution behaves like ``F.conv3d`` does: features and weights are
cast to the autocast dtype (bf16 or fp16) for the gathers and GEMMs, and the result has that dtype; the
sums over kernel offsets are accumulated in float32, since up to K³ scatter-adds in bf16 would lose
several bits. CPU autocast leaves sparse convolutions in float32 (see HALF_PRECISION_DEVICE_TYPES).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

from image2point.sparse.backends import SparseOp, narrow_conv, offset_groups, weight_layout
from image2point.sparse.kernel_map import KernelMap, sort_within_offsets

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
# Runs every op itself.
FALLBACKS: dict[SparseOp, str] = {}


@dataclass(frozen=True)
class TorchPairs:
    """A kernel map in the orders its scatters need: pairs grouped by offset and, within an offset,
    sorted by the row they scatter into — by output for the forward pass, by input for the input
    gradient (the map's own order when its inputs ascend too, else sorted on first use; inference never
    needs it). ``index_add_`` with sorted indices is orders of magnitude faster on multi-threaded CPUs
    than with unsorted ones.
    """

    forward_gather: torch.Tensor  # input rows
    forward_scatter: torch.Tensor  # output rows, ascending within each offset
    counts: tuple[int, ...]
    num_in: int
    num_out: int
    identity_offset: int | None
    gather_ascending: bool = False
    # Offset-group plans (offset_groups.plan_groups) by group row cap, built on first use.
    offset_plans: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def max_count(self) -> int:
        return max(self.counts, default=0)

    @cached_property
    def backward_order(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(output rows to gather, input rows to scatter into, ascending within each offset)."""
        if self.gather_ascending:
            return self.forward_scatter, self.forward_gather
        scatter, gather = sort_within_offsets(self.forward_gather, self.forward_scatter, self.counts, self.num_in)
        return gather, scatter


    @cached_property
    def neighbour_table(self) -> torch.Tensor:
        """Input row of each (output, offset) for :mod:`.narrow_conv` (built on first use)."""
        return narrow_conv.neighbour_table(self.forward_gather, self.forward_scatter, self.counts, self.num_in,
                                           self.num_out)

    def offset_plan(self, channels: tuple[int, int], element_size: int) -> tuple[offset_groups.OffsetGroup, ...]:
        """The offset groups for rows of ``channels`` (input, output) widths."""
        max_rows = offset_groups.max_group_rows(self.max_count, channels, element_size)
        if max_rows not in self.offset_plans:
            self.offset_plans[max_rows] = offset_groups.plan_groups(
                self.forward_gather, self.forward_scatter, self.counts, self.num_in, self.num_out,
                self.identity_offset, max_rows)
        return self.offset_plans[max_rows]


def prepare(kernel_map: KernelMap) -> TorchPairs:
    return TorchPairs(kernel_map.in_index, kernel_map.out_index, kernel_map.counts, kernel_map.num_in,
                      kernel_map.num_out, kernel_map.identity_offset, kernel_map.in_ascending)


def _spans(pairs: TorchPairs):
    """(offset, start, end) of every non-empty offset except the identity one."""
    start = 0
    for offset, count in enumerate(pairs.counts):
        end = start + count
        if count and offset != pairs.identity_offset:
            yield offset, start, end
        start = end


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for the half-precision types, the dtype itself otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _offset_weight(filters: torch.Tensor, offset: int) -> torch.Tensor:
    """``[C_in, C_out]`` weight of one offset: a strided view of ``[C_out, K³, C_in]`` filters (BLAS reads
    it transposed, so no copy)."""
    return filters[:, offset, :].t()


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
    gathered = source.new_empty((pairs.max_count, source.shape[1]))
    product = source.new_empty((pairs.max_count, out.shape[1]))
    for offset, start, end in _spans(pairs):
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
    grad_rows = grad_out.new_empty((pairs.max_count, grad_out.shape[1]))
    input_rows = features.new_empty((pairs.max_count, features.shape[1]))
    product = None if grad_features is None else features.new_empty((pairs.max_count, features.shape[1]))
    for offset, start, end in _spans(pairs):
        count = end - start
        torch.index_select(grad_out, 0, gather_index[start:end], out=grad_rows[:count])
        torch.index_select(features, 0, scatter_index[start:end], out=input_rows[:count])
        torch.mm(grad_rows[:count].t(), input_rows[:count], out=grad_filters[:, offset, :])
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


# ---------------------------------------------------------------------------------------------------
# Grouped convolution. Depthwise (groups = C_in = C_out) is a multiply-accumulate per offset on whole
# rows; other groupings run one batched GEMM per offset over groups in a group-major [G, N, C/G] layout.

# Groups narrower than this many input channels are merged into block-diagonal "super-groups" this wide:
# a [n, 4] @ [4, 4] GEMM runs far below the memory bound on CPU, and 16-wide blocks trade a few wasted
# zero products for GEMMs that do (benchmarks/bench_depthwise.py measures both).
MIN_GROUP_WIDTH = 16


def _scaled_gather_scatter(source, weights, gather_index, scatter_index, pairs: TorchPairs, out):
    """``out[scatter[p]] += source[gather[p]] * w[k]`` (``w[k]`` a ``[C]`` row) for the pairs of every offset."""
    if pairs.max_count == 0:
        return out
    gathered = source.new_empty((pairs.max_count, source.shape[1]))
    for offset, start, end in _spans(pairs):
        rows = gathered[:end - start]
        torch.index_select(source, 0, gather_index[start:end], out=rows)
        rows.mul_(weights[offset])
        out.index_add_(0, scatter_index[start:end], rows)
    return out


class _DepthwiseConvFunction(torch.autograd.Function):
    """features [N_in, C], weights [K³, C] → [N_out, C]: ``out[j] += w[k] ⊙ in[i]`` per pair."""

    @staticmethod
    def forward(ctx, features, weights, pairs: TorchPairs):
        ctx.save_for_backward(features, weights)
        ctx.pairs = pairs
        if pairs.identity_offset is not None:
            out = features * weights[pairs.identity_offset]
        else:
            out = features.new_zeros((pairs.num_out, features.shape[1]))
        return _scaled_gather_scatter(features, weights, pairs.forward_gather, pairs.forward_scatter, pairs, out)

    @staticmethod
    def backward(ctx, grad_out):
        features, weights = ctx.saved_tensors
        pairs: TorchPairs = ctx.pairs
        grad_out = grad_out.contiguous()
        need_features, need_weights = ctx.needs_input_grad[:2]
        grad_features = features.new_zeros(features.shape) if need_features else None
        grad_weights = torch.zeros_like(weights) if need_weights else None
        if pairs.identity_offset is not None:
            if need_features:
                torch.mul(grad_out, weights[pairs.identity_offset], out=grad_features)
            if need_weights:
                torch.sum(features * grad_out, 0, out=grad_weights[pairs.identity_offset])
        if pairs.max_count == 0 or not (need_features or need_weights):
            return grad_features, grad_weights, None
        # One pass in input order: the gathered output gradients serve both the weight gradient (before
        # scaling) and the input gradient (after), and input rows are read and written in ascending order.
        gather_index, scatter_index = pairs.backward_order
        grad_rows = features.new_empty((pairs.max_count, features.shape[1]))
        input_rows = features.new_empty((pairs.max_count, features.shape[1])) if need_weights else None
        for offset, start, end in _spans(pairs):
            count = end - start
            torch.index_select(grad_out, 0, gather_index[start:end], out=grad_rows[:count])
            if need_weights:
                torch.index_select(features, 0, scatter_index[start:end], out=input_rows[:count])
                input_rows[:count].mul_(grad_rows[:count])
                torch.sum(input_rows[:count], 0, out=grad_weights[offset])
            if need_features:
                grad_rows[:count].mul_(weights[offset])
                grad_features.index_add_(0, scatter_index[start:end], grad_rows[:count])
        return grad_features, grad_weights, None


def _grouped_gather_bmm_scatter(source, weights, gather_index, scatter_index, pairs: TorchPairs, out, transpose):
    """Group-major ``out[:, scatter[p]] += source[:, gather[p]] @ W[k]`` (``W[k]`` is ``[G, C_a, C_b]``)."""
    if pairs.max_count == 0:
        return out
    groups, _, width_in = source.shape
    width_out = out.shape[2]
    gathered = source.new_empty(groups * pairs.max_count * width_in)
    product = source.new_empty(groups * pairs.max_count * width_out)
    for offset, start, end in _spans(pairs):
        count = end - start
        rows = gathered[:groups * count * width_in].view(groups, count, width_in)
        result = product[:groups * count * width_out].view(groups, count, width_out)
        weight = weights[offset].transpose(1, 2) if transpose else weights[offset]
        torch.index_select(source, 1, gather_index[start:end], out=rows)
        torch.bmm(rows, weight, out=result)
        out.index_add_(1, scatter_index[start:end], result)
    return out


def _group_major(rows: torch.Tensor, groups: int) -> torch.Tensor:
    """[N, G·C] → contiguous [G, N, C]."""
    return rows.view(rows.shape[0], groups, -1).transpose(0, 1).contiguous()


def _row_major(grouped: torch.Tensor) -> torch.Tensor:
    """[G, N, C] → [N, G·C]."""
    return grouped.transpose(0, 1).reshape(grouped.shape[1], -1)


class _GroupedConvFunction(torch.autograd.Function):
    """features [N_in, G·C_a], weights [K³, G, C_a, C_b] → [N_out, G·C_b]."""

    @staticmethod
    def forward(ctx, features, weights, pairs: TorchPairs):
        groups = weights.shape[1]
        source = _group_major(features, groups)
        ctx.save_for_backward(source, weights)
        ctx.pairs = pairs
        if pairs.identity_offset is not None:
            out = torch.bmm(source, weights[pairs.identity_offset])
        else:
            out = source.new_zeros((groups, pairs.num_out, weights.shape[3]))
        _grouped_gather_bmm_scatter(source, weights, pairs.forward_gather, pairs.forward_scatter, pairs, out, False)
        return _row_major(out)

    @staticmethod
    def backward(ctx, grad_out):
        source, weights = ctx.saved_tensors
        pairs: TorchPairs = ctx.pairs
        grad = _group_major(grad_out.contiguous(), weights.shape[1])
        grad_features = grad_weights = None
        identity = pairs.identity_offset
        if ctx.needs_input_grad[0]:
            if identity is not None:
                grad_source = torch.bmm(grad, weights[identity].transpose(1, 2))
            else:
                grad_source = source.new_zeros(source.shape)
            gather_index, scatter_index = pairs.backward_order
            _grouped_gather_bmm_scatter(grad, weights, gather_index, scatter_index, pairs, grad_source, True)
            grad_features = _row_major(grad_source)
        if ctx.needs_input_grad[1]:
            grad_weights = torch.zeros_like(weights)
            if identity is not None:
                torch.bmm(source.transpose(1, 2), grad, out=grad_weights[identity])
            for offset, start, end in _spans(pairs):
                inputs = source.index_select(1, pairs.forward_gather[start:end])
                outputs = grad.index_select(1, pairs.forward_scatter[start:end])
                torch.bmm(inputs.transpose(1, 2), outputs, out=grad_weights[offset])
        return grad_features, grad_weights, None


def depthwise_conv(features: torch.Tensor, weight: torch.Tensor, prepared: TorchPairs) -> torch.Tensor:
    """Depthwise convolution (groups = C_in = C_out); ``weight`` is torch-style ``[C, 1, K, K, K]``."""
    channels = weight.shape[0]
    weights = weight.reshape(channels, -1).t().contiguous()
    features = features.contiguous()
    if weights.dtype != features.dtype:
        weights = weights.to(features.dtype)
    with torch.autocast(features.device.type, enabled=False):
        return _DepthwiseConvFunction.apply(features, weights, prepared)


def super_group_size(groups: int, group_width: int) -> int:
    """How many groups one block-diagonal super-group merges: the fewest (dividing ``groups``) that reach
    :data:`MIN_GROUP_WIDTH` input channels, or all of them."""
    for size in range(1, groups + 1):
        if groups % size == 0 and size * group_width >= MIN_GROUP_WIDTH:
            return size
    return groups


def _merge_groups(weight: torch.Tensor, groups: int, size: int) -> torch.Tensor:
    """``[C_out, C_in/G, K, K, K]`` with G groups → the same convolution with G/size groups: each merged
    group's weight is block-diagonal (zero between the groups it merges). Differentiable."""
    c_out, width = weight.shape[:2]
    position = torch.arange(groups, device=weight.device).repeat_interleave(c_out // groups) % size
    mask = torch.nn.functional.one_hot(position, size).to(weight.dtype)
    merged = weight.unsqueeze(1) * mask.view(c_out, size, 1, *([1] * (weight.dim() - 2)))
    return merged.reshape(c_out, size * width, *weight.shape[2:])


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


def window_sum(features: torch.Tensor, prepared: TorchPairs) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the features of each output's input sites, and how many there are (``[N_out]``)."""
    ones = features.new_ones(()).expand(len(prepared.counts), features.shape[1])
    sums = _DepthwiseConvFunction.apply(features.contiguous(), ones, prepared)
    counts = torch.bincount(prepared.forward_scatter, minlength=prepared.num_out)
    return sums, counts
