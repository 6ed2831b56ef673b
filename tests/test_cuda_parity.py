"""CPU against CUDA: the same inputs and the same weights give the same sites, close values and close
gradients on both devices, from kernel maps up to training steps.

Every test here needs a GPU (``cuda`` marker; ``pytest --device cuda`` selects them). Sites and index
maps must be identical; float results are compared relative to their largest magnitude, since CUDA sums
in another order (atomics, other GEMM kernels) but computes in full float32 here (TF32 off).
"""

from __future__ import annotations

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
from image2point.sparse.backends import default_backend
from image2point.voxelize import collate_voxels, voxelize

pytestmark = pytest.mark.cuda

CPU = torch.device("cpu")
# Largest difference over largest magnitude: float32 reordering stays orders of magnitude below this,
# a wrong pair or a missed site does not.
VALUE_RTOL = 1e-4
GRADIENT_RTOL = 1e-3
# In train mode a parameter gradient can be a sum whose terms nearly cancel (what flows back through a
# train-mode BatchNorm sums to zero over the sites), so its rounding error is relative to the terms, not
# to the result: measured up to 1.6e-3 of max |cpu| (a U-Net BatchNorm bias on an H200).
TRAIN_MODE_GRADIENT_RTOL = 5e-3
# After a few optimizer steps the weights have been through several reordered reductions: measured up
# to 4.8e-3 after three steps on an H200 (the resume test allows the same).
TRAINED_RTOL = 1e-2
MIN_SCALE = 1e-3
FP16_INIT_SCALE = 2.0**10
# bf16 keeps 8 bits of mantissa, fp16 11: the first loss stays within these of float32, and the first
# update points the same way.
AMP_LOSS_RTOL = {torch.bfloat16: 2e-2, torch.float16: 5e-3}
# Measured with CPU autocast: 0.983 (bf16) and 0.998 (fp16).
AMP_MIN_UPDATE_COSINE = {torch.bfloat16: 0.95, torch.float16: 0.99}
BATCH = 2
NUM_CLASSES = 5


def assert_parity(on_cuda: torch.Tensor, on_cpu: torch.Tensor, rtol: float = VALUE_RTOL, what: str = "") -> None:
    """max |cuda - cpu| <= rtol * max |cpu|, with max |cpu| taken as at least MIN_SCALE (a gradient that
    is zero in exact arithmetic, e.g. of a bias before a BatchNorm, is rounding noise on both devices)."""
    assert on_cuda.is_cuda and on_cpu.device == CPU, what
    assert on_cuda.shape == on_cpu.shape and on_cuda.dtype == on_cpu.dtype, what
    scale = max(float(on_cpu.detach().abs().max()), MIN_SCALE) if on_cpu.numel() else 1.0
    error = float((on_cuda.detach().cpu() - on_cpu.detach()).abs().max()) if on_cpu.numel() else 0.0
    assert error <= rtol * scale, f"{what}: max |cuda - cpu| = {error:.3g}, {error / scale:.3g} of max |cpu|"


def random_coords(seed: int, points: int = 600, extent: int = 24) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for b in range(BATCH):
        spatial = torch.unique(torch.randint(0, extent, (points, 3), generator=generator), dim=0)
        rows.append(torch.cat([torch.full((len(spatial), 1), b), spatial], 1))
    return torch.cat(rows)


def random_tensor(seed: int, channels: int, device: torch.device) -> SparseTensor:
    coords = random_coords(seed)
    features = torch.randn(coords.shape[0], channels, generator=torch.Generator().manual_seed(seed + 100))
    return SparseTensor(features.to(device), coords.to(device), BATCH)


# ---------------------------------------------------------------------------------------------------
# Sites and kernel maps: identical.


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


@pytest.mark.parametrize("stride_mode", ["floor", "window"])
@pytest.mark.parametrize("op", ["subm", "strided", "inverse", "max_pool", "global_avg_pool"])
def test_sparse_ops_and_their_gradients_agree(cuda_device, op, stride_mode):
    cpu_out, cpu_grads = _op_outputs(op, CPU, stride_mode)
    cuda_out, cuda_grads = _op_outputs(op, cuda_device, stride_mode)
    assert_parity(cuda_out, cpu_out, what=op)
    for index, (cuda_grad, cpu_grad) in enumerate(zip(cuda_grads, cpu_grads)):
        assert_parity(cuda_grad, cpu_grad, GRADIENT_RTOL, f"{op} gradient {index}")


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
    logits.float().square().mean().backward()
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


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_networks_give_the_same_logits_and_gradients(cuda_device, name, mode):
    config = NETWORKS[name]
    on_cpu, on_cuda = _network_pair(config, cuda_device)
    on_cpu.train(mode == "train")
    on_cuda.train(mode == "train")
    cpu_logits, cpu_grads = _forward_backward(on_cpu, random_tensor(7, config.in_features, CPU))
    cuda_logits, cuda_grads = _forward_backward(on_cuda, random_tensor(7, config.in_features, cuda_device))
    assert_parity(cuda_logits, cpu_logits, what="logits")
    assert cpu_grads.keys() == cuda_grads.keys() and cpu_grads
    gradient_rtol = TRAIN_MODE_GRADIENT_RTOL if mode == "train" else GRADIENT_RTOL
    for key in cpu_grads:
        assert_parity(cuda_grads[key], cpu_grads[key], gradient_rtol, key)
    if mode == "train":
        for (key, cpu_buffer), cuda_buffer in zip(on_cpu.state_dict().items(), on_cuda.state_dict().values()):
            if cpu_buffer.is_floating_point():
                assert_parity(cuda_buffer, cpu_buffer, GRADIENT_RTOL, f"{key} after a training forward")


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


def _train_steps(network, device: torch.device, steps: int, amp_dtype=None) -> list[float]:
    optimizer = torch.optim.SGD(optimizer_parameters(network), lr=0.05, momentum=0.9)
    # fp16 at 2^16 would overflow and skip the first steps; 2^10 takes every one of these.
    scaler = torch.amp.GradScaler(device.type, init_scale=FP16_INIT_SCALE, enabled=amp_dtype is torch.float16)
    network.train()
    losses = []
    for step in range(steps):
        x = random_tensor(10 + step, 3, device)
        targets = torch.randint(NUM_CLASSES, (x.num_sites,), generator=torch.Generator().manual_seed(step))
        targets = targets.to(device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = F.cross_entropy(network(x).float(), targets)
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


def test_training_steps_reach_the_same_weights(cuda_device):
    on_cpu, on_cuda = _network_pair(NETWORKS[TRAINED_NETWORK], cuda_device)
    cpu_losses = _train_steps(on_cpu, CPU, steps=3)
    cuda_losses = _train_steps(on_cuda, cuda_device, steps=3)
    assert cuda_losses == pytest.approx(cpu_losses, rel=TRAINED_RTOL)
    for (key, cpu_value), cuda_value in zip(on_cpu.state_dict().items(), on_cuda.state_dict().values()):
        if cpu_value.is_floating_point():
            assert_parity(cuda_value, cpu_value, TRAINED_RTOL, key)


def _flat_parameters(network) -> torch.Tensor:
    return torch.cat([p.detach().float().cpu().flatten() for p in optimizer_parameters(network)])


@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16])
def test_a_mixed_precision_step_on_cuda_follows_float32_on_cpu(cuda_device, amp_dtype):
    """The loss within the half type's precision, and the update along the float32 one."""
    on_cpu, on_cuda = _network_pair(NETWORKS[TRAINED_NETWORK], cuda_device)
    start = _flat_parameters(on_cpu)
    cpu_loss = _train_steps(on_cpu, CPU, steps=1)
    cuda_loss = _train_steps(on_cuda, cuda_device, steps=1, amp_dtype=amp_dtype)
    assert cuda_loss == pytest.approx(cpu_loss, rel=AMP_LOSS_RTOL[amp_dtype])
    cpu_update, cuda_update = _flat_parameters(on_cpu) - start, _flat_parameters(on_cuda) - start
    assert float(F.cosine_similarity(cuda_update, cpu_update, dim=0)) > AMP_MIN_UPDATE_COSINE[amp_dtype]
