"""Filter transforms T against their definitions, written out here as explicit loops."""

from __future__ import annotations

import itertools

import pytest
import torch

from image2point.inflate import TRANSFORM_NAMES, copy_layout, filter_transform, inflate_weight

KERNEL_SIZES = (1, 3, 5, 7)
RELEASED_KERNEL_SIZE = 3

# Which 2D entry (row, col) each 3D kernel position (x, y, z) copies, per transform.
SOURCE_OF_POSITION = {
    "t1": lambda x, y, z: (y, z),
    "t2": lambda x, y, z: (z, x),
    "t3": lambda x, y, z: (x, y),
    "default": lambda x, y, z: (z, x),
}


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
    assert filter_transform("t1", 3, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
def test_copy_transform_is_one_hot_per_3d_position(name):
    k = RELEASED_KERNEL_SIZE
    transform = filter_transform(name, k)
    # Every 3D entry copies exactly one 2D entry, and every 2D entry lands on K positions.
    assert torch.equal(transform.sum(0), torch.ones(k**3))
    assert torch.equal(transform.sum(1), torch.full((k * k,), float(k)))


def test_three_copy_transforms_are_distinct_permutations():
    k = RELEASED_KERNEL_SIZE
    t1, t2, t3 = (filter_transform(name, k) for name in ("t1", "t2", "t3"))
    assert not torch.equal(t1, t2) and not torch.equal(t2, t3) and not torch.equal(t1, t3)
    # Each is another with its 3D kernel positions permuted by a cyclic rotation of the axes:
    # t1 at (x, y, z) reads what t3 holds at (y, z, x); t2 at (x, y, z) reads t3 at (z, x, y).
    positions = torch.arange(k**3).reshape(k, k, k)
    t3_as_t1 = positions.permute(2, 0, 1).reshape(-1)
    t3_as_t2 = positions.permute(1, 2, 0).reshape(-1)
    assert torch.equal(t1, t3[:, t3_as_t1])
    assert torch.equal(t2, t3[:, t3_as_t2])


def test_copies_are_rotations_of_one_another():
    weight_2d = torch.randn(2, 3, 3, 3, generator=torch.Generator().manual_seed(1))
    w1, w2, w3 = (inflate_weight(weight_2d, filter_transform(n, 3)) for n in ("t1", "t2", "t3"))
    assert torch.equal(w1, w3.permute(0, 1, 4, 2, 3))
    assert torch.equal(w2, w3.permute(0, 1, 3, 4, 2))


def test_default_equals_released_z_axis_transformation():
    """Rebuild the released code's default inflation and read it through torchsparse's offset order."""
    k = RELEASED_KERNEL_SIZE
    cout, cin = 5, 4
    weight_2d = torch.randn(cout, cin, k, k, generator=torch.Generator().manual_seed(2))
    by_row = weight_2d.permute(2, 3, 1, 0)  # [row, col, Cin, Cout]
    # Offset block of row a: that row's K columns, repeated K times.
    released = torch.cat([by_row[row].repeat(k, 1, 1) for row in range(k)])  # [K^3, Cin, Cout]
    # torchsparse 1.x lists the offsets of an odd kernel with x varying fastest.
    offsets = [(x, y, z) for z in range(k) for y in range(k) for x in range(k)]
    ours = inflate_weight(weight_2d, filter_transform("default", k))
    for index, (x, y, z) in enumerate(offsets):
        assert torch.equal(released[index], ours[:, :, x, y, z].T)


def test_layouts_describe_their_axes():
    assert copy_layout("t3").describe() == "copies along z, 2D rows on x, 2D columns on y"
    assert copy_layout("default") == copy_layout("t2")


@pytest.mark.parametrize("name", ["", "T1", "t4", "z-axis", "random"])
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
