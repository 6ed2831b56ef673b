"""Image2Point's hypothesis (Sections 5, 6.2): an inflated 3D convolution is a 2D convolution of the
grid summed along the copy axis over each local window."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from image2point.inflate import TRANSFORM_NAMES, filter_transform, inflate_weight

# (copy axis, axis of the 2D rows, axis of the 2D columns) as grid axes 0 = x, 1 = y, 2 = z.
AXES = {
    "copy_x": (0, 1, 2),
    "copy_y": (1, 2, 0),
    "copy_z": (2, 0, 1),
    "copy_x_transposed": (0, 2, 1),
    "copy_y_transposed": (1, 0, 2),
    "copy_z_transposed": (2, 1, 0),
    "default": (1, 2, 0),
}
# Unequal sizes so that a mixed-up axis changes shapes or values.
GRID_SHAPE = (6, 7, 8)
BATCH = 2
ATOL = 1e-4
CHANNELS = [(1, 1), (3, 4), (5, 2)]
SPATIAL_OFFSET = 2  # grid axis a of [B, C, X, Y, Z] is tensor dim a + 2


def window_sum(grid: torch.Tensor, dim: int, k: int) -> torch.Tensor:
    """sum_{d=-K//2..K//2} grid[..., p + d, ...] along ``dim``, zero outside the grid."""
    half = k // 2
    size = grid.shape[dim]
    pad = [0, 0] * grid.dim()
    # F.pad lists (before, after) pairs from the last dim backwards.
    pad_at = 2 * (grid.dim() - 1 - dim)
    pad[pad_at], pad[pad_at + 1] = half, half
    padded = F.pad(grid, pad)
    return sum(padded.narrow(dim, shift, size) for shift in range(k))


def to_copy_row_col(tensor: torch.Tensor, axes: tuple[int, int, int]) -> torch.Tensor:
    """[B, C, X, Y, Z] -> [B, C, copy, row, col]."""
    return tensor.movedim([a + SPATIAL_OFFSET for a in axes], [2, 3, 4])


def random_case(cin: int, cout: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    grid = torch.randn(BATCH, cin, *GRID_SHAPE, generator=generator)
    weight_2d = torch.randn(cout, cin, k, k, generator=generator)
    return grid, weight_2d


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("cin, cout", CHANNELS)
def test_conv3d_equals_conv2d_of_window_sums(name, k, cin, cout):
    grid, weight_2d = random_case(cin, cout, k, seed=k * 100 + cin * 10 + cout)
    axes = AXES[name]
    out_3d = F.conv3d(grid, inflate_weight(weight_2d, filter_transform(name, k)), padding=k // 2)
    summed = to_copy_row_col(window_sum(grid, axes[0] + SPATIAL_OFFSET, k), axes)
    out_3d = to_copy_row_col(out_3d, axes)
    for p in range(summed.shape[2]):
        out_2d = F.conv2d(summed[:, :, p], weight_2d, padding=k // 2)
        torch.testing.assert_close(out_3d[:, :, p], out_2d, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
def test_transposed_2d_filter_does_not_match(name):
    """The check above distinguishes rows from columns: a transposed 2D filter fails it."""
    k = 3
    grid, weight_2d = random_case(3, 4, k, seed=7)
    axes = AXES[name]
    kernel = inflate_weight(weight_2d, filter_transform(name, k))
    out_3d = to_copy_row_col(F.conv3d(grid, kernel, padding=k // 2), axes)
    summed = to_copy_row_col(window_sum(grid, axes[0] + SPATIAL_OFFSET, k), axes)
    swapped = F.conv2d(summed[:, :, 0], weight_2d.transpose(2, 3), padding=k // 2)
    assert not torch.allclose(out_3d[:, :, 0], swapped, atol=ATOL)


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
@pytest.mark.parametrize("k", [3, 5])
def test_normalized_transform_preserves_response_to_extruded_image(name, k):
    """A 2D image extruded along the copy axis gives the 2D response, away from the grid's ends."""
    cin, cout = 3, 2
    generator = torch.Generator().manual_seed(k)
    axes = AXES[name]
    sizes = [GRID_SHAPE[a] for a in axes]
    image = torch.randn(BATCH, cin, sizes[1], sizes[2], generator=generator)
    weight_2d = torch.randn(cout, cin, k, k, generator=generator)
    extruded = image.unsqueeze(2).expand(BATCH, cin, *sizes)  # [B, C, copy, row, col]
    grid = extruded.movedim([2, 3, 4], [a + SPATIAL_OFFSET for a in axes]).contiguous()
    kernel = inflate_weight(weight_2d, filter_transform(name, k, normalize=True))
    out_3d = to_copy_row_col(F.conv3d(grid, kernel, padding=k // 2), axes)
    out_2d = F.conv2d(image, weight_2d, padding=k // 2)
    half = k // 2
    for p in range(half, sizes[0] - half):
        torch.testing.assert_close(out_3d[:, :, p], out_2d, atol=ATOL, rtol=0)
