"""Sparse ops and networks under ``torch.autocast`` (bf16, fp16) on every device.

A sparse convolution under GPU autocast computes in the autocast dtype, as ``F.conv3d`` does, and sums
its kernel offsets in float32: its error against the float32 result stays close to that of the dense
``conv3d`` under the same autocast (summing in the half type would add one rounding per offset). CPU
autocast leaves sparse convolutions in float32 (slower otherwise); the CPU variants here switch the
half-precision path on for the CPU (``half_precision_sparse``) to test the same code.
"""

import pytest
import torch
import torch.nn.functional as F

from image2point.models import NetworkConfig, build_network, optimizer_parameters
from image2point.sparse import SparseTensor
from image2point.sparse import functional as SF
from image2point.sparse.backends import torch_backend

AMP_DTYPES = [torch.bfloat16, torch.float16]
GRID = (12, 12, 12)
BATCH = 2
CHANNELS = 32
# Sparse error over dense-conv3d error under the same autocast. Measured about 1.15 for bf16 and fp16;
# summing the 27 offsets in the half type instead gives about 1.75.
MAX_ERROR_RATIO = 1.5
# Mean relative error of half-precision results against float32 ones (bf16 keeps 8 bits of mantissa).
HALF_RTOL = {torch.bfloat16: 3e-2, torch.float16: 5e-3}
# More sites than bf16 can count (it holds integers exactly only up to 256).
MANY_SITES = 4000
# Halvings of the loss scale before a finite fp16 step must have happened.
MAX_SCALER_STEPS = 16


@pytest.fixture
def half_precision_sparse(device, monkeypatch):
    """Sparse convolutions follow autocast's dtype on this test's device (the CPU included)."""
    monkeypatch.setattr(torch_backend, "HALF_PRECISION_DEVICE_TYPES",
                        torch_backend.HALF_PRECISION_DEVICE_TYPES | {device.type})


def random_input(seed: int, device: torch.device, channels: int = CHANNELS) -> tuple[SparseTensor, torch.Tensor]:
    """A half-occupied grid and its dense view, the same on every device."""
    generator = torch.Generator().manual_seed(seed)
    coords = (torch.rand((BATCH, *GRID), generator=generator) < 0.5).nonzero()
    features = torch.randn(coords.shape[0], channels, generator=generator)
    x = SparseTensor(features.to(device), coords.to(device), BATCH)
    return x, x.to_dense(GRID)


def at_sites(dense: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    b, i, j, k = coords.unbind(1)
    return dense[b, :, i, j, k]


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.detach().float() - reference.detach()).abs().mean() / reference.detach().abs().mean())


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES)
def test_conv_computes_in_the_autocast_dtype_as_accurately_as_dense_conv3d(amp_dtype, device, half_precision_sparse):
    x, dense = random_input(0, device)
    generator = torch.Generator().manual_seed(1)
    weight = (torch.randn(CHANNELS, CHANNELS, 3, 3, 3, generator=generator) / (CHANNELS * 27) ** 0.5).to(device)
    weight.requires_grad_()
    features = x.features.requires_grad_()
    reference = SF.conv3d(x, weight).features
    with torch.autocast(device.type, dtype=amp_dtype):
        out = SF.conv3d(x, weight).features
        dense_out = at_sites(F.conv3d(dense, weight, padding=1), x.coords)
    assert out.dtype == dense_out.dtype == amp_dtype
    assert relative_error(out, reference) <= MAX_ERROR_RATIO * relative_error(dense_out, reference)

    probe = torch.randn(out.shape, generator=generator).to(device)
    expected_grads = torch.autograd.grad((reference * probe).sum(), (features, weight))
    grads = torch.autograd.grad((out.float() * probe).sum(), (features, weight))
    for grad, expected in zip(grads, expected_grads):
        assert grad.dtype == torch.float32
        assert relative_error(grad, expected) < HALF_RTOL[amp_dtype]


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES)
def test_inverse_conv_under_autocast(amp_dtype, device, half_precision_sparse):
    fine, _ = random_input(2, device, channels=4)
    coarse_coords = SF.coarser_coords(fine, "floor")
    generator = torch.Generator().manual_seed(3)
    coarse_features = torch.randn(coarse_coords.shape[0], 16, generator=generator).to(device)
    coarse = fine.coarser("floor", coarse_coords, coarse_features)
    weight = torch.randn(8, 16, 2, 2, 2, generator=generator).to(device)
    reference = SF.inverse_conv3d(coarse, weight, target=fine).features
    with torch.autocast(device.type, dtype=amp_dtype):
        out = SF.inverse_conv3d(coarse, weight, target=fine).features
    assert out.dtype == amp_dtype
    assert relative_error(out, reference) < HALF_RTOL[amp_dtype]


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES)
def test_cpu_autocast_leaves_sparse_convolutions_in_float32(amp_dtype):
    x, _ = random_input(7, torch.device("cpu"), channels=4)
    weight = torch.randn(8, 4, 3, 3, 3)
    with torch.autocast("cpu", dtype=amp_dtype):
        out = SF.conv3d(x, weight).features
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, SF.conv3d(x, weight).features)


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES)
def test_global_average_of_half_features_is_summed_in_float32(amp_dtype, device):
    """A bf16 running sum stops growing at 512 for these values; CPU index_add_ happens to sum one
    destination in float32 anyway, CUDA's atomics do not."""
    coords = torch.zeros(MANY_SITES, 4, dtype=torch.int64)
    coords[:, 1] = torch.arange(MANY_SITES)
    features = 1 + torch.rand(MANY_SITES, 3, generator=torch.Generator().manual_seed(4))
    x = SparseTensor(features.to(device), coords.to(device), 1)
    mean = SF.global_avg_pool(x.replace_features(x.features.to(amp_dtype)))
    assert mean.dtype == amp_dtype
    torch.testing.assert_close(mean.float().cpu(), features.mean(0, keepdim=True), rtol=1e-2, atol=0)


def tiny_network(task: str, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    head = "unet" if task == "segmentation" else "mlp"
    config = NetworkConfig(task=task, backbone="cifar_resnet20", in_features=3, num_classes=5, head=head)
    return build_network(config).network.to(device)


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES)
@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_network_logits_under_autocast_are_close_to_float32(task, amp_dtype, device, half_precision_sparse):
    network = tiny_network(task, device).eval()
    x, _ = random_input(5, device, channels=3)
    with torch.no_grad():
        reference = network(x)
        with torch.autocast(device.type, dtype=amp_dtype):
            logits = network(x)
    assert logits.dtype == amp_dtype
    assert relative_error(logits, reference) < 2 * HALF_RTOL[amp_dtype]


def test_fp16_steps_with_loss_scaling_skip_overflows_then_update_float32_parameters(device, half_precision_sparse):
    """GradScaler starts at 2^16, where this network's fp16 gradients overflow: such steps are skipped
    (parameters untouched, scale halved) until one is finite and taken."""
    network = tiny_network("classification", device).train()
    parameters = optimizer_parameters(network)
    optimizer = torch.optim.SGD(parameters, lr=0.1)
    scaler = torch.amp.GradScaler(device.type)
    x, _ = random_input(6, device, channels=3)
    targets = torch.tensor([1, 3], device=device)
    for _ in range(MAX_SCALER_STEPS):
        before = [p.detach().clone() for p in parameters]
        scale = scaler.get_scale()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16):
            logits = network(x)
        scaler.scale(F.cross_entropy(logits.float(), targets)).backward()
        assert all(p.grad.dtype == torch.float32 for p in parameters)
        scaler.step(optimizer)
        scaler.update()
        unchanged = all(torch.equal(old, new.detach()) for old, new in zip(before, parameters))
        if scaler.get_scale() < scale:
            assert unchanged, "a step with non-finite gradients must be skipped"
            continue
        assert not unchanged and all(torch.isfinite(p).all() for p in parameters)
        return
    pytest.fail(f"no finite fp16 step within {MAX_SCALER_STEPS} scale halvings")
