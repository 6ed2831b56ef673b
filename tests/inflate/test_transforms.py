"""Filter transforms T against their definitions, written out here as explicit loops."""

from __future__ import annotations

import itertools

import pytest
import torch

from image2point.inflate import (
    AUTHORS_TRANSFORMS,
    RETIRED_NAMES,
    TRANSFORM_NAMES,
    copy_layout,
    filter_transform,
    inflate_weight,
)

KERNEL_SIZES = (1, 3, 5, 7)
RELEASED_KERNEL_SIZE = 3

# Which 2D entry (row, col) each 3D kernel position (x, y, z) copies, per transform.
SOURCE_OF_POSITION = {
    "copy_x": lambda x, y, z: (y, z),
    "copy_y": lambda x, y, z: (z, x),
    "copy_z": lambda x, y, z: (x, y),
    "copy_x_transposed": lambda x, y, z: (z, y),
    "copy_y_transposed": lambda x, y, z: (x, z),
    "copy_z_transposed": lambda x, y, z: (y, x),
    "default": lambda x, y, z: (z, x),
}
ROTATIONS = ("copy_x", "copy_y", "copy_z")
# The authors' 'x-axis' T (model_zoo.weight_transform) as a table: which 2D entry each block of three
# consecutive kernel offsets repeats.
X_AXIS_ENTRY_OF_BLOCK = (0, 3, 6, 1, 4, 7, 2, 5, 8)


def loop_inflate(weight_2d: torch.Tensor, name: str) -> torch.Tensor:
    cout, cin, k, _ = weight_2d.shape
    source = SOURCE_OF_POSITION[name]
    weight_3d = weight_2d.new_zeros(cout, cin, k, k, k)
    for x, y, z in itertools.product(range(k), repeat=3):
        row, col = source(x, y, z)
        weight_3d[:, :, x, y, z] = weight_2d[:, :, row, col]
    return weight_3d


def loop_transform(name: str, k: int) -> torch.Tensor:
    source = SOURCE_OF_POSITION[name]
    transform = torch.zeros(k * k, k**3)
    for x, y, z in itertools.product(range(k), repeat=3):
        row, col = source(x, y, z)
        transform[row * k + col, (x * k + y) * k + z] = 1.0
    return transform


def test_names_cover_the_reference_table():
    assert set(TRANSFORM_NAMES) == set(SOURCE_OF_POSITION)


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
@pytest.mark.parametrize("k", KERNEL_SIZES)
def test_transform_matches_loop_definition(name, k):
    assert torch.equal(filter_transform(name, k), loop_transform(name, k))


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
@pytest.mark.parametrize("k", KERNEL_SIZES)
def test_inflate_random_weight_matches_loop(name, k, device):
    generator = torch.Generator().manual_seed(k)
    weight_2d = torch.randn(4, 3, k, k, generator=generator)
    inflated = inflate_weight(weight_2d.to(device), filter_transform(name, k).to(device))
    assert inflated.shape == (4, 3, k, k, k) and inflated.device == device
    # One-hot T: every 3D entry is one 2D entry times 1.0, exact on any device.
    assert torch.equal(inflated.cpu(), loop_inflate(weight_2d, name))


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
def test_even_kernel_matches_loop(name):
    weight_2d = torch.randn(2, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(inflate_weight(weight_2d, filter_transform(name, 2)), loop_inflate(weight_2d, name))


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
def test_one_by_one_kernel_is_identity(name):
    assert torch.equal(filter_transform(name, 1), torch.ones(1, 1))


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
@pytest.mark.parametrize("k", KERNEL_SIZES)
def test_normalize_divides_by_kernel_size(name, k):
    normalized = filter_transform(name, k, normalize=True)
    torch.testing.assert_close(normalized, loop_transform(name, k) / k, rtol=0, atol=0)


def test_dtype_is_respected():
    assert filter_transform("copy_x", 3, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
def test_copy_transform_is_one_hot_per_3d_position(name):
    k = RELEASED_KERNEL_SIZE
    transform = filter_transform(name, k)
    # Every 3D entry copies exactly one 2D entry, and every 2D entry lands on K positions.
    assert torch.equal(transform.sum(0), torch.ones(k**3))
    assert torch.equal(transform.sum(1), torch.full((k * k,), float(k)))


def test_six_copy_transforms_are_distinct_and_default_is_copy_y():
    k = RELEASED_KERNEL_SIZE
    distinct = {name: filter_transform(name, k) for name in TRANSFORM_NAMES if name != "default"}
    for first, second in itertools.combinations(distinct, 2):
        assert not torch.equal(distinct[first], distinct[second]), (first, second)
    assert torch.equal(filter_transform("default", k), distinct["copy_y"])


def test_untransposed_copies_are_rotations_of_one_another():
    k = RELEASED_KERNEL_SIZE
    copy_x, copy_y, copy_z = (filter_transform(name, k) for name in ROTATIONS)
    # copy_x at (x, y, z) reads what copy_z holds at (y, z, x); copy_y at (x, y, z) reads copy_z at (z, x, y).
    positions = torch.arange(k**3).reshape(k, k, k)
    assert torch.equal(copy_x, copy_z[:, positions.permute(2, 0, 1).reshape(-1)])
    assert torch.equal(copy_y, copy_z[:, positions.permute(1, 2, 0).reshape(-1)])
    weight_2d = torch.randn(2, 3, 3, 3, generator=torch.Generator().manual_seed(1))
    w_x, w_y, w_z = (inflate_weight(weight_2d, filter_transform(n, 3)) for n in ROTATIONS)
    assert torch.equal(w_x, w_z.permute(0, 1, 4, 2, 3))
    assert torch.equal(w_y, w_z.permute(0, 1, 3, 4, 2))


@pytest.mark.parametrize("name", ROTATIONS)
def test_transposed_copy_is_the_copy_of_the_transposed_filter(name):
    weight_2d = torch.randn(2, 3, 3, 3, generator=torch.Generator().manual_seed(4))
    mirrored = inflate_weight(weight_2d.transpose(2, 3), filter_transform(name, 3))
    assert torch.equal(inflate_weight(weight_2d, filter_transform(f"{name}_transposed", 3)), mirrored)


def _authors_kernel(weight_2d: torch.Tensor, trans_type: str) -> torch.Tensor:
    """The authors' weight_transform (model_zoo.py) rebuilt from its description: ``[K^3, Cin, Cout]``
    kernels in torchsparse's offset order."""
    k = RELEASED_KERNEL_SIZE
    cout, cin = weight_2d.shape[:2]
    if trans_type == "z-axis":
        by_row = weight_2d.permute(2, 3, 1, 0)  # [row, col, Cin, Cout]
        # Offset block of row a: that row's K columns, repeated K times.
        return torch.cat([by_row[row].repeat(k, 1, 1) for row in range(k)])
    transform = torch.zeros(k * k, k**3)
    if trans_type == "y-axis":
        transform = torch.eye(k * k).repeat(1, k)
    else:  # x-axis: offsets 3i .. 3i + 2 take 2D entry (row-major) X_AXIS_ENTRY_OF_BLOCK[i].
        for block, entry in enumerate(X_AXIS_ENTRY_OF_BLOCK):
            transform[entry, k * block:k * block + k] = 1.0
    return (weight_2d.reshape(cout, cin, -1) @ transform).permute(2, 1, 0)


@pytest.mark.parametrize("trans_type", sorted(AUTHORS_TRANSFORMS))
def test_authors_transformations_read_through_torchsparse_offsets(trans_type):
    """Each of the authors' three transformations, placed by torchsparse 1.x's offset order, is ours."""
    k = RELEASED_KERNEL_SIZE
    weight_2d = torch.randn(5, 4, k, k, generator=torch.Generator().manual_seed(2))
    theirs = _authors_kernel(weight_2d, trans_type)
    ours = inflate_weight(weight_2d, filter_transform(AUTHORS_TRANSFORMS[trans_type], k))
    # torchsparse 1.x lists the offsets of an odd kernel with x varying fastest.
    offsets = [(x, y, z) for z in range(k) for y in range(k) for x in range(k)]
    for index, (x, y, z) in enumerate(offsets):
        assert torch.equal(theirs[index], ours[:, :, x, y, z].T), (trans_type, index)


def test_layouts_describe_their_axes():
    assert copy_layout("copy_z").describe() == "copies along z, 2D rows on x, 2D columns on y"
    assert copy_layout("copy_z_transposed").describe() == "copies along z, 2D rows on y, 2D columns on x"
    assert copy_layout("default") == copy_layout("copy_y")


@pytest.mark.parametrize("old", sorted(RETIRED_NAMES))
def test_retired_names_are_refused_naming_their_replacement(old):
    with pytest.raises(ValueError, match=f"{old!r} is a retired filter transform name: it meant "
                                         f"{RETIRED_NAMES[old]} .*; use one of default, copy_x") as caught:
        filter_transform(old, 3)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", sorted(AUTHORS_TRANSFORMS))
def test_authors_names_are_refused_naming_ours(name):
    with pytest.raises(ValueError, match=f"the authors' name for {AUTHORS_TRANSFORMS[name]}"):
        filter_transform(name, 3)


@pytest.mark.parametrize("name", ["", "T1", "t4", "copy_w", "random"])
def test_unknown_name_is_rejected(name):
    with pytest.raises(ValueError, match="unknown filter transform"):
        filter_transform(name, 3)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "3"])
def test_bad_kernel_size_is_rejected(k):
    with pytest.raises(ValueError, match="kernel_size"):
        filter_transform("default", k)


def test_inflate_rejects_non_square_kernel():
    with pytest.raises(ValueError, match="square kernel"):
        inflate_weight(torch.zeros(2, 2, 3, 1), filter_transform("default", 3))


def test_inflate_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\[Cout, Cin, K, K\]"):
        inflate_weight(torch.zeros(2, 3, 3), filter_transform("default", 3))


def test_inflate_rejects_transform_of_other_kernel_size():
    with pytest.raises(ValueError, match=r"3x3 kernel must have shape \(9, 27\)"):
        inflate_weight(torch.zeros(2, 2, 3, 3), filter_transform("default", 5))


def test_inflate_rejects_dtype_mismatch():
    with pytest.raises(ValueError, match="dtype and device"):
        inflate_weight(torch.zeros(2, 2, 3, 3, dtype=torch.float64), filter_transform("default", 3))


def test_inflate_is_differentiable_in_both_arguments():
    generator = torch.Generator().manual_seed(3)
    weight_2d = torch.randn(2, 2, 3, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    transform = torch.randn(9, 27, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(inflate_weight, (weight_2d, transform))
