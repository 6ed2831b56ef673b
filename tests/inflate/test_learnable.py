"""The learnable filter transform: initialisation, gradients, sharing between convolutions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from image2point.inflate import (
    LEARNABLE_INITS,
    FilterTransform,
    filter_transform,
    inflate_weight,
    random_transform,
)

KERNEL_SIZE = 3
GRID_SIZE = 5


def conv_loss(transform: FilterTransform, weight_2d: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """A loss through conv3d with the inflated kernel; squared so gradients depend on T."""
    out = F.conv3d(grid, transform(weight_2d), padding=transform.kernel_size // 2)
    return out.pow(2).sum()


def frozen_weight(cout: int, cin: int, seed: int) -> torch.Tensor:
    return torch.randn(cout, cin, KERNEL_SIZE, KERNEL_SIZE, generator=torch.Generator().manual_seed(seed))


def random_grid(channels: int, seed: int) -> torch.Tensor:
    shape = (1, channels, GRID_SIZE, GRID_SIZE, GRID_SIZE)
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("init", ["default", "copy_x", "copy_y", "copy_z", "copy_z_transposed"])
def test_named_init_equals_fixed_transform(init):
    module = FilterTransform(KERNEL_SIZE, init)
    assert torch.equal(module.transform.detach(), filter_transform(init, KERNEL_SIZE))
    assert module.transform.requires_grad


def test_normalized_init_divides_by_kernel_size():
    module = FilterTransform(KERNEL_SIZE, "default", normalize=True)
    assert torch.equal(module.transform.detach(), filter_transform("default", KERNEL_SIZE) / KERNEL_SIZE)


def test_random_init_differs_from_default_and_is_seeded():
    first = FilterTransform(KERNEL_SIZE, "random", generator=torch.Generator().manual_seed(0))
    again = FilterTransform(KERNEL_SIZE, "random", generator=torch.Generator().manual_seed(0))
    other = FilterTransform(KERNEL_SIZE, "random", generator=torch.Generator().manual_seed(1))
    default = filter_transform("default", KERNEL_SIZE)
    assert not torch.allclose(first.transform.detach(), default)
    assert torch.equal(first.transform, again.transform)
    assert not torch.equal(first.transform, other.transform)


def test_random_init_has_standard_deviation_one_over_k():
    k = 7
    transform = random_transform(k, torch.Generator().manual_seed(0))
    assert transform.shape == (k * k, k**3)
    # 16807 samples: the estimate is within a few percent of 1/K.
    assert transform.std().item() == pytest.approx(1.0 / k, rel=0.05)
    assert transform.mean().item() == pytest.approx(0.0, abs=0.01)


def test_forward_is_inflate_weight_with_current_transform():
    module = FilterTransform(KERNEL_SIZE, "random", generator=torch.Generator().manual_seed(0))
    weight_2d = frozen_weight(4, 2, seed=1)
    assert torch.equal(module(weight_2d), inflate_weight(weight_2d, module.transform))


def test_gradient_reaches_transform_not_frozen_weight():
    module = FilterTransform(KERNEL_SIZE)
    weight_2d = frozen_weight(4, 2, seed=0)
    conv_loss(module, weight_2d, random_grid(2, seed=1)).backward()
    assert weight_2d.grad is None
    assert module.transform.grad is not None
    assert module.transform.grad.abs().sum() > 0


def test_transform_gradient_is_chain_rule_through_kernel(device):
    module = FilterTransform(KERNEL_SIZE, "random", generator=torch.Generator().manual_seed(0)).to(device)
    weight_2d = frozen_weight(3, 2, seed=1).to(device)
    grid = random_grid(2, seed=2).to(device)
    conv_loss(module, weight_2d, grid).backward()
    # dL/dT = sum over (out, in) channels of W2d_flat^T . dL/dW3_flat, with dL/dW3 from a plain leaf.
    kernel = module(weight_2d).detach().requires_grad_(True)
    F.conv3d(grid, kernel, padding=KERNEL_SIZE // 2).pow(2).sum().backward()
    expected = torch.einsum("mni,mnj->ij", weight_2d.flatten(2), kernel.grad.flatten(2))
    torch.testing.assert_close(module.transform.grad, expected)


def test_shared_instance_sums_gradients_of_its_convolutions(device):
    weight_a, weight_b = frozen_weight(4, 2, seed=0).to(device), frozen_weight(2, 4, seed=1).to(device)
    grid_a, grid_b = random_grid(2, seed=2).to(device), random_grid(4, seed=3).to(device)

    shared = FilterTransform(KERNEL_SIZE).to(device)
    (conv_loss(shared, weight_a, grid_a) + conv_loss(shared, weight_b, grid_b)).backward()

    alone_a, alone_b = FilterTransform(KERNEL_SIZE).to(device), FilterTransform(KERNEL_SIZE).to(device)
    conv_loss(alone_a, weight_a, grid_a).backward()
    conv_loss(alone_b, weight_b, grid_b).backward()

    assert not torch.allclose(alone_a.transform.grad, alone_b.transform.grad)
    torch.testing.assert_close(shared.transform.grad, alone_a.transform.grad + alone_b.transform.grad)


def test_step_changes_kernel_on_next_forward():
    module = FilterTransform(KERNEL_SIZE)
    weight_2d = frozen_weight(4, 2, seed=0)
    frozen_copy = weight_2d.clone()
    before = module(weight_2d).detach()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    conv_loss(module, weight_2d, random_grid(2, seed=1)).backward()
    optimizer.step()
    assert torch.equal(weight_2d, frozen_copy)
    assert not torch.allclose(module(weight_2d), before)


def test_state_dict_holds_only_the_transform():
    module = FilterTransform(5, "copy_x")
    assert list(module.state_dict()) == ["transform"]
    assert module.state_dict()["transform"].shape == (25, 125)


def test_unknown_init_is_rejected():
    with pytest.raises(ValueError, match="unknown filter transform init"):
        FilterTransform(KERNEL_SIZE, "identity")
    assert "random" in LEARNABLE_INITS


def test_random_init_with_normalize_is_rejected():
    with pytest.raises(ValueError, match="normalize"):
        FilterTransform(KERNEL_SIZE, "random", normalize=True)


def test_bad_kernel_size_is_rejected():
    with pytest.raises(ValueError, match="kernel_size"):
        FilterTransform(0, "random")
