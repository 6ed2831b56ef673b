"""Filter transforms T: the linear maps that inflate a K x K image filter into a K x K x K filter.

A 2D weight ``[M, N, K, K]`` has kernel axes (row, column) = (conv2d's H, conv2d's W). A 3D weight
``[M, N, K, K, K]`` has kernel axes (x, y, z) = (conv3d's D, H, W). Inflation flattens each K x K slice
row-major into a vector of K^2 entries, multiplies it by T (``[K^2, K^3]``) and reshapes the K^3 result
row-major into K x K x K (the filter inflation of Image2Point).

The named transforms are copies: each 3D entry is one 2D entry, the slice being repeated K times along
one 3D axis (the copy axis) while the 2D rows and columns run along the other two. For every name:

    name      copies along   2D rows on   2D columns on   3D entry W3[..., x, y, z]
    t1        x              y            z               W2[..., y, z]
    t2        y              z            x               W2[..., z, x]
    t3        z              x            y               W2[..., x, y]
    default   = t2 (the transform of the authors' released code, see below)

(copy, rows, columns) is a cyclic order of (x, y, z) for all three, so t1, t2 and t3 are rotations of
one another (by 120 degrees about the kernel's diagonal), never mirror images.

The released code (``model_zoo.weight_transform``, repository chenfengxu714/image2point) inflates with
its ``'z-axis'`` transformation by default: it permutes the 2D weight to ``[row, col, Cin, Cout]`` and
writes 2D row ``a`` into kernel offsets ``9a .. 9a + 8`` as ``row a`` repeated three times, i.e. kernel
offset index ``9 * a + 3 * r + b`` holds ``W2[a, b]`` for every repeat ``r``. Its sparse convolution
library (torchsparse 1.x) orders the 27 offsets of an odd kernel with x fastest
(index ``9 * z + 3 * y + x``). So the released default copies along y, with the 2D rows on z and the
columns on x: exactly ``t2`` above. The released code applies no 1/K scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

AXIS_X, AXIS_Y, AXIS_Z = 0, 1, 2
SPATIAL_AXIS_NAMES = ("x", "y", "z")
NUM_SPATIAL_AXES = 3
# The leading [Cout, Cin] dimensions of a conv weight precede the kernel axes.
NUM_CHANNEL_DIMS = 2


@dataclass(frozen=True)
class CopyLayout:
    """Where a copy transform puts things, as 3D kernel axes (0 = x, 1 = y, 2 = z)."""

    copy_axis: int
    row_axis: int
    col_axis: int

    def describe(self) -> str:
        names = SPATIAL_AXIS_NAMES
        return (
            f"copies along {names[self.copy_axis]}, 2D rows on {names[self.row_axis]}, "
            f"2D columns on {names[self.col_axis]}"
        )


COPY_ALONG_X = CopyLayout(copy_axis=AXIS_X, row_axis=AXIS_Y, col_axis=AXIS_Z)
COPY_ALONG_Y = CopyLayout(copy_axis=AXIS_Y, row_axis=AXIS_Z, col_axis=AXIS_X)
COPY_ALONG_Z = CopyLayout(copy_axis=AXIS_Z, row_axis=AXIS_X, col_axis=AXIS_Y)
COPY_LAYOUTS: dict[str, CopyLayout] = {
    # The released code's default ('z-axis'), derived in the module docstring.
    "default": COPY_ALONG_Y,
    "t1": COPY_ALONG_X,
    "t2": COPY_ALONG_Y,
    "t3": COPY_ALONG_Z,
}
TRANSFORM_NAMES = tuple(COPY_LAYOUTS)


def copy_layout(name: str) -> CopyLayout:
    """The copy axis and the axes of the 2D rows and columns of the named transform."""
    try:
        return COPY_LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown filter transform {name!r}; choose one of {TRANSFORM_NAMES}") from None


def check_kernel_size(kernel_size: int) -> None:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be an integer >= 1, got {kernel_size!r}")


def filter_transform(
    name: str, kernel_size: int, normalize: bool = False, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The ``[K^2, K^3]`` matrix T of the named transform (``default``, ``t1``, ``t2``, ``t3``).

    ``T[row * K + col, (x * K + y) * K + z]`` is 1 when 3D kernel position (x, y, z) takes 2D entry
    (row, col) under the layout of :data:`COPY_LAYOUTS` (see the module docstring), else 0:

    - ``t1`` copies along x: ``W3[..., x, y, z] = W2[..., y, z]``
    - ``t2`` copies along y: ``W3[..., x, y, z] = W2[..., z, x]``
    - ``t3`` copies along z: ``W3[..., x, y, z] = W2[..., x, y]``
    - ``default`` is ``t2``, the transform of the authors' released code.

    ``normalize=True`` divides T by K, so that a 3D input constant along the copy axis gives the 2D
    filter's response. K = 1 gives the 1 x 1 identity; even K is allowed.
    """
    layout = copy_layout(name)
    check_kernel_size(kernel_size)
    k = kernel_size
    offsets = torch.arange(k)
    grid = torch.meshgrid(offsets, offsets, offsets, indexing="ij")
    # Row-major flattening of the [K, K, K] grid matches the reshape of the inflated kernel.
    rows = grid[layout.row_axis].reshape(-1)
    cols = grid[layout.col_axis].reshape(-1)
    source_index = rows * k + cols
    target_index = torch.arange(k**NUM_SPATIAL_AXES)
    transform = torch.zeros(k * k, k**NUM_SPATIAL_AXES, dtype=dtype)
    transform[source_index, target_index] = 1.0
    if normalize:
        transform = transform / k
    return transform


def inflate_weight(weight_2d: torch.Tensor, transform: torch.Tensor) -> torch.Tensor:
    """``[M, N, K, K]`` 2D weight times T ``[K^2, K^3]`` -> ``[M, N, K, K, K]`` 3D weight.

    Differentiable with respect to both arguments.
    """
    if weight_2d.dim() != NUM_CHANNEL_DIMS + 2 or weight_2d.shape[-1] != weight_2d.shape[-2]:
        raise ValueError(
            f"2D weight must be [Cout, Cin, K, K] with a square kernel, got {tuple(weight_2d.shape)}"
        )
    cout, cin, k, _ = weight_2d.shape
    expected = (k * k, k**NUM_SPATIAL_AXES)
    if tuple(transform.shape) != expected:
        raise ValueError(
            f"filter transform for a {k}x{k} kernel must have shape {expected}, got {tuple(transform.shape)}"
        )
    if transform.dtype != weight_2d.dtype or transform.device != weight_2d.device:
        raise ValueError(
            f"filter transform ({transform.dtype}, {transform.device}) and 2D weight "
            f"({weight_2d.dtype}, {weight_2d.device}) must share dtype and device"
        )
    flat = weight_2d.reshape(cout, cin, k * k)
    return (flat @ transform).reshape(cout, cin, k, k, k)
