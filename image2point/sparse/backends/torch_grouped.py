"""Depthwise and grouped sparse convolutions of the torch backend: per-offset scaled gathers, and
block-diagonal super-groups run as one batched GEMM per offset."""

from __future__ import annotations

import torch

from image2point.sparse.backends.torch_pairs import TorchPairs, _spans


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


def window_sum(features: torch.Tensor, prepared: TorchPairs) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the features of each output's input sites, and how many there are (``[N_out]``)."""
    ones = features.new_ones(()).expand(len(prepared.counts), features.shape[1])
    sums = _DepthwiseConvFunction.apply(features.contiguous(), ones, prepared)
    counts = torch.bincount(prepared.forward_scatter, minlength=prepared.num_out)
    return sums, counts
