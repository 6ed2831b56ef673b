"""A converted network reproduces its 2D original on an image extruded along the copy axis.

Image2Point's hypothesis, end to end through the converter and the sparse engine: a 2D image
``I[c, row, col]`` placed in a fully occupied 3D grid that is constant along the copy axis of T, fed
to the converted sparse convs (inflated with ``normalize=True``), gives the 2D network's output on
every slice far enough from the grid's two ends along the copy axis. The 2D references are the 2D
modules themselves, run densely by torch.

For the default transform (the authors' default, copy_y) the copy axis is y, the 2D rows lie along z and
the 2D columns along x, so the grid is ``G[c, x, y, z] = I[c, z, x]``.

Whole converted trunks are checked on a one-site-thick plane of real images (MNIST, Tiny-ImageNet),
for each strided-shortcut setting: exact under "center", and where the children settings can be exact.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest
import torch
from plane_checks import randomize_batchnorm
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



@pytest.fixture(autouse=True, scope="module")
def release_cached_models():
    """The 2D models and conversions are cached for this module only."""
    yield
    converted_cifar_resnet20.cache_clear()
    cifar_resnet20.cache_clear()


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
    randomize_batchnorm(model, SEED)
    return model.eval()


@functools.cache
def converted_cifar_resnet20(weights: str, transform: str, normalize: bool, stride_mode: str,
                             shortcut: str = "center") -> nn.Module:
    """Converted under ``shortcut`` "center" unless said otherwise: the setting that reads what 2D reads."""
    converted = convert_2d_to_3d(cifar_resnet20(weights), transform, normalize=normalize, stride_mode=stride_mode,
                                 shortcut=shortcut)
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


# ---------------------------------------------------------------------------------------------------
# Whole networks on a one-site-thick plane of real images.
#
# On the plane y = 0 a converted 3×3×3 kernel (default T, not normalised) meets only its y = 0 slice,
# which is the 2D kernel itself, and the floor convention's coarse sites are exactly the 2D output
# grid: a whole converted trunk (stem, every stage, global pool) equals its 2D original when strided
# shortcuts read the child at 2q as 2D does ("center"). The children settings read the other three
# children of the plane too, so they agree with 2D only where those children hold the same value as
# 2q: on an image constant over every 2×2 block, "children_mean" is exact and "children_sum" gives 4×.

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
PLANE_IMAGES = 2
CHILDREN_ON_A_PLANE = 4
PLANE_ATOL = 1e-4
PLANE_RTOL = 1e-5
SHORTCUTS = ["center", "children_sum", "children_mean"]
FIRST_STRIDED_STAGE = "layer2"


@functools.cache
def real_images(source: str) -> torch.Tensor:
    """[PLANE_IMAGES, 3, H, W] normalised real images: MNIST test digits or Tiny-ImageNet val images."""
    from image2point.pretrain2d.image_folders import MNIST, TinyImageNet

    if source == "mnist":
        root = SHARED_DATA / "mnist"
        if not root.is_dir():
            pytest.skip(f"MNIST not found at {root.resolve()}")
        dataset = MNIST(root, "test")
    else:
        root = SHARED_DATA / "tiny-imagenet-200"
        if not root.is_dir():
            pytest.skip(f"Tiny-ImageNet not found at {root.resolve()}")
        dataset = TinyImageNet(root, "val")
    return torch.stack([dataset[index][0] for index in range(PLANE_IMAGES)])


@functools.cache
def trunk_2d(architecture: str) -> nn.Module:
    """ResNet-18 (random, trained-looking BN) or the shared CIFAR-10 ResNet-56, in eval mode."""
    if architecture == "cifar_resnet56":
        path = next(iter(sorted(SHARED_WEIGHTS.glob("resnet56-*.th"))), None)
        if path is None:
            pytest.skip(f"no shared CIFAR-10 ResNet-56 checkpoint in {SHARED_WEIGHTS}")
        model = create_model_2d("cifar_resnet56")
        load_pretrained_2d(model, path, weights=KNOWN_WEIGHTS["cifar_resnet56_cifar10"])
        return model.eval()
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        model = create_model_2d(architecture)
    randomize_batchnorm(model, SEED)
    return model.eval()


def image_on_plane(image: torch.Tensor) -> SparseTensor:
    """``G[b, c, x, 0, z] = image[b, c, z, x]`` (default T: rows on z, columns on x), one site thick."""
    batch, channels, rows, cols = image.shape
    dense = image.transpose(2, 3).unsqueeze(DENSE_Y).contiguous()
    return SparseTensor.from_dense(dense, torch.ones(batch, cols, 1, rows, dtype=torch.bool))


def plane_as_image(x: SparseTensor, rows: int, cols: int) -> torch.Tensor:
    return x.to_dense((cols, 1, rows)).select(DENSE_Y, 0).transpose(DENSE_X, DENSE_Z - 1)


def trunk_names(model_2d: nn.Module) -> tuple[str, ...]:
    from image2point.models.networks import backbone_spec

    spec = backbone_spec(model_2d)
    return spec.stem + spec.stages


def run_trunks(architecture: str, source: str, shortcut: str):
    """(2D, 3D-on-the-plane) output of every stem layer and stage, and the globally pooled features."""
    from image2point.sparse import functional as SF

    model_2d = trunk_2d(architecture)
    model_3d = convert_2d_to_3d(model_2d, "default", stride_mode="floor", shortcut=shortcut).model.eval()
    images = real_images(source)
    x_2d, x_3d, outputs = images, image_on_plane(images), []
    with torch.no_grad():
        for name in trunk_names(model_2d):
            x_2d = getattr(model_2d, name)(x_2d)
            x_3d = getattr(model_3d, name)(x_3d)
            # A copy: the 2D ReLU works in place on what the next layer receives.
            outputs.append((name, x_2d.clone(), plane_as_image(x_3d, *x_2d.shape[2:])))
        pooled = (x_2d.mean((2, 3)), SF.global_avg_pool(x_3d))
    return outputs, pooled


@pytest.mark.parametrize("source", ["mnist", "tiny_imagenet"])
@pytest.mark.parametrize("architecture", ["resnet18", "cifar_resnet56"])
def test_whole_converted_trunk_equals_2d_on_a_plane_with_center_shortcuts(architecture, source):
    outputs, (pooled_2d, pooled_3d) = run_trunks(architecture, source, "center")
    for name, out_2d, out_3d in outputs:
        torch.testing.assert_close(out_3d, out_2d, atol=PLANE_ATOL, rtol=PLANE_RTOL, msg=name)
    torch.testing.assert_close(pooled_3d, pooled_2d, atol=PLANE_ATOL, rtol=PLANE_RTOL)


@pytest.mark.parametrize("shortcut", ["children_sum", "children_mean"])
@pytest.mark.parametrize("architecture", ["resnet18", "cifar_resnet56"])
def test_children_shortcuts_part_from_2d_at_the_first_strided_stage(architecture, shortcut):
    """Same network otherwise: equal up to layer2, whose first block is the first with a strided shortcut
    in both ResNets (the stem's strides have none), and different from there on."""
    outputs, (pooled_2d, pooled_3d) = run_trunks(architecture, "tiny_imagenet", shortcut)
    names = [name for name, _, _ in outputs]
    for name, out_2d, out_3d in outputs[:names.index(FIRST_STRIDED_STAGE)]:
        torch.testing.assert_close(out_3d, out_2d, atol=PLANE_ATOL, rtol=PLANE_RTOL, msg=name)
    _, out_2d, out_3d = outputs[names.index(FIRST_STRIDED_STAGE)]
    assert not torch.allclose(out_3d, out_2d, atol=PLANE_ATOL, rtol=PLANE_RTOL)
    assert not torch.allclose(pooled_3d, pooled_2d, atol=PLANE_ATOL, rtol=PLANE_RTOL)


def block_constant_input(source: str, channels: int, side: int) -> torch.Tensor:
    """A block's input made of real images: their pixels mixed into ``channels`` non-negative channels (as
    after a ReLU), then every pixel repeated over a 2×2 block, so each coarse site's four plane children
    hold one value."""
    images = real_images(source)[:, :, :side, :side]
    mix = torch.randn(channels, images.shape[1], generator=torch.Generator().manual_seed(SEED))
    features = torch.relu(torch.einsum("oc,bchw->bohw", mix, images))
    return features.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


@pytest.mark.parametrize("shortcut", SHORTCUTS)
@pytest.mark.parametrize("architecture", ["resnet18", "cifar_resnet56"])
def test_strided_block_on_2x2_constant_real_image_is_exact_under_center_and_children_mean(architecture, shortcut):
    """layer2.0 (1×1 projection, or option-A subsample): its shortcut reads four equal children."""
    model_2d = trunk_2d(architecture)
    block_2d = model_2d.layer2[0]
    block_3d = convert_2d_to_3d(model_2d, "default", shortcut=shortcut).model.eval().layer2[0]
    image = block_constant_input("tiny_imagenet", block_2d.conv1.in_channels, side=16)
    with torch.no_grad():
        expected = block_2d(image)
        out = plane_as_image(block_3d(image_on_plane(image)), *expected.shape[2:])
    if shortcut == "children_sum":
        assert not torch.allclose(out, expected, atol=PLANE_ATOL, rtol=PLANE_RTOL)
    else:
        torch.testing.assert_close(out, expected, atol=PLANE_ATOL, rtol=PLANE_RTOL)


@pytest.mark.parametrize("shortcut, factor", [("center", 1), ("children_sum", CHILDREN_ON_A_PLANE),
                                              ("children_mean", 1)])
def test_projection_shortcut_on_2x2_constant_image_reads_four_equal_children(shortcut, factor):
    conv_2d = trunk_2d("resnet18").layer2[0].downsample[0]
    conv_3d = convert_2d_to_3d(trunk_2d("resnet18"), "default", shortcut=shortcut).model.layer2[0].downsample[0]
    image = block_constant_input("mnist", conv_2d.in_channels, side=14)
    with torch.no_grad():
        expected = factor * conv_2d(image)
        out = plane_as_image(conv_3d(image_on_plane(image)), *expected.shape[2:])
    torch.testing.assert_close(out, expected, atol=PLANE_ATOL, rtol=PLANE_RTOL)
