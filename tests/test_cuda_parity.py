"""CPU against CUDA: the same inputs and the same weights give the same sites, close values and close
gradients on both devices, from kernel maps up to training steps.

Sites and index maps must be identical. Single forward passes and eval-mode gradients are compared in
float32, relative to their largest magnitude (CUDA sums in another order, but in full float32 here: TF32
off). Train mode and training steps are compared in float64: there BatchNorm (whose gradients sum terms
that nearly cancel) and SGD steps amplify float32 reordering to 1e-3..5e-2 of the values, differently on
every CUDA run, while in float64 reordering stays near 1e-13 and a fixed 1e-7 still separates it from any
real error (a wrong pair, a missed site: O(1)). Mixed precision cannot be exact; its distance from float32
is compared with how far float32 moves under perturbations of the half type's size, measured in the test.

Tests that need a GPU carry the ``cuda`` marker (``pytest --device cuda`` selects them). The float64
and mixed-precision comparisons also run on the CPU (the ``device`` fixture): there the compared run
takes the offset-group path (the torch backend's path on CUDA) on two threads, another order of sums
than the per-offset single-thread reference, so the criterion and its threshold are exercised without a
GPU.
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F

from image2point.inflate.converter import InflationSettings
from image2point.models import NetworkConfig, build_network, optimizer_parameters
from image2point.models.pointnet2 import PointNet2Classifier, PointNet2Config, PointNet2Segmenter
from image2point.models.range_segmenter import RangeImageSegmenter
from image2point.sparse import SparseTensor
from image2point.sparse import functional as SF
from image2point.sparse import kernel_map as KM
from image2point.sparse.downsample import downsample_coords
from image2point.sparse.backends import default_backend, torch_backend
from image2point.voxelize import collate_voxels, voxelize

CPU = torch.device("cpu")
# Largest difference over largest magnitude: float32 reordering stays orders of magnitude below this,
# a wrong pair or a missed site does not.
VALUE_RTOL = 1e-4
GRADIENT_RTOL = 1e-3
# The same in float64, in train mode and after training steps. The CPU's two orders of sums (see
# compared_run) give at most 2.4e-12 (gradients of six networks in train mode) and 3.1e-15 (weights after
# three steps), where float32 gives 1.6e-2 and 5.2e-2 (benchmarks/parity_orders.py; against an H200,
# float32 gave 1.6e-2 and 4.8e-3..3.7e-2).
FLOAT64_RTOL = 1e-7
MIN_SCALE = 1e-3
FP16_INIT_SCALE = 2.0**10
# Unit roundoff of the half types: the relative size of the perturbations a mixed-precision step is
# measured against.
UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
DITHER_SEEDS = (0, 1)
# |AMP - float32| against the largest |dithered float32 - float32|; measured on the CPU (sparse convs in
# half): 0.78-0.83 for the update of a step (bf16 and fp16), 0.3-0.9 for the loss. Dropping the
# smallest offset group of each conv (a missed-pairs bug) gives 4.6-14 and 11-95.
AMP_UPDATE_SPREAD_FACTOR = 3.0
AMP_LOSS_SPREAD_FACTOR = 4.0
BATCH = 2
NUM_CLASSES = 5


def assert_parity(compared: torch.Tensor, reference: torch.Tensor, rtol: float = VALUE_RTOL, what: str = "") -> None:
    """max |compared - reference| <= rtol * max |reference| (``reference`` on the CPU), with max |reference|
    taken as at least MIN_SCALE (a gradient that is zero in exact arithmetic, e.g. of a bias before a
    BatchNorm, is rounding noise on both sides)."""
    assert reference.device == CPU, what
    assert compared.shape == reference.shape and compared.dtype == reference.dtype, what
    scale = max(float(reference.detach().abs().max()), MIN_SCALE) if reference.numel() else 1.0
    error = float((compared.detach().cpu() - reference.detach()).abs().max()) if reference.numel() else 0.0
    assert error <= rtol * scale, f"{what}: max |compared - cpu| = {error:.3g}, {error / scale:.3g} of max |cpu|"


def random_coords(seed: int, points: int = 600, extent: int = 24) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for b in range(BATCH):
        spatial = torch.unique(torch.randint(0, extent, (points, 3), generator=generator), dim=0)
        rows.append(torch.cat([torch.full((len(spatial), 1), b), spatial], 1))
    return torch.cat(rows)


def random_tensor(seed: int, channels: int, device: torch.device, dtype: torch.dtype = torch.float32) -> SparseTensor:
    coords = random_coords(seed)
    features = torch.randn(coords.shape[0], channels, generator=torch.Generator().manual_seed(seed + 100), dtype=dtype)
    return SparseTensor(features.to(device), coords.to(device), BATCH)


# Threads of the compared run on the CPU (the reference runs on one): other GEMM blockings.
COMPARED_CPU_THREADS = 2


@contextlib.contextmanager
def compared_run(device: torch.device):
    """Where the run compared with the CPU reference (per offset, one thread) goes: CUDA as it is; on the
    CPU the offset-group path (the torch backend's path on CUDA) on two threads, which sums in another
    order."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch_backend, "BATCHED_OFFSET_DEVICE_TYPES", torch_backend.BATCHED_OFFSET_DEVICE_TYPES | {"cpu"})
        torch.set_num_threads(COMPARED_CPU_THREADS)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------
# Sites and kernel maps: identical.


@pytest.mark.cuda
@pytest.mark.parametrize("search", ["table", "binary"])
@pytest.mark.parametrize("kernel_size,stride,mode", [(3, 1, None), (5, 1, None), (3, 2, "floor"), (2, 2, "floor"),
                                                     (3, 2, "window")])
def test_sites_and_kernel_maps_are_identical(cuda_device, monkeypatch, search, kernel_size, stride, mode):
    if search == "binary":
        monkeypatch.setattr(KM, "TABLE_MIN_CELLS", 0)
        monkeypatch.setattr(KM, "TABLE_CELLS_PER_SITE", 0)
    coords = random_coords(seed=kernel_size + stride)
    results = []
    for device in (CPU, cuda_device):
        on_device = coords.to(device)
        out_coords = on_device if stride == 1 else downsample_coords(on_device, mode)
        results.append((out_coords, KM.build_kernel_map(on_device, out_coords, kernel_size, stride)))
    (cpu_sites, cpu_map), (cuda_sites, cuda_map) = results
    assert cuda_map.in_index.is_cuda and cuda_map.out_index.is_cuda
    assert torch.equal(cuda_sites.cpu(), cpu_sites)
    assert cuda_map.counts == cpu_map.counts
    assert torch.equal(cuda_map.in_index.cpu(), cpu_map.in_index)
    assert torch.equal(cuda_map.out_index.cpu(), cpu_map.out_index)


@pytest.mark.cuda
def test_voxelized_batches_are_identical(cuda_device):
    generator = torch.Generator().manual_seed(0)
    clouds = [torch.rand(5000, 3, generator=generator, dtype=torch.float64) * 4 for _ in range(BATCH)]
    intensity = [torch.rand(5000, 1, generator=generator) for _ in range(BATCH)]
    cpu, cuda = (collate_voxels([voxelize(c.to(device), 0.1, i.to(device)) for c, i in zip(clouds, intensity)])
                 for device in (CPU, cuda_device))
    assert torch.equal(cuda.tensor.coords.cpu(), cpu.tensor.coords)
    assert torch.equal(cuda.point_to_site.cpu(), cpu.point_to_site)
    assert_parity(cuda.tensor.features, cpu.tensor.features, 1e-6, "voxel means")


# ---------------------------------------------------------------------------------------------------
# Sparse ops: close values and gradients.


def _op_outputs(op: str, device: torch.device, stride_mode: str):
    x = random_tensor(3, 8, device)
    features = x.features.requires_grad_()
    weight = torch.randn(12, 8, 3, 3, 3, generator=torch.Generator().manual_seed(4)).to(device).requires_grad_()
    if op == "subm":
        out = SF.conv3d(x, weight).features
    elif op == "strided":
        out = SF.conv3d(x, weight, stride=2, stride_mode=stride_mode).features
    elif op == "inverse":
        coarse = SF.conv3d(x, weight, stride=2, stride_mode=stride_mode)
        out = SF.inverse_conv3d(coarse, weight.transpose(0, 1).contiguous(), x, stride_mode=stride_mode).features
    elif op == "max_pool":
        out = SF.max_pool3d(x, 3, 2, stride_mode).features
    else:
        out = SF.global_avg_pool(SF.conv3d(x, weight))
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(5)).to(device)
    inputs = (features, weight) if op != "max_pool" else (features,)
    return out, torch.autograd.grad((out * probe).sum(), inputs)


@pytest.mark.cuda
@pytest.mark.parametrize("stride_mode", ["floor", "window"])
@pytest.mark.parametrize("op", ["subm", "strided", "inverse", "max_pool", "global_avg_pool"])
def test_sparse_ops_and_their_gradients_agree(cuda_device, op, stride_mode):
    cpu_out, cpu_grads = _op_outputs(op, CPU, stride_mode)
    cuda_out, cuda_grads = _op_outputs(op, cuda_device, stride_mode)
    assert_parity(cuda_out, cpu_out, what=op)
    for index, (cuda_grad, cpu_grad) in enumerate(zip(cuda_grads, cpu_grads)):
        assert_parity(cuda_grad, cpu_grad, GRADIENT_RTOL, f"{op} gradient {index}")


@pytest.mark.cuda
def test_default_backend_on_cuda_is_a_working_one(cuda_device):
    """Whichever backend is chosen for CUDA (spconv only when it is a CUDA build) runs there."""
    backend = default_backend(cuda_device)
    x = random_tensor(6, 4, cuda_device)
    x = SparseTensor(x.features, x.coords, BATCH, backend=backend)
    weight = torch.randn(4, 4, 3, 3, 3, device=cuda_device)
    reference = SF.conv3d(random_tensor(6, 4, CPU), weight.cpu()).features
    assert_parity(SF.conv3d(x, weight).features, reference, what=f"{backend} backend on CUDA")


# ---------------------------------------------------------------------------------------------------
# Networks: the same weights on both devices.


def _network_pair(config: NetworkConfig, device: torch.device):
    torch.manual_seed(0)
    network = build_network(config).network
    # Dropout (the U-Net's, after the authors) draws its masks from each device's own generator, so the
    # two copies would drop different features in train mode; parity is about everything else.
    for module in network.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return network, copy.deepcopy(network).to(device)


def _forward_backward(network, x: SparseTensor):
    logits = network(x)
    logits.to(torch.promote_types(logits.dtype, torch.float32)).square().mean().backward()
    return logits, {name: p.grad for name, p in network.named_parameters() if p.grad is not None}


NETWORKS = {
    "cifar_resnet20_classifier": NetworkConfig(backbone="cifar_resnet20", num_classes=NUM_CLASSES),
    "resnet18_classifier": NetworkConfig(backbone="resnet18", num_classes=NUM_CLASSES),
    "vgg_small_classifier": NetworkConfig(backbone="vgg_small", num_classes=NUM_CLASSES),
    "resnet18_unet_window": NetworkConfig(task="segmentation", backbone="resnet18", in_features=4,
                                          num_classes=NUM_CLASSES, head="unet",
                                          inflation=InflationSettings(stride_mode="window")),
    "cifar_resnet20_linear_segmenter": NetworkConfig(task="segmentation", backbone="cifar_resnet20", in_features=4,
                                                     num_classes=NUM_CLASSES, input_layer="linear", head="linear"),
    "cifar_resnet20_unet": NetworkConfig(task="segmentation", backbone="cifar_resnet20", num_classes=NUM_CLASSES,
                                         head="unet"),
    "learnable_t_per_conv": NetworkConfig(backbone="cifar_resnet20", num_classes=NUM_CLASSES,
                                          inflation=InflationSettings(learnable_t="per_conv")),
}


@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_networks_in_eval_mode_give_the_same_logits_and_gradients(cuda_device, name):
    config = NETWORKS[name]
    on_cpu, on_cuda = _network_pair(config, cuda_device)
    on_cpu.eval()
    on_cuda.eval()
    cpu_logits, cpu_grads = _forward_backward(on_cpu, random_tensor(7, config.in_features, CPU))
    cuda_logits, cuda_grads = _forward_backward(on_cuda, random_tensor(7, config.in_features, cuda_device))
    assert_parity(cuda_logits, cpu_logits, what="logits")
    assert cpu_grads.keys() == cuda_grads.keys() and cpu_grads
    for key in cpu_grads:
        assert_parity(cuda_grads[key], cpu_grads[key], GRADIENT_RTOL, key)


# Max pooling routes a gradient to one of the sites that tie for the maximum, and the VGG has exact
# ties (sites whose whole neighbourhood is a constant row: ReLU zeros shifted by a BatchNorm); another
# order of sums breaks such a tie by one rounding and moves that gradient to a neighbour, in any
# precision (8e-3 of a conv's weight gradient, offset groups against per offset in float64). Its eval
# mode is compared above.
TRAIN_MODE_NETWORKS = sorted(name for name in NETWORKS if name != "vgg_small_classifier")


@pytest.mark.parametrize("name", TRAIN_MODE_NETWORKS)
def test_networks_in_train_mode_give_the_same_logits_gradients_and_statistics(device, name):
    """In float64 (see the module docstring): logits, every parameter's gradient and the BatchNorm
    running statistics after one training forward."""
    config = NETWORKS[name]
    reference, compared = (network.double().train() for network in _network_pair(config, device))
    cpu_logits, cpu_grads = _forward_backward(reference, random_tensor(7, config.in_features, CPU, torch.float64))
    with compared_run(device):
        logits, grads = _forward_backward(compared, random_tensor(7, config.in_features, device, torch.float64))
    assert_parity(logits, cpu_logits, FLOAT64_RTOL, "logits")
    assert cpu_grads.keys() == grads.keys() and cpu_grads
    for key in cpu_grads:
        assert_parity(grads[key], cpu_grads[key], FLOAT64_RTOL, key)
    for (key, cpu_buffer), buffer in zip(reference.state_dict().items(), compared.state_dict().values()):
        if cpu_buffer.is_floating_point():
            assert_parity(buffer, cpu_buffer, FLOAT64_RTOL, f"{key} after a training forward")


@pytest.mark.cuda
@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_pointnet2_gives_the_same_logits_and_gradients(cuda_device, task):
    """In float64: sampling and ball queries compare distances, and a float32 distance one rounding
    away from the radius (or from a tie) would pick other points on one device."""
    torch.manual_seed(0)
    if task == "classification":
        on_cpu = PointNet2Classifier(3, NUM_CLASSES, PointNet2Config.ssg_classification())
    else:
        on_cpu = PointNet2Segmenter(3, NUM_CLASSES, PointNet2Config.ssg_segmentation())
    on_cpu.double().eval()  # farthest point sampling starts at the first point: the same centres everywhere
    on_cuda = copy.deepcopy(on_cpu).to(cuda_device)
    generator = torch.Generator().manual_seed(8)
    xyz = torch.rand(BATCH, 1024, 3, generator=generator, dtype=torch.float64) * 2 - 1
    features = torch.randn(BATCH, 1024, 3, generator=generator, dtype=torch.float64)
    cpu_logits, cpu_grads = _dense_forward_backward(on_cpu, xyz, features)
    cuda_logits, cuda_grads = _dense_forward_backward(on_cuda, xyz.to(cuda_device), features.to(cuda_device))
    assert_parity(cuda_logits, cpu_logits, what="logits")
    for key in cpu_grads:
        assert_parity(cuda_grads[key], cpu_grads[key], GRADIENT_RTOL, key)


def _dense_forward_backward(network, *inputs):
    logits = network(*inputs)
    logits.square().mean().backward()
    return logits, {name: p.grad for name, p in network.named_parameters() if p.grad is not None}


@pytest.mark.cuda
def test_range_image_segmenter_gives_the_same_logits_and_gradients(cuda_device):
    torch.manual_seed(0)
    on_cpu = RangeImageSegmenter("hrnet_w18", num_classes=NUM_CLASSES).eval()
    on_cuda = copy.deepcopy(on_cpu).to(cuda_device)
    images = torch.randn(BATCH, 5, 32, 128, generator=torch.Generator().manual_seed(9))
    cpu_logits, cpu_grads = _dense_forward_backward(on_cpu, images)
    cuda_logits, cuda_grads = _dense_forward_backward(on_cuda, images.to(cuda_device))
    assert_parity(cuda_logits, cpu_logits, what="logits")
    for key in cpu_grads:
        assert_parity(cuda_grads[key], cpu_grads[key], GRADIENT_RTOL, key)


# ---------------------------------------------------------------------------------------------------
# Training steps and mixed precision.


def _train_steps(network, device: torch.device, steps: int, amp_dtype=None,
                 input_noise: tuple[float, torch.Generator] | None = None, in_features: int = 3) -> list[float]:
    """SGD with momentum on random inputs; the loss in the network's dtype (float32 under AMP).

    input_noise: (relative size, generator): every input feature is multiplied by 1 + size·N(0, 1).
    """
    dtype = next(network.parameters()).dtype
    optimizer = torch.optim.SGD(optimizer_parameters(network), lr=0.05, momentum=0.9)
    # fp16 at 2^16 would overflow and skip the first steps; 2^10 takes every one of these.
    scaler = torch.amp.GradScaler(device.type, init_scale=FP16_INIT_SCALE, enabled=amp_dtype is torch.float16)
    network.train()
    losses = []
    for step in range(steps):
        x = random_tensor(10 + step, in_features, CPU, dtype)
        if input_noise is not None:
            size, noise = input_noise
            x = x.replace_features(x.features * (1 + size * torch.randn(x.features.shape, generator=noise, dtype=dtype)))
        x = SparseTensor(x.features.to(device), x.coords.to(device), BATCH)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = network(x)
            targets = torch.randint(NUM_CLASSES, (logits.shape[0],), generator=torch.Generator().manual_seed(step))
            loss = F.cross_entropy(logits.to(dtype), targets.to(device))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
    assert scaler.get_scale() == FP16_INIT_SCALE or amp_dtype is not torch.float16, "a step was skipped"
    return losses


# Training runs on the U-Net segmenter: its BatchNorms see thousands of sites. A classifier head's
# BatchNorm1d over a batch of two shapes is so ill-conditioned that rounding alone turns its gradients.
TRAINED_NETWORK = "cifar_resnet20_unet"


def test_training_steps_reach_the_same_weights(device):
    """Three SGD steps in float64: the same losses and weights (running statistics included)."""
    reference, compared = (network.double() for network in _network_pair(NETWORKS[TRAINED_NETWORK], device))
    cpu_losses = _train_steps(reference, CPU, steps=3)
    with compared_run(device):
        losses = _train_steps(compared, device, steps=3)
    assert losses == pytest.approx(cpu_losses, rel=FLOAT64_RTOL, abs=0)
    for (key, cpu_value), value in zip(reference.state_dict().items(), compared.state_dict().values()):
        if cpu_value.is_floating_point():
            assert_parity(value, cpu_value, FLOAT64_RTOL, key)


def _flat_parameters(network) -> torch.Tensor:
    return torch.cat([p.detach().float().cpu().flatten() for p in optimizer_parameters(network)])


def _step_update(network, device: torch.device, amp_dtype=None,
                 dither: tuple[float, int] | None = None) -> tuple[float, torch.Tensor]:
    """The loss of one training step and the update it made. dither: (relative size, seed): every
    weight and input feature multiplied by 1 + size·N(0, 1) first."""
    input_noise = None
    if dither is not None:
        size, seed = dither
        noise = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for parameter in network.parameters():
                parameter.mul_(1 + size * torch.randn(parameter.shape, generator=noise, dtype=parameter.dtype))
        input_noise = (size, noise)
    start = _flat_parameters(network)
    [loss] = _train_steps(network, device, steps=1, amp_dtype=amp_dtype, input_noise=input_noise)
    return loss, _flat_parameters(network) - start


@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16])
def test_a_mixed_precision_step_follows_float32_within_its_rounding(device, amp_dtype, monkeypatch):
    """|AMP - float32| for the loss and the update of one step, against the largest change of the
    float32 step when its weights and inputs are perturbed at the half type's unit roundoff (seeded, so
    the same in every run). On the CPU the sparse convolutions are made to compute in the half type as
    they do on CUDA (CPU autocast leaves them in float32)."""
    if device.type == "cpu":
        monkeypatch.setattr(torch_backend, "HALF_PRECISION_DEVICE_TYPES", torch_backend.HALF_PRECISION_DEVICE_TYPES | {"cpu"})
    config = NETWORKS[TRAINED_NETWORK]
    reference_loss, reference_update = _step_update(_network_pair(config, CPU)[0], CPU)
    spreads = [_step_update(_network_pair(config, CPU)[0], CPU, dither=(UNIT_ROUNDOFF[amp_dtype], seed))
               for seed in DITHER_SEEDS]
    loss_spread = max(abs(loss - reference_loss) for loss, _ in spreads)
    update_spread = max(float((update - reference_update).norm()) for _, update in spreads)
    with compared_run(device):
        loss, update = _step_update(_network_pair(config, device)[1], device, amp_dtype)
    assert abs(loss - reference_loss) <= AMP_LOSS_SPREAD_FACTOR * loss_spread, (loss, reference_loss, loss_spread)
    distance = float((update - reference_update).norm())
    assert distance <= AMP_UPDATE_SPREAD_FACTOR * update_spread, (distance, update_spread)
