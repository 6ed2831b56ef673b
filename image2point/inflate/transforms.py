"""Filter transforms T: the linear maps that inflate a K x K image filter into a K x K x K filter.

A 2D weight ``[M, N, K, K]`` has kernel axes (row, column) = (conv2d's H, conv2d's W). A 3D weight
``[M, N, K, K, K]`` has kernel axes (x, y, z) = (conv3d's D, H, W), the x, y, z of the point
coordinates. Inflation flattens each K x K slice row-major into a vector of K^2 entries, multiplies it
by T (``[K^2, K^3]``) and reshapes the K^3 result row-major into K x K x K (the filter inflation of
Image2Point).

The named transforms are copies: each 3D entry is one 2D entry, the slice being repeated K times along
one 3D axis (the copy axis) while the 2D rows and columns run along the other two. A name says the copy
axis in our kernel axes; ``_transposed`` puts the 2D filter in transposed (a mirror image):

    name                copies along   2D rows on   2D columns on   3D entry W3[..., x, y, z]
    copy_x              x              y            z               W2[..., y, z]
    copy_y              y              z            x               W2[..., z, x]
    copy_z              z              x            y               W2[..., x, y]
    copy_x_transposed   x              z            y               W2[..., z, y]
    copy_y_transposed   y              x            z               W2[..., x, z]
    copy_z_transposed   z              y            x               W2[..., y, x]
    default             = copy_y, the authors' default ('z-axis', see below)

(copy, rows, columns) is a cyclic order of (x, y, z) for copy_x, copy_y and copy_z, so these three are
rotations of one another (by 120 degrees about the kernel's diagonal); each ``_transposed`` one is a
mirror image of them.

The authors' code (``model_zoo.weight_transform`` in github chenfengxu714/image2point) offers three
transformations, ``'z-axis'`` (the default), ``'y-axis'`` and ``'x-axis'``, and runs on torchsparse 1.2,
which lists the 27 offsets of an odd kernel with x fastest (``utils/kernel_region.py``: offset index
``9 * z + 3 * y + x``). Read through that order, 2D entry (a, b) = (row, column) lands on:

- ``'z-axis'``: the weight permuted to ``[row, col, Cin, Cout]``, row ``a`` repeated three times as
  offsets ``9a .. 9a + 8``: index ``9a + 3r + b``, i.e. z = a, x = b, copied along y: ``default``;
- ``'y-axis'``: T = ``eye(9)`` tiled three times along the 27 offsets: index ``9r + 3a + b``, i.e.
  y = a, x = b, copied along z: ``copy_z_transposed``;
- ``'x-axis'``: T sends 2D entry ``3a + b`` to offsets ``9b + 3a .. 9b + 3a + 2``: z = b, y = a,
  copied along x: ``copy_x``.

See :data:`AUTHORS_TRANSFORMS`. The authors' code applies no 1/K scaling.

The paper shows its default T beside three handcrafted transforms T1, T2, T3 (Figure 3, four panels)
and reports T2 at 81.82 +- 0.18 (Table 14) against 83.11 +- 0.23 for the default in the same setting
(Table 8), so T2 is not the default. Which copies T1-T3 are cannot be recovered from the text, so no
transform here carries those names; the names t1, t2, t3 of earlier versions are refused with their
exact replacement (:data:`RETIRED_NAMES`).
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

    def transposed(self) -> CopyLayout:
        """The same copy axis with the 2D filter transposed: rows and columns swap axes."""
        return CopyLayout(copy_axis=self.copy_axis, row_axis=self.col_axis, col_axis=self.row_axis)

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
    # The authors' default ('z-axis'), derived in the module docstring.
    "default": COPY_ALONG_Y,
    "copy_x": COPY_ALONG_X,
    "copy_y": COPY_ALONG_Y,
    "copy_z": COPY_ALONG_Z,
    "copy_x_transposed": COPY_ALONG_X.transposed(),
    "copy_y_transposed": COPY_ALONG_Y.transposed(),
    "copy_z_transposed": COPY_ALONG_Z.transposed(),
}
TRANSFORM_NAMES = tuple(COPY_LAYOUTS)
# The authors' transformation names (model_zoo.weight_transform) -> ours; derived in the module docstring.
AUTHORS_TRANSFORMS: dict[str, str] = {"z-axis": "default", "y-axis": "copy_z_transposed", "x-axis": "copy_x"}
# Names of earlier versions -> the transform they meant. Refused, not mapped: they read as the paper's
# T1-T3, which they are not.
RETIRED_NAMES: dict[str, str] = {"t1": "copy_x", "t2": "copy_y", "t3": "copy_z"}


def unknown_transform_message(name: str) -> str:
    """One line on why ``name`` is not a filter transform, naming what to use instead."""
    choices = ", ".join(TRANSFORM_NAMES)
    if name in RETIRED_NAMES:
        new = RETIRED_NAMES[name]
        layout = COPY_LAYOUTS[new]
        same = ", the same as default" if layout == COPY_LAYOUTS["default"] else ""
        return (f"{name!r} is a retired filter transform name: it meant {new} ({layout.describe()}{same}), "
                f"not the paper's {name.upper()}; use one of {choices}")
    if name in AUTHORS_TRANSFORMS:
        return (f"{name!r} is the authors' name for {AUTHORS_TRANSFORMS[name]} (their axes are not ours); "
                f"use one of {choices}")
    return f"unknown filter transform {name!r}; choose one of {choices}"


def copy_layout(name: str) -> CopyLayout:
    """The copy axis and the axes of the 2D rows and columns of the named transform."""
    try:
        return COPY_LAYOUTS[name]
    except KeyError:
        raise ValueError(unknown_transform_message(name)) from None


def check_kernel_size(kernel_size: int) -> None:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be an integer >= 1, got {kernel_size!r}")


def filter_transform(
    name: str, kernel_size: int, normalize: bool = False, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The ``[K^2, K^3]`` matrix T of the named transform (one of :data:`TRANSFORM_NAMES`).

    ``T[row * K + col, (x * K + y) * K + z]`` is 1 when 3D kernel position (x, y, z) takes 2D entry
    (row, col) under the layout of :data:`COPY_LAYOUTS` (table in the module docstring), else 0; e.g.
    ``copy_z``: ``W3[..., x, y, z] = W2[..., x, y]``, ``copy_z_transposed``: ``W2[..., y, x]``, and
    ``default`` = ``copy_y``: ``W2[..., z, x]``, the authors' default.

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
