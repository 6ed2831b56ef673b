"""Pure-PyTorch execution of sparse convolution: per-offset gather → GEMM → scatter-add.

Runs wherever PyTorch runs (any CPU, CUDA, MPS). One gather buffer and one GEMM buffer, sized for the
busiest offset, are reused across all offsets of a call instead of allocating per offset.
"""

from __future__ import annotations

import torch

from image2point.sparse.kernel_map import KernelMap

NAME = "torch"


def prepare(kernel_map: KernelMap) -> KernelMap:
    """The torch backend executes kernel maps as they are."""
    return kernel_map


def _spans(kernel_map: KernelMap):
    """(offset, start, end) of every non-empty offset except the identity one."""
    start = 0
    for offset, count in enumerate(kernel_map.counts):
        end = start + count
        if count and offset != kernel_map.identity_offset:
            yield offset, start, end
        start = end


def _gather_gemm_scatter(
    source: torch.Tensor,
    weights: torch.Tensor,
    gather_index: torch.Tensor,
    scatter_index: torch.Tensor,
    kernel_map: KernelMap,
    out: torch.Tensor,
    transpose_weights: bool,
) -> torch.Tensor:
    """``out[scatter[p]] += source[gather[p]] @ W[k]`` for the pairs p of every offset k."""
    if kernel_map.max_count == 0:
        return out
    gathered = source.new_empty((kernel_map.max_count, source.shape[1]))
    product = source.new_empty((kernel_map.max_count, out.shape[1]))
    for offset, start, end in _spans(kernel_map):
        count = end - start
        weight = weights[offset].t() if transpose_weights else weights[offset]
        torch.index_select(source, 0, gather_index[start:end], out=gathered[:count])
        torch.mm(gathered[:count], weight, out=product[:count])
        out.index_add_(0, scatter_index[start:end], product[:count])
    return out


class _SparseConvFunction(torch.autograd.Function):
    """features [N_in, C_in], weights [K³, C_in, C_out] → [N_out, C_out]."""

    @staticmethod
    def forward(ctx, features, weights, kernel_map: KernelMap):
        ctx.save_for_backward(features, weights)
        ctx.kernel_map = kernel_map
        if kernel_map.identity_offset is not None:
            out = features @ weights[kernel_map.identity_offset]
        else:
            out = features.new_zeros((kernel_map.num_out, weights.shape[2]))
        return _gather_gemm_scatter(
            features, weights, kernel_map.in_index, kernel_map.out_index, kernel_map, out, False
        )

    @staticmethod
    def backward(ctx, grad_out):
        features, weights = ctx.saved_tensors
        kernel_map: KernelMap = ctx.kernel_map
        grad_out = grad_out.contiguous()
        grad_features = grad_weights = None
        if ctx.needs_input_grad[0]:
            if kernel_map.identity_offset is not None:
                grad_features = grad_out @ weights[kernel_map.identity_offset].t()
            else:
                grad_features = features.new_zeros(features.shape)
            _gather_gemm_scatter(
                grad_out, weights, kernel_map.out_index, kernel_map.in_index, kernel_map, grad_features, True
            )
        if ctx.needs_input_grad[1]:
            grad_weights = torch.zeros_like(weights)
            if kernel_map.identity_offset is not None:
                torch.mm(features.t(), grad_out, out=grad_weights[kernel_map.identity_offset])
            if kernel_map.max_count:
                gathered_in = features.new_empty((kernel_map.max_count, features.shape[1]))
                gathered_out = grad_out.new_empty((kernel_map.max_count, grad_out.shape[1]))
                for offset, start, end in _spans(kernel_map):
                    count = end - start
                    torch.index_select(features, 0, kernel_map.in_index[start:end], out=gathered_in[:count])
                    torch.index_select(grad_out, 0, kernel_map.out_index[start:end], out=gathered_out[:count])
                    torch.mm(gathered_in[:count].t(), gathered_out[:count], out=grad_weights[offset])
        return grad_features, grad_weights, None


def conv(features: torch.Tensor, weight: torch.Tensor, prepared: KernelMap) -> torch.Tensor:
    """Sparse convolution; ``weight`` is torch-style ``[C_out, C_in, K, K, K]``."""
    c_out, c_in = weight.shape[:2]
    weights = weight.permute(2, 3, 4, 1, 0).reshape(-1, c_in, c_out)
    features = features.contiguous()
    if weights.dtype != features.dtype:
        weights = weights.to(features.dtype)
    return _SparseConvFunction.apply(features, weights, prepared)


def max_pool(features: torch.Tensor, prepared: KernelMap) -> torch.Tensor:
    """Maximum over each output's input sites (empty sites do not take part, as in spconv)."""
    channels = features.shape[1]
    out = features.new_full((prepared.num_out, channels), float("-inf"))
    index = prepared.out_index[:, None].expand(-1, channels)
    out = out.scatter_reduce(0, index, features[prepared.in_index], reduce="amax", include_self=True)
    # A site with no input at all (possible only for kernels smaller than the stride) gets zero.
    return torch.where(torch.isneginf(out), torch.zeros_like(out), out)
