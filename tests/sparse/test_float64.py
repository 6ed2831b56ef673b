"""The sparse path in float64 (what tests/test_cuda_parity.py compares train mode in): every conv path of
the torch backend (narrow, per offset, offset groups, depthwise, grouped) and the max pool keep float64
and equal their dense float64 counterparts to float64 precision, forward and backward."""

import pytest
import torch
import torch.nn.functional as F
from dense_reference import at_sites, dense_of

from image2point.sparse import SparseTensor
from image2point.sparse import functional as SF
from image2point.sparse.backends import torch_backend

BATCH, GRID, DENSITY = 2, (9, 8, 7), 0.3


def random_sparse64(channels: int, device: torch.device, seed: int = 0) -> SparseTensor:
    generator = torch.Generator().manual_seed(seed)
    coords = (torch.rand((BATCH, *GRID), generator=generator) < DENSITY).nonzero()
    features = torch.randn(coords.shape[0], channels, generator=generator, dtype=torch.float64)
    return SparseTensor(features.to(device).requires_grad_(), coords.to(device), BATCH, backend="torch")


def weight64(*shape: int, device: torch.device, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(device).requires_grad_()


def assert_equal_in_float64(sparse_out, dense_at_sites, inputs):
    """float64 kept, values and the gradients of a random projection within float64 tolerances."""
    assert sparse_out.dtype == torch.float64
    torch.testing.assert_close(sparse_out, dense_at_sites)
    probe = torch.randn(sparse_out.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    probe = probe.to(sparse_out.device)
    sparse_grads = torch.autograd.grad((sparse_out * probe).sum(), inputs, retain_graph=True)
    dense_grads = torch.autograd.grad((dense_at_sites * probe).sum(), inputs)
    for sparse_grad, dense_grad in zip(sparse_grads, dense_grads):
        assert sparse_grad.dtype == torch.float64
        torch.testing.assert_close(sparse_grad, dense_grad)


@pytest.fixture(params=["per_offset", "offset_groups"])
def conv_path(request, device, monkeypatch):
    """Both orders of the torch backend's sums, whichever is the device's default."""
    paths = {device.type} if request.param == "offset_groups" else set()
    monkeypatch.setattr(torch_backend, "BATCHED_OFFSET_DEVICE_TYPES", paths)
    return request.param


# (C_in, C_out): 4 inputs take the narrow (im2col) path, 16 the gather-GEMM-scatter one.
@pytest.mark.parametrize("channels", [(4, 8), (16, 8)])
@pytest.mark.parametrize("stride", [1, 2])
def test_convs_in_float64_equal_dense(device, conv_path, channels, stride):
    x = random_sparse64(channels[0], device)
    weight = weight64(channels[1], channels[0], 3, 3, 3, device=device)
    out = SF.conv3d(x, weight, stride=stride)
    dense = F.conv3d(dense_of(x), weight, stride=stride, padding=1)
    assert_equal_in_float64(out.features, at_sites(dense, out.coords), (x.features, weight))


def test_inverse_conv_in_float64_equals_dense(device, conv_path):
    x = random_sparse64(6, device)
    coarse = SF.conv3d(x, weight64(8, 6, 3, 3, 3, device=device), stride=2)
    coarse = coarse.replace_features(coarse.features.detach().requires_grad_())
    up_weight = weight64(5, 8, 3, 3, 3, device=device, seed=3)
    up = SF.inverse_conv3d(coarse, up_weight, target=x)
    dense = F.conv_transpose3d(dense_of(coarse), up_weight.transpose(0, 1), stride=2, padding=1)
    assert_equal_in_float64(up.features, at_sites(dense, x.coords), (coarse.features, up_weight))


# Depthwise (groups = channels), and 64 channels in 4 groups of 16 (the grouped bmm path).
@pytest.mark.parametrize("channels,groups", [(8, 8), (64, 4)])
def test_grouped_convs_in_float64_equal_dense(device, channels, groups):
    x = random_sparse64(channels, device)
    weight = weight64(channels, channels // groups, 3, 3, 3, device=device)
    out = SF.conv3d(x, weight, groups=groups)
    dense = F.conv3d(dense_of(x), weight, padding=1, groups=groups)
    assert_equal_in_float64(out.features, at_sites(dense, out.coords), (x.features, weight))


def test_max_pool_in_float64_equals_dense(device):
    x = random_sparse64(5, device)
    out = SF.max_pool3d(x, kernel_size=3, stride=2)
    # Absent sites take no part: -inf on the dense grid.
    empty = dense_of(x.replace_features(torch.ones(x.num_sites, 1, dtype=torch.float64, device=device))) == 0
    pooled = F.max_pool3d(dense_of(x).masked_fill(empty, float("-inf")), kernel_size=3, stride=2, padding=1)
    assert_equal_in_float64(out.features, at_sites(pooled, out.coords), (x.features,))
