"""A learnable filter transform T (Image2Point, Section 4.8).

The 2D weights stay frozen; only T trains, and every forward pass recomputes the 3D kernel as W2d . T.
One instance may be shared by all convolutions of a kernel size (one T per model and K) or each
convolution may own its instance (one T per layer); gradients of a shared instance sum over its users.
"""

from __future__ import annotations

import torch
from torch import nn

from image2point.inflate.transforms import (
    NUM_SPATIAL_AXES,
    TRANSFORM_NAMES,
    check_kernel_size,
    filter_transform,
    inflate_weight,
)

RANDOM_INIT = "random"
LEARNABLE_INITS = TRANSFORM_NAMES + (RANDOM_INIT,)


def random_transform(
    kernel_size: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """A ``[K^2, K^3]`` T with i.i.d. normal entries of standard deviation 1/K.

    Each 3D entry is then a sum of K^2 2D entries with weights of variance 1/K^2, so for i.i.d. 2D
    weights it has the variance of one 2D weight, as under the copy transforms.
    """
    check_kernel_size(kernel_size)
    k = kernel_size
    standard = torch.randn(k * k, k**NUM_SPATIAL_AXES, generator=generator, dtype=dtype)
    return standard / k


class FilterTransform(nn.Module):
    """T as a trainable ``[K^2, K^3]`` parameter; ``forward`` inflates a 2D weight with it.

    ``init`` is a named transform of :func:`filter_transform` (``default``, ``copy_x``, ...,
    optionally divided by K with ``normalize``) or ``random`` (:func:`random_transform`, drawn from
    ``generator`` when given).
    """

    def __init__(
        self,
        kernel_size: int,
        init: str = "default",
        *,
        normalize: bool = False,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if init not in LEARNABLE_INITS:
            raise ValueError(f"unknown filter transform init {init!r}; choose one of {LEARNABLE_INITS}")
        if init == RANDOM_INIT and normalize:
            raise ValueError("normalize applies to the named copy transforms, not to init='random'")
        if init == RANDOM_INIT:
            initial = random_transform(kernel_size, generator, dtype)
        else:
            initial = filter_transform(init, kernel_size, normalize, dtype)
        self.kernel_size = kernel_size
        self.init = init
        self.normalize = normalize
        self.transform = nn.Parameter(initial)

    def forward(self, weight_2d: torch.Tensor) -> torch.Tensor:
        return inflate_weight(weight_2d, self.transform)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, init={self.init!r}, normalize={self.normalize}"
