"""Convolution weights in the ``[C_out, K³, C_in]`` layout both backends compute with, cached for inference.

A torch weight ``[C_out, C_in, K, K, K]`` has the kernel offset innermost; the backends want it outside
the input channels (each offset's ``[C_out, C_in]`` slice a GEMM operand), which costs a copy of the
whole weight per call: about 7 ms for a 512-channel 3×3×3 layer on one core, as much as that layer's
GEMMs on a few hundred sites. With autograd recording, the copy is part of the graph and is made every
call; without (inference), the copy is kept on the weight tensor itself and reused until the weight
changes (its version counter moves: optimizer steps, ``load_state_dict``, any in-place op), is cast to
another dtype or moved to another device. Writes through ``weight.data`` bypass the version counter, as
they bypass autograd: after one, call :func:`forget_filters` (nothing in this package writes that way).
"""

from __future__ import annotations

import torch

# Attribute of a weight tensor holding (key, filters); lives and dies with the weight.
_CACHE_ATTRIBUTE = "_image2point_filters"


def _layout(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    c_out, c_in = weight.shape[:2]
    filters = weight.reshape(c_out, c_in, -1).transpose(1, 2).contiguous()
    return filters if filters.dtype == dtype else filters.to(dtype)


def filters_of(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``weight`` ``[C_out, C_in, K, K, K]`` as contiguous ``[C_out, K³, C_in]`` in ``dtype``."""
    if torch.is_grad_enabled() and weight.requires_grad:
        return _layout(weight, dtype)
    key = (weight._version, dtype, weight.device, weight.data_ptr())
    cached = getattr(weight, _CACHE_ATTRIBUTE, None)
    if cached is not None and cached[0] == key:
        return cached[1]
    filters = _layout(weight.detach(), dtype)
    try:
        setattr(weight, _CACHE_ATTRIBUTE, (key, filters))
    except (AttributeError, RuntimeError):  # a tensor that takes no attributes: no cache
        pass
    return filters


def forget_filters(weight: torch.Tensor) -> None:
    """Drop the inference copy kept on ``weight`` (after a write that the version counter cannot see)."""
    if hasattr(weight, _CACHE_ATTRIBUTE):
        delattr(weight, _CACHE_ATTRIBUTE)
