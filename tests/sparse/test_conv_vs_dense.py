"""Sparse convolution, pooling and inverse convolution against dense torch references, both backends,
on every device (the ``device`` fixture of tests/conftest.py)."""

import pytest
import torch
import torch.nn.functional as F
from dense_reference import BACKENDS, assert_same_values_and_gradients, at_sites, dense_of, random_sites

from image2point.sparse import SparseTensor
from image2point.sparse import functional as SF
from image2point.sparse.backends import spconv_available, spconv_has_cuda_kernels

ATOL = 1e-4
BATCH = 2


def random_sparse(channels: int, backend: str, seed: int = 0, device: torch.device | str = "cpu") -> SparseTensor:
    """The same sites and features on every device (drawn on the CPU, then moved)."""
    if backend == "spconv" and torch.device(device).type == "cuda" and not spconv_has_cuda_kernels():
        pytest.skip("the installed spconv is a CPU-only build")
    generator = torch.Generator().manual_seed(seed)
    coords = random_sites(BATCH, generator)
    features = torch.randn(coords.shape[0], channels, generator=generator, dtype=torch.float64).float()
    return SparseTensor(features.to(device).requires_grad_(), coords.to(device), BATCH, backend=backend)


def random_weight(*shape: int, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.randn(*shape).to(device).requires_grad_()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("channels", [(1, 1), (4, 7), (16, 8)])
def test_submanifold_conv_equals_dense_conv3d(backend, kernel_size, channels, device):
    c_in, c_out = channels
    x = random_sparse(c_in, backend, device=device)
    weight = random_weight(c_out, c_in, kernel_size, kernel_size, kernel_size, device=device)
    out = SF.conv3d(x, weight)
    assert torch.equal(out.coords, x.coords)
    dense = F.conv3d(dense_of(x), weight, padding=(kernel_size - 1) // 2)
    assert_same_values_and_gradients(out.features, at_sites(dense, x.coords), (x.features, weight))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stride_mode", ["floor", "window"])
@pytest.mark.parametrize("kernel_size", [1, 2, 3])
@pytest.mark.parametrize("channels", [(3, 5), (8, 16)])
def test_strided_conv_equals_dense_conv3d(backend, stride_mode, kernel_size, channels, device):
    c_in, c_out = channels
    x = random_sparse(c_in, backend, seed=1, device=device)
    weight = random_weight(c_out, c_in, kernel_size, kernel_size, kernel_size, device=device)
    out = SF.conv3d(x, weight, stride=2, stride_mode=stride_mode)
    assert out.stride == 2
    dense = F.conv3d(dense_of(x), weight, stride=2, padding=(kernel_size - 1) // 2)
    assert_same_values_and_gradients(out.features, at_sites(dense, out.coords), (x.features, weight))


def test_stride_conventions_define_the_coarse_sites(device):
    x = random_sparse(1, "torch", seed=2, device=device)
    floor_sites = SF.coarser_coords(x, "floor")
    expected_floor = torch.unique(torch.cat([x.coords[:, :1], x.coords[:, 1:] // 2], 1), dim=0)
    assert torch.equal(floor_sites, expected_floor)
    # window: exactly the sites where a dense 3×3×3/2 conv of the occupancy is non-zero.
    occupancy = dense_of(x.replace_features(torch.ones(x.num_sites, 1, device=device)))
    hit = F.conv3d(occupancy, torch.ones(1, 1, 3, 3, 3, device=device), stride=2, padding=1)[:, 0] > 0
    assert torch.equal(SF.coarser_coords(x, "window"), hit.nonzero())
    assert floor_sites.shape[0] < SF.coarser_coords(x, "window").shape[0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stride_mode", ["floor", "window"])
@pytest.mark.parametrize("kernel_size", [2, 3])
def test_inverse_conv_equals_dense_conv_transpose3d(backend, stride_mode, kernel_size, device):
    fine = random_sparse(4, backend, seed=3, device=device)
    coarse_coords = SF.coarser_coords(fine, stride_mode)
    generator = torch.Generator().manual_seed(4)
    coarse_features = torch.randn(coarse_coords.shape[0], 6, generator=generator).to(device).requires_grad_()
    coarse = fine.coarser(stride_mode, coarse_coords, coarse_features)
    weight = random_weight(5, 6, kernel_size, kernel_size, kernel_size, device=device)
    out = SF.inverse_conv3d(coarse, weight, target=fine, stride_mode=stride_mode)
    assert torch.equal(out.coords, fine.coords)
    dense_coarse = dense_of(coarse)
    dense = F.conv_transpose3d(dense_coarse, weight.transpose(0, 1), stride=2, padding=(kernel_size - 1) // 2)
    assert_same_values_and_gradients(out.features, at_sites(dense, fine.coords), (coarse_features, weight))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stride_mode", ["floor", "window"])
def test_max_pool_equals_dense_max_pool3d(backend, stride_mode, device):
    x = random_sparse(5, backend, seed=5, device=device)
    # Non-negative inputs, as after the ResNet stem's ReLU (spconv pools from a zero start).
    features = x.features.detach().abs().requires_grad_()
    x = x.replace_features(features)
    out = SF.max_pool3d(x, kernel_size=3, stride=2, stride_mode=stride_mode)
    dense = dense_of(x)
    empty = dense_of(x.replace_features(torch.ones(x.num_sites, 1, device=device))) == 0
    dense = dense.masked_fill(empty, float("-inf"))
    pooled = F.max_pool3d(dense, kernel_size=3, stride=2, padding=1)
    assert_same_values_and_gradients(out.features, at_sites(pooled, out.coords), (features,))


def test_torch_max_pool_handles_negative_features(device):
    x = random_sparse(3, "torch", seed=6, device=device)
    features = -x.features.detach().abs()
    out = SF.max_pool3d(x.replace_features(features), kernel_size=3, stride=2)
    dense = dense_of(x.replace_features(features))
    empty = dense_of(x.replace_features(torch.ones(x.num_sites, 1, device=device))) == 0
    pooled = F.max_pool3d(dense.masked_fill(empty, float("-inf")), kernel_size=3, stride=2, padding=1)
    torch.testing.assert_close(out.features, at_sites(pooled, out.coords))


@pytest.mark.parametrize("stride_mode", ["floor", "window"])
def test_subsample_equals_dense_strided_slice(stride_mode, device):
    x = random_sparse(4, "torch", seed=7, device=device)
    out = SF.subsample(x, stride_mode)
    dense = dense_of(x)[:, :, ::2, ::2, ::2]
    torch.testing.assert_close(out.features, at_sites(F.pad(dense, (0, 2, 0, 2, 0, 2)), out.coords))


def test_global_pools_per_sample(device):
    x = random_sparse(3, "torch", seed=8, device=device)
    mean = SF.global_avg_pool(x)
    maximum = SF.global_max_pool(x)
    for b in range(BATCH):
        rows = x.features[x.coords[:, 0] == b]
        torch.testing.assert_close(mean[b], rows.mean(0))
        torch.testing.assert_close(maximum[b], rows.max(0).values)


@pytest.mark.skipif(not spconv_available(), reason="spconv is not installed")
@pytest.mark.parametrize("stride", [1, 2])
def test_backends_agree(stride, device):
    x_torch = random_sparse(8, "torch", seed=9, device=device)
    x_spconv = random_sparse(8, "spconv", seed=9, device=device)
    weight = torch.randn(12, 8, 3, 3, 3).to(device)
    a = SF.conv3d(x_torch, weight, stride=stride)
    b = SF.conv3d(x_spconv, weight, stride=stride)
    assert torch.equal(a.coords, b.coords)
    torch.testing.assert_close(a.features, b.features, atol=ATOL, rtol=1e-4)


def test_kernel_maps_are_cached_per_batch(device):
    x = random_sparse(2, "torch", seed=10, device=device)
    weight = torch.randn(2, 2, 3, 3, 3).to(device)
    SF.conv3d(x, weight)
    count = len(x.cache.kernel_maps)
    # Every cached map lives on the batch's device: no CPU copy is left behind for a CUDA batch.
    for entry in x.cache.kernel_maps.values():
        for tensor in _tensors_of(entry):
            assert tensor.device == x.device
    SF.conv3d(SF.conv3d(x, weight), weight)
    assert len(x.cache.kernel_maps) == count


def test_bad_weights_and_strides_are_rejected():
    x = random_sparse(2, "torch")
    with pytest.raises(ValueError, match="input channels"):
        SF.conv3d(x, torch.randn(4, 3, 3, 3, 3))
    with pytest.raises(ValueError, match=r"\[C_out, C_in, K, K, K\]"):
        SF.conv3d(x, torch.randn(4, 2, 3, 3))
    with pytest.raises(ValueError, match="stride"):
        SF.conv3d(x, torch.randn(4, 2, 3, 3, 3), stride=3)
    with pytest.raises(ValueError, match="stride mode"):
        SF.conv3d(x, torch.randn(4, 2, 3, 3, 3), stride=2, stride_mode="nearest")


@pytest.mark.skipif(not spconv_available(), reason="spconv is not installed")
def test_spconv_backend_is_exact_with_several_torch_threads():
    """spconv's CPU kernels race with torch's thread pool; the backend guards them (and restores it)."""
    torch.set_num_threads(2)
    x = random_sparse(16, "spconv", seed=11)
    weight = torch.randn(16, 16, 3, 3, 3)
    reference = at_sites(F.conv3d(dense_of(x).detach(), weight, padding=1), x.coords)
    for _ in range(5):
        torch.testing.assert_close(SF.conv3d(x, weight).features.detach(), reference, atol=ATOL, rtol=1e-4)
    assert torch.get_num_threads() == 2


def _tensors_of(entry) -> list[torch.Tensor]:
    """Tensors held by a cache entry: a coordinate tensor, a kernel map or a backend's prepared pairs."""
    if isinstance(entry, torch.Tensor):
        return [entry]
    fields = getattr(entry, "__dataclass_fields__", {})
    return [value for value in (getattr(entry, name) for name in fields) if isinstance(value, torch.Tensor)]
