"""A converted network reproduces its 2D original on an image extruded along the copy axis.

Image2Point's hypothesis, end to end through the converter and the sparse engine: a 2D image
``I[c, row, col]`` placed in a fully occupied 3D grid that is constant along the copy axis of T, fed
to the converted sparse convs (inflated with ``normalize=True``), gives the 2D network's output on
every slice far enough from the grid's two ends along the copy axis. The 2D references are the 2D
modules themselves, run densely by torch.

For the default transform (the authors' default, copy_y) the copy axis is y, the 2D rows lie along z and
the 2D columns along x, so the grid is ``G[c, x, y, z] = I[c, z, x]``.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest
import torch
from torch import nn

from image2point.inflate.converter import convert_2d_to_3d
from image2point.models2d import KNOWN_WEIGHTS, create_model_2d, load_pretrained_2d
from image2point.sparse import SparseTensor

SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / ".." / "shared" / "weights"
CIFAR_WEIGHTS = KNOWN_WEIGHTS["cifar_resnet20_cifar10"]

SEED = 0
BATCH = 2
# Unequal sizes: a mix-up of rows, columns and the copy axis changes shapes or values.
IMAGE_ROWS, IMAGE_COLS = 6, 8
# Long enough along y that a stride-2 block still has exact coarse slices (see below).
COPY_DEPTH = 11
KERNEL_SIZE = 3
HALF_KERNEL = KERNEL_SIZE // 2
# Default T: 2D rows on z, 2D columns on x, copies along y; as dims of a dense [B, C, X, Y, Z] grid.
DENSE_X, DENSE_Y, DENSE_Z = 2, 3, 4
# Two stacked 3x3 convs see HALF_KERNEL further along y each, so a stride-1 block is exact on the
# slices at least 2 * HALF_KERNEL away from both ends.
BLOCK_MARGIN = 2 * HALF_KERNEL
# A stride-2 block reads fine slices 2q - 1 .. 2q + 1 in conv1 (exact for 1 <= q <= (Y - 2) / 2),
# then coarse slices q - 1 .. q + 1 in conv2: exact coarse slices are 2 <= q <= (Y - 2) // 2 - 1.
STRIDED_EXACT_SLICES = range(2, (COPY_DEPTH - 2) // 2)
ATOL = 1e-4
RTOL = 1e-5
# Trained-looking BatchNorm: statistics and affine parameters far from their initial 0 / 1.
BN_SCALE_LOW, BN_SCALE_SPAN = 0.5, 1.0
BN_SHIFT_STD = 0.2



@pytest.fixture(autouse=True, scope="module")
def release_cached_models():
    """The 2D models and conversions are cached for this module only."""
    yield
    converted_cifar_resnet20.cache_clear()
    cifar_resnet20.cache_clear()


def randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(BN_SCALE_LOW + BN_SCALE_SPAN * torch.rand(n, generator=generator))
                module.bias.copy_(BN_SHIFT_STD * torch.randn(n, generator=generator))
                module.running_mean.copy_(BN_SHIFT_STD * torch.randn(n, generator=generator))
                module.running_var.copy_(BN_SCALE_LOW + BN_SCALE_SPAN * torch.rand(n, generator=generator))


@functools.cache
def cifar_resnet20(weights: str) -> nn.Module:
    """A CIFAR ResNet-20 in eval mode: randomly initialised ("random") or the shared checkpoint."""
    if weights == "pretrained":
        path = next(iter(sorted(SHARED_WEIGHTS.glob("resnet20-*.th"))), None)
        if path is None:
            pytest.skip(f"no shared CIFAR-10 ResNet-20 checkpoint in {SHARED_WEIGHTS}")
        model = create_model_2d("cifar_resnet20")
        load_pretrained_2d(model, path, weights=CIFAR_WEIGHTS)
        return model.eval()
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        model = create_model_2d("cifar_resnet20")
    randomize_batchnorm(model, torch.Generator().manual_seed(SEED))
    return model.eval()


@functools.cache
def converted_cifar_resnet20(weights: str, transform: str, normalize: bool, stride_mode: str) -> nn.Module:
    converted = convert_2d_to_3d(cifar_resnet20(weights), transform, normalize=normalize, stride_mode=stride_mode)
    return converted.model.eval()


def image_batch(channels: int) -> torch.Tensor:
    """[B, C, rows, cols]."""
    generator = torch.Generator().manual_seed(SEED)
    return torch.randn(BATCH, channels, IMAGE_ROWS, IMAGE_COLS, generator=generator)


def extrude_along_y(image: torch.Tensor) -> SparseTensor:
    """Every site of the grid ``G[b, c, x, y, z] = image[b, c, z, x]`` for y in [0, COPY_DEPTH)."""
    batch, channels, rows, cols = image.shape
    dense = image.transpose(2, 3).unsqueeze(DENSE_Y).expand(batch, channels, cols, COPY_DEPTH, rows)
    occupied = torch.ones(batch, cols, COPY_DEPTH, rows, dtype=torch.bool, device=image.device)
    return SparseTensor.from_dense(dense.contiguous(), occupied)


def y_slice_as_image(x: SparseTensor, y: int, grid_shape: tuple[int, int, int]) -> torch.Tensor:
    """The slice at ``y`` of a tensor on a fully occupied grid, as a 2D image [B, C, rows, cols]."""
    dense = x.to_dense(grid_shape)
    # Without y, the dims are [B, C, X, Z]: x stays where it was and z moves up by one.
    return dense.select(DENSE_Y, y).transpose(DENSE_X, DENSE_Z - 1)


def on_device(module: nn.Module, device: torch.device) -> nn.Module:
    """The cached module itself on the CPU, a copy of it on another device."""
    return module if device.type == "cpu" else copy.deepcopy(module).to(device)


def full_grid() -> tuple[int, int, int]:
    return (IMAGE_COLS, COPY_DEPTH, IMAGE_ROWS)


def coarse_grid() -> tuple[int, int, int]:
    return tuple(-(-size // 2) for size in full_grid())


@pytest.mark.parametrize("weights", ["random", "pretrained"])
def test_inflated_conv_on_extruded_image_equals_2d_conv_away_from_y_ends(weights, device):
    conv_2d = on_device(cifar_resnet20(weights).layer1[0].conv1, device)
    conv_3d = on_device(converted_cifar_resnet20(weights, "default", True, "floor").layer1[0].conv1, device)
    image = image_batch(conv_2d.in_channels).to(device)
    with torch.no_grad():
        expected = conv_2d(image)
        out = conv_3d(extrude_along_y(image))
    for y in range(HALF_KERNEL, COPY_DEPTH - HALF_KERNEL):
        torch.testing.assert_close(y_slice_as_image(out, y, full_grid()), expected, atol=ATOL, rtol=RTOL)


def test_inflated_conv_at_y_ends_sees_only_the_present_copies():
    """At y = 0 and y = Y - 1 one of the K copies falls outside the grid: (K - 1) / K of the 2D response."""
    conv_2d = cifar_resnet20("random").layer1[0].conv1
    conv_3d = converted_cifar_resnet20("random", "default", True, "floor").layer1[0].conv1
    image = image_batch(conv_2d.in_channels)
    with torch.no_grad():
        expected = conv_2d(image) * (KERNEL_SIZE - 1) / KERNEL_SIZE
        out = conv_3d(extrude_along_y(image))
    for y in (0, COPY_DEPTH - 1):
        torch.testing.assert_close(y_slice_as_image(out, y, full_grid()), expected, atol=ATOL, rtol=RTOL)


def test_unnormalized_inflated_conv_gives_k_times_the_2d_conv():
    conv_2d = cifar_resnet20("random").layer1[0].conv1
    conv_3d = converted_cifar_resnet20("random", "default", False, "floor").layer1[0].conv1
    image = image_batch(conv_2d.in_channels)
    with torch.no_grad():
        expected = KERNEL_SIZE * conv_2d(image)
        out = conv_3d(extrude_along_y(image))
    y = COPY_DEPTH // 2
    torch.testing.assert_close(y_slice_as_image(out, y, full_grid()), expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("transform", ["copy_x", "copy_z"])
def test_transform_copying_along_another_axis_does_not_reproduce_the_2d_conv(transform):
    """The grid is constant along y only: a T that copies along x or z gives other values."""
    conv_2d = cifar_resnet20("random").layer1[0].conv1
    conv_3d = converted_cifar_resnet20("random", transform, True, "floor").layer1[0].conv1
    image = image_batch(conv_2d.in_channels)
    with torch.no_grad():
        expected = conv_2d(image)
        out = conv_3d(extrude_along_y(image))
    y = COPY_DEPTH // 2
    assert not torch.allclose(y_slice_as_image(out, y, full_grid()), expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("stride_mode", ["floor", "window"])
@pytest.mark.parametrize("weights", ["random", "pretrained"])
def test_converted_cifar_basic_block_equals_2d_block_away_from_y_ends(weights, stride_mode, device):
    block_2d = on_device(cifar_resnet20(weights).layer1[1], device)
    block_3d = on_device(converted_cifar_resnet20(weights, "default", True, stride_mode).layer1[1], device)
    assert block_2d.stride == 1 and block_2d.shortcut is None
    image = image_batch(block_2d.conv1.in_channels).to(device)
    with torch.no_grad():
        expected = block_2d(image)
        out = block_3d(extrude_along_y(image))
    assert out.stride == 1
    for y in range(BLOCK_MARGIN, COPY_DEPTH - BLOCK_MARGIN):
        torch.testing.assert_close(y_slice_as_image(out, y, full_grid()), expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("weights", ["random", "pretrained"])
def test_converted_strided_cifar_block_with_option_a_shortcut_equals_2d_block(weights, device):
    """layer2.0: stride-2 conv and the subsample-and-pad shortcut; floor sites = the 2D output grid."""
    block_2d = on_device(cifar_resnet20(weights).layer2[0], device)
    block_3d = on_device(converted_cifar_resnet20(weights, "default", True, "floor").layer2[0], device)
    assert block_2d.stride == 2 and block_2d.shortcut is not None
    image = image_batch(block_2d.conv1.in_channels).to(device)
    with torch.no_grad():
        expected = block_2d(image)
        out = block_3d(extrude_along_y(image))
    assert out.stride == 2
    assert out.num_sites == BATCH * torch.Size(coarse_grid()).numel()
    for y in STRIDED_EXACT_SLICES:
        torch.testing.assert_close(y_slice_as_image(out, y, coarse_grid()), expected, atol=ATOL, rtol=RTOL)
