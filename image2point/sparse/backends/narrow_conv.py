"""Sparse convolution of narrow inputs as one GEMM over gathered neighbourhoods (im2col).

The per-offset loop writes and scatter-adds a ``[pairs, C_out]`` product for every kernel offset. When
the input is narrow (the first layer: xyz or xyz + intensity, 3-4 channels, into 64) those products are
the whole cost: each carries ``C_out`` values for ``C_in`` inputs. Here each output site gathers the
rows of all its ``K³`` neighbours at once (a missing neighbour reads a zero row), ``[N_out, K³·C_in]``,
and one GEMM with the ``[C_out, K³·C_in]`` filters writes the output once. Absent neighbours cost FLOPs
(a site has 4-13 of its 27 on the shared samples), which at ``K³·C_in`` ≤ :data:`MAX_GATHERED_WIDTH`
are few; the filter gradient is one GEMM as well.
"""

from __future__ import annotations

import torch

# Widest gathered row (K³·C_in) that takes this path: 3×3×3 kernels on up to 4 input channels.
MAX_GATHERED_WIDTH = 108


def applies(c_in: int, num_offsets: int) -> bool:
    return c_in * num_offsets <= MAX_GATHERED_WIDTH


def neighbour_table(in_index: torch.Tensor, out_index: torch.Tensor, counts: tuple[int, ...], num_in: int,
                    num_out: int) -> torch.Tensor:
    """``[N_out · K³]`` input row of each (output, offset), output-major; ``num_in`` where there is none."""
    num_offsets = len(counts)
    device = in_index.device
    offset = torch.repeat_interleave(torch.arange(num_offsets, device=device), torch.tensor(counts, device=device))
    table = torch.full((num_out * num_offsets,), num_in, dtype=torch.int64, device=device)
    table[out_index * num_offsets + offset] = in_index
    return table


def _gathered(features: torch.Tensor, table: torch.Tensor, num_out: int) -> torch.Tensor:
    """``[N_out, K³·C_in]`` neighbourhoods (a zero row past the inputs stands for absent neighbours)."""
    padded = torch.cat([features, features.new_zeros((1, features.shape[1]))])
    return padded.index_select(0, table).view(num_out, -1)


class NarrowConvFunction(torch.autograd.Function):
    """features [N_in, C_in], filters [C_out, K³, C_in], table → [N_out, C_out] in features' dtype."""

    @staticmethod
    def forward(ctx, features, filters, table, num_out: int):
        ctx.save_for_backward(features, filters, table)
        ctx.num_out = num_out
        flat = filters.view(filters.shape[0], -1)
        return _gathered(features, table, num_out) @ flat.t()

    @staticmethod
    def backward(ctx, grad_out):
        features, filters, table = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        flat = filters.view(filters.shape[0], -1)
        grad_features = grad_filters = None
        if ctx.needs_input_grad[1]:
            grad_filters = (grad_out.t() @ _gathered(features, table, ctx.num_out)).view(filters.shape)
        if ctx.needs_input_grad[0]:
            rows = (grad_out @ flat).view(-1, features.shape[1])
            accumulate = torch.float32 if features.dtype in (torch.float16, torch.bfloat16) else features.dtype
            padded = features.new_zeros((features.shape[0] + 1, features.shape[1]), dtype=accumulate)
            grad_features = padded.index_add_(0, table, rows.to(accumulate))[:-1].to(features.dtype)
        return grad_features, grad_filters, None, None
