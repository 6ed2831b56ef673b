"""Per-site layers (activations, LayerNorm, GroupNorm), average pooling and per-sample channel gating
against dense references on the present sites, forward and backward."""

import pytest
import torch
import dense_reference
import torch.nn.functional as F
from dense_reference import BACKENDS, at_sites, dense_of
from torch import nn

from image2point.sparse import SparseTensor
from image2point.sparse import functional as SF
from image2point.sparse import modules as SM

ATOL = 1e-5
RTOL = 1e-4
BATCH = 3
CHANNELS = 6


def random_sparse(channels: int = CHANNELS, backend: str = "torch", seed: int = 0) -> SparseTensor:
    # Shifted and scaled, so normalisation has something to remove.
    return dense_reference.random_sparse(channels, backend, seed, batch=BATCH, scale=3.0, shift=1.0)


def assert_same_values_and_gradients(sparse_out, dense_out, inputs):
    dense_reference.assert_same_values_and_gradients(sparse_out, dense_out, inputs, atol=ATOL, rtol=RTOL)


# (sparse module, dense module) built alike; the dense one runs on the [B, C, X, Y, Z] grid.
ACTIVATIONS = {
    "prelu single": lambda cls: cls(),
    "prelu per channel": lambda cls: cls(CHANNELS, init=0.1),
    "leaky relu": lambda cls: cls(0.2),
    "relu6": lambda cls: cls(),
    "silu": lambda cls: cls(),
    "gelu": lambda cls: cls(),
    "gelu tanh": lambda cls: cls(approximate="tanh"),
    "hardswish": lambda cls: cls(),
    "hardsigmoid": lambda cls: cls(),
    "sigmoid": lambda cls: cls(),
    "tanh": lambda cls: cls(),
}
CLASSES = {
    "prelu single": (SM.SparsePReLU, nn.PReLU),
    "prelu per channel": (SM.SparsePReLU, nn.PReLU),
    "leaky relu": (SM.SparseLeakyReLU, nn.LeakyReLU),
    "relu6": (SM.SparseReLU6, nn.ReLU6),
    "silu": (SM.SparseSiLU, nn.SiLU),
    "gelu": (SM.SparseGELU, nn.GELU),
    "gelu tanh": (SM.SparseGELU, nn.GELU),
    "hardswish": (SM.SparseHardswish, nn.Hardswish),
    "hardsigmoid": (SM.SparseHardsigmoid, nn.Hardsigmoid),
    "sigmoid": (SM.SparseSigmoid, nn.Sigmoid),
    "tanh": (SM.SparseTanh, nn.Tanh),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_equals_dense_module_at_present_sites(name):
    sparse_cls, dense_cls = CLASSES[name]
    sparse, dense = ACTIVATIONS[name](sparse_cls), ACTIVATIONS[name](dense_cls)
    dense.load_state_dict(sparse.state_dict())
    x = random_sparse(seed=1)
    out = sparse(x)
    assert out.coords is x.coords
    dense_out = at_sites(dense(dense_of(x)), x.coords)
    torch.testing.assert_close(out.features, dense_out, atol=ATOL, rtol=RTOL)
    # Gradients for the input and for PReLU's weight, if any.
    probe = torch.randn(out.features.shape, generator=torch.Generator().manual_seed(2))
    sparse_grads = torch.autograd.grad((out.features * probe).sum(), (x.features, *sparse.parameters()))
    dense_grads = torch.autograd.grad((dense_out * probe).sum(), (x.features, *dense.parameters()))
    for sparse_grad, dense_grad in zip(sparse_grads, dense_grads, strict=True):
        torch.testing.assert_close(sparse_grad, dense_grad, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("sparse,dense", [
    (SM.SparsePReLU(CHANNELS), nn.PReLU(CHANNELS)),
    (SM.SparseLayerNorm(CHANNELS), nn.LayerNorm(CHANNELS)),
    (SM.SparseGroupNorm(3, CHANNELS), nn.GroupNorm(3, CHANNELS)),
], ids=["prelu", "layer norm", "group norm"])
def test_parameters_are_named_and_shaped_as_torch(sparse, dense):
    assert {k: v.shape for k, v in sparse.state_dict().items()} == {k: v.shape for k, v in dense.state_dict().items()}
    sparse.load_state_dict(dense.state_dict())


def test_layer_norm_normalises_the_channels_of_each_site():
    norm = SM.SparseLayerNorm(CHANNELS, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2, CHANNELS))
        norm.bias.copy_(torch.linspace(-1, 1, CHANNELS))
    x = random_sparse(seed=3)
    out = norm(x)
    # ConvNeXt's channels-last LayerNorm on the dense grid: channels moved last, normalised, moved back.
    dense = dense_of(x).permute(0, 2, 3, 4, 1)
    dense = F.layer_norm(dense, (CHANNELS,), norm.weight, norm.bias, 1e-6).permute(0, 4, 1, 2, 3)
    assert_same_values_and_gradients(out.features, at_sites(dense, x.coords), (x.features, norm.weight, norm.bias))
    with pytest.raises(ValueError, match="channels only"):
        SM.SparseLayerNorm((4, CHANNELS))


def dense_group_norm_on_present_sites(x: SparseTensor, groups, weight, bias, eps) -> torch.Tensor:
    """Each sample's present sites as a [1, C, n] tensor through F.group_norm, rows back in site order."""
    out = torch.empty_like(x.features)
    for b in range(x.batch_size):
        rows = (x.coords[:, 0] == b).nonzero().squeeze(1)
        sample = x.features[rows].t().unsqueeze(0)
        out = out.index_put((rows,), F.group_norm(sample, groups, weight, bias, eps)[0].t())
    return out


@pytest.mark.parametrize("groups", [1, 2, CHANNELS])
def test_group_norm_equals_dense_group_norm_on_present_sites(groups):
    norm = SM.SparseGroupNorm(groups, CHANNELS)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2, CHANNELS))
        norm.bias.copy_(torch.linspace(-1, 1, CHANNELS))
    x = random_sparse(seed=4)
    out = norm(x)
    expected = dense_group_norm_on_present_sites(x, groups, norm.weight, norm.bias, norm.eps)
    assert_same_values_and_gradients(out.features, expected, (x.features, norm.weight, norm.bias))


def test_group_norm_statistics_are_per_sample_and_skip_empty_samples():
    x = random_sparse(seed=5)
    rows = x.coords[:, 0] != 1  # sample 1 has no site
    x = SparseTensor(x.features.detach()[rows], x.coords[rows], BATCH)
    out = SF.group_norm(x, 2)
    for b in (0, 2):
        grouped = out.features[x.coords[:, 0] == b].reshape(-1, 2, CHANNELS // 2)
        torch.testing.assert_close(grouped.mean((0, 2)), torch.zeros(2), atol=1e-5, rtol=0)
        torch.testing.assert_close(grouped.var((0, 2), unbiased=False), torch.ones(2), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="must divide"):
        SF.group_norm(x, 4)


def dense_window_average(x: SparseTensor, kernel_size: int, stride: int, divisor_override=None) -> torch.Tensor:
    """Sum of the dense grid over each window, divided by the number of present sites in it."""
    pad = (kernel_size - 1) // 2
    sums = F.avg_pool3d(dense_of(x), kernel_size, stride, pad, divisor_override=1)
    if divisor_override is not None:
        return sums / divisor_override
    occupancy = dense_of(x.replace_features(torch.ones(x.num_sites, 1)))
    counts = F.avg_pool3d(occupancy, kernel_size, stride, pad, divisor_override=1)
    return sums / counts.clamp(min=1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stride,stride_mode", [(1, "floor"), (2, "floor"), (2, "window")])
@pytest.mark.parametrize("kernel_size", [1, 2, 3, 5])
def test_avg_pool_averages_present_sites(backend, stride, stride_mode, kernel_size):
    x = random_sparse(backend=backend, seed=6)
    out = SF.avg_pool3d(x, kernel_size, stride, stride_mode)
    assert out.stride == stride
    expected = at_sites(dense_window_average(x, kernel_size, stride), out.coords)
    assert_same_values_and_gradients(out.features, expected, (x.features,))


@pytest.mark.parametrize("backend", BACKENDS)
def test_avg_pool_with_a_fixed_divisor(backend):
    x = random_sparse(backend=backend, seed=7)
    out = SM.SparseAvgPool3d(3, 2, "window", divisor_override=27)(x)
    expected = at_sites(dense_window_average(x, 3, 2, divisor_override=27), out.coords)
    assert_same_values_and_gradients(out.features, expected, (x.features,))
    with pytest.raises(ValueError, match="divisor_override"):
        SF.avg_pool3d(x, 3, divisor_override=0)


def plane_of(image: torch.Tensor) -> SparseTensor:
    """A [B, C, H, W] image as a fully occupied one-site-thick plane (z = 0)."""
    batch, _, height, width = image.shape
    b, i, j = torch.meshgrid(torch.arange(batch), torch.arange(height), torch.arange(width), indexing="ij")
    coords = torch.stack([b, i, j, torch.zeros_like(b)], -1).reshape(-1, 4)
    return SparseTensor(image.permute(0, 2, 3, 1).reshape(-1, image.shape[1]), coords, batch)


@pytest.mark.parametrize("pool2d,kernel_size,divisor,size", [
    (nn.AvgPool2d(3, 2, padding=1, count_include_pad=False), 3, None, (7, 8)),
    (nn.AvgPool2d(3, 2, padding=1, count_include_pad=True), 3, 9, (7, 8)),
    (nn.AvgPool2d(2, 2), 2, None, (6, 8)),
    # Odd extents: floor(c / 2) keeps the last, half-full window, as ceil_mode does.
    (nn.AvgPool2d(2, 2, ceil_mode=True), 2, None, (7, 9)),
], ids=["3x3 exclude pad", "3x3 include pad", "2x2 even", "2x2 ceil mode"])
def test_avg_pool_on_a_plane_equals_avg_pool2d(pool2d, kernel_size, divisor, size):
    image = torch.randn(2, 4, *size, generator=torch.Generator().manual_seed(8))
    out = SF.avg_pool3d(plane_of(image), kernel_size, 2, "floor", divisor_override=divisor)
    expected = pool2d(image)
    b, i, j, z = out.coords.unbind(1)
    assert bool((z == 0).all()) and out.num_sites == expected[:, 0].numel()
    torch.testing.assert_close(out.features, expected[b, :, i, j])


@pytest.mark.parametrize("operation,dense_op", [(SF.mul_per_sample, torch.mul), (SF.add_per_sample, torch.add)],
                         ids=["mul", "add"])
@pytest.mark.parametrize("width", [CHANNELS, 1])
def test_per_sample_gate_and_add_broadcast_over_sites(operation, dense_op, width):
    x = random_sparse(seed=9)
    gate = torch.rand(BATCH, width, generator=torch.Generator().manual_seed(10)).requires_grad_()
    out = operation(x, gate)
    dense = dense_op(dense_of(x), gate[:, :, None, None, None])
    assert_same_values_and_gradients(out.features, at_sites(dense, x.coords), (x.features, gate))
    # A gate shaped like a 2D squeeze-and-excitation output, [B, C, 1, 1], is accepted as [B, C].
    torch.testing.assert_close(operation(x, gate[:, :, None, None]).features, out.features)
    with pytest.raises(ValueError, match="batch_size"):
        operation(x, torch.ones(BATCH + 1, CHANNELS))
    with pytest.raises(ValueError, match="batch_size"):
        operation(x, torch.ones(BATCH, CHANNELS + 1))
