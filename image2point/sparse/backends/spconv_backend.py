"""spconv execution of sparse convolution: spconv's gather-GEMM-scatter kernels on our kernel maps.

spconv (https://github.com/traveller59/spconv) is the field's standard engine and ships prebuilt CUDA
wheels (``pip install spconv-cu12x``); ``pip install spconv`` is its CPU build, published for Linux
x86-64 only. Kernel maps are built once per level by :mod:`image2point.sparse.kernel_map` and converted
here to spconv's pair layout, so both backends compute on exactly the same sites.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import torch

from image2point.sparse.backends import SparseOp, weight_layout
from image2point.sparse.kernel_map import KernelMap

NAME = "spconv"
# Dilated convolutions need no fallback: dilation lives in the kernel maps, which are ours.
FALLBACKS = {
    SparseOp.GROUPED_CONV: "spconv 2.3 has no grouped convolution (its SparseConv asserts groups == 1)",
    SparseOp.DEPTHWISE_CONV: "spconv 2.3 has no grouped convolution (its SparseConv asserts groups == 1)",
    SparseOp.AVG_POOL: "spconv 2.3 averages only in its CUDA implicit-GEMM kernel, on its own index layout",
}


@lru_cache(maxsize=None)
def _spconv_ops():
    """Import spconv once and patch its CPU backward (one of the two CPU workarounds, both here)."""
    try:
        import spconv.pytorch.ops as ops
        from spconv.core import ConvAlgo
    except ImportError as error:
        raise ImportError(
            "the spconv backend needs spconv: `pip install spconv` (CPU, Linux x86-64) or "
            "`pip install spconv-cu12x` (CUDA 12); or use backend='torch'"
        ) from error
    original_stream = ops.get_current_stream

    # spconv's CPU backward asks for the current CUDA stream although it never uses it, which asserts
    # on a CPU-only torch. Stream 0 is what its CPU kernels expect.
    def current_stream_or_default() -> int:
        return original_stream() if torch.cuda.is_available() else 0

    ops.get_current_stream = current_stream_or_default
    return ops, ConvAlgo.Native


@contextmanager
def _cpu_kernels_guard(tensor: torch.Tensor):
    """Run spconv's CPU kernels with one torch thread.

    spconv's CPU gather/scatter kernels return wrong sums when torch's intra-op pool runs with more
    than one thread in the same process (reproduced with spconv 2.3.8; see tests/sparse). CUDA is
    unaffected.
    """
    if tensor.is_cuda:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def is_available() -> bool:
    try:
        _spconv_ops()
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class SpconvPairs:
    """spconv's layout: ``pairs[0, k, :num[k]]`` inputs and ``pairs[1, k, :num[k]]`` outputs of offset k."""

    pairs: torch.Tensor  # [2, K³, max_count] int32
    num_pairs: torch.Tensor  # [K³] int32
    num_out: int
    submanifold: bool


def prepare(kernel_map: KernelMap) -> SpconvPairs:
    num_offsets = len(kernel_map.counts)
    device = kernel_map.in_index.device
    width = max(kernel_map.max_count, 1)
    pairs = torch.full((2, num_offsets, width), -1, dtype=torch.int32, device=device)
    counts = torch.tensor(kernel_map.counts, dtype=torch.int64, device=device)
    offset_of_pair = torch.repeat_interleave(torch.arange(num_offsets, device=device), counts)
    first_pair = torch.cumsum(counts, 0) - counts
    slot = torch.arange(kernel_map.in_index.numel(), device=device) - first_pair[offset_of_pair]
    pairs[0, offset_of_pair, slot] = kernel_map.in_index.to(torch.int32)
    pairs[1, offset_of_pair, slot] = kernel_map.out_index.to(torch.int32)
    return SpconvPairs(pairs, counts.to(torch.int32), kernel_map.num_out, kernel_map.identity_offset is not None)


class _SpconvConvFunction(torch.autograd.Function):
    """spconv's gather-GEMM-scatter forward and backward, each under the CPU guard."""

    @staticmethod
    def forward(ctx, features, filters, prepared: SpconvPairs):
        ops, algo = _spconv_ops()
        ctx.save_for_backward(features, filters)
        ctx.prepared = prepared
        with _cpu_kernels_guard(features):
            return ops.indice_conv(features, filters, prepared.pairs, prepared.num_pairs, prepared.num_out,
                                   False, prepared.submanifold, algo=algo)

    @staticmethod
    def backward(ctx, grad_out):
        ops, algo = _spconv_ops()
        features, filters = ctx.saved_tensors
        prepared: SpconvPairs = ctx.prepared
        with _cpu_kernels_guard(features):
            grad_features, grad_filters = ops.indice_conv_backward(
                features, filters, grad_out.contiguous(), prepared.pairs, prepared.num_pairs,
                False, prepared.submanifold, algo=algo)
        return grad_features, grad_filters, None


class _SpconvMaxPoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, prepared: SpconvPairs):
        ops, _ = _spconv_ops()
        with _cpu_kernels_guard(features):
            out = ops.indice_maxpool(features, prepared.pairs, prepared.num_pairs, prepared.num_out)
        ctx.save_for_backward(features, out)
        ctx.prepared = prepared
        return out

    @staticmethod
    def backward(ctx, grad_out):
        ops, _ = _spconv_ops()
        features, out = ctx.saved_tensors
        prepared: SpconvPairs = ctx.prepared
        with _cpu_kernels_guard(features):
            grad_features = ops.indice_maxpool_backward(features, out, grad_out.contiguous(), prepared.pairs,
                                                        prepared.num_pairs)
        return grad_features, None


def conv(features: torch.Tensor, weight: torch.Tensor, prepared: SpconvPairs) -> torch.Tensor:
    """Sparse convolution; ``weight`` is torch-style ``[C_out, C_in, K, K, K]``."""
    # spconv keeps filters as [C_out, Kx, Ky, Kz, C_in] ("KRSC"), the memory of [C_out, K³, C_in].
    c_out, c_in = weight.shape[:2]
    filters = weight_layout.filters_of(weight, features.dtype).view(c_out, *weight.shape[2:], c_in)
    return _SpconvConvFunction.apply(features.contiguous(), filters, prepared)


def max_pool(features: torch.Tensor, prepared: SpconvPairs) -> torch.Tensor:
    """Maximum over each output's occupied input sites; spconv starts from zero, so inputs must be ≥ 0
    (as after a ReLU) for the result to equal a dense max pool."""
    return _SpconvMaxPoolFunction.apply(features.contiguous(), prepared)
