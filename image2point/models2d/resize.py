"""Bilinear resizing of ``[N, C, H, W]`` feature maps that also trains under deterministic algorithms on CUDA.

torch has no deterministic CUDA kernel for the backward of bilinear ``F.interpolate``
(``upsample_bilinear2d_backward`` adds with atomics), so ``torch.use_deterministic_algorithms(True)``
makes it raise there. Bilinear interpolation is separable and linear: ``out = A_h @ x @ A_w^T`` with
fixed ``[out, in]`` interpolation matrices, whose backward is two more matmuls (deterministic under
cuBLAS's fixed workspace). :func:`bilinear_resize` takes that form only while deterministic algorithms
are on; otherwise it calls ``F.interpolate``, whose kernel reads two taps per output instead of a
whole row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BILINEAR = "bilinear"


def interpolation_matrix(in_size: int, out_size: int, align_corners: bool, dtype: torch.dtype,
                         device: torch.device | None = None) -> torch.Tensor:
    """``[out_size, in_size]``: row o holds the weights of the two input samples bilinear interpolation
    reads for output o, with ``F.interpolate``'s convention for a given output size (no antialiasing).

    The source coordinate is ``o * (in - 1) / (out - 1)`` with ``align_corners`` (0 for a single output),
    else ``(o + 0.5) * in / out - 0.5`` clamped at 0; the two samples are its floor and the next one,
    both clamped to the last input (torch's ``area_pixel_compute_source_index``, aten/src/ATen/native/UpSample.h).
    """
    positions = torch.arange(out_size, dtype=torch.float64, device=device)
    if align_corners:
        source = positions * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    else:
        source = ((positions + 0.5) * (in_size / out_size) - 0.5).clamp(min=0.0)
    low = source.floor().clamp(max=in_size - 1)
    high = (low + 1).clamp(max=in_size - 1)
    fraction = (source - low).clamp(0.0, 1.0)[:, None]
    inputs = torch.arange(in_size, dtype=torch.float64, device=device)
    # Where low == high (the last input) the two weights add up to 1 on that input.
    matrix = (1 - fraction) * (inputs == low[:, None]) + fraction * (inputs == high[:, None])
    return matrix.to(dtype)


def separable_bilinear_resize(x: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """Bilinear resize of ``x [..., H, W]`` to ``size`` as ``A_h @ x @ A_w^T`` (two matmuls)."""
    (in_h, in_w), (out_h, out_w) = x.shape[-2:], size
    rows = interpolation_matrix(in_h, out_h, align_corners, x.dtype, x.device)
    columns = interpolation_matrix(in_w, out_w, align_corners, x.dtype, x.device).T
    # The cheaper order of the two products (multiply-adds per map); the shapes alone decide it.
    if in_h * in_w * out_w + out_h * in_h * out_w <= out_h * in_h * in_w + out_h * in_w * out_w:
        return rows @ (x @ columns)
    return (rows @ x) @ columns


def bilinear_resize(x: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=align_corners)``, as two matmuls while
    torch's deterministic algorithms are on (:func:`separable_bilinear_resize`)."""
    size = (int(size[0]), int(size[1]))
    if torch.are_deterministic_algorithms_enabled():
        return separable_bilinear_resize(x, size, align_corners)
    return F.interpolate(x, size=size, mode=BILINEAR, align_corners=align_corners)
