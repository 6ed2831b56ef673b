"""The 2D → 3D converter: module tree by name, inflated weights, the conversion report, learnable T,
unsupported layers, and a forward pass of a converted ResNet-18 through both stride conventions.

Every 2D model has random, non-default BatchNorm statistics (or trained ones, for the shared CIFAR-10
checkpoint), so a tensor the converter forgot to carry over keeps the 3D default and differs.
"""

from __future__ import annotations

import copy
import functools
import itertools
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from image2point.inflate import FilterTransform, filter_transform, inflate_weight
from image2point.inflate.converter import (
    ConversionReport,
    InflatedSparseConv3d,
    InflationSettings,
    UnsupportedLayerError,
    build_3d_like,
    convert_2d_to_3d,
    transfer_2d_weights,
)
from image2point.models2d import KNOWN_WEIGHTS, create_model_2d, load_pretrained_2d
from image2point.sparse import SparseTensor
from image2point.inflate.shortcuts import DEFAULT_STRIDED_SHORTCUT
from image2point.sparse.modules import (
    SparseBatchNorm,
    SparseChildrenConv3d,
    SparseConv3d,
    SparseGlobalAvgPool,
    SparseMaxPool3d,
    SparseReLU,
)

SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / ".." / "shared" / "weights"
CIFAR_WEIGHTS = KNOWN_WEIGHTS["cifar_resnet20_cifar10"]
PRETRAINED_CIFAR = "cifar_resnet20_pretrained"

SEED = 0
# Trained-looking BatchNorm: statistics and affine parameters far from their initial 0 / 1.
BN_SCALE_LOW, BN_SCALE_SPAN = 0.5, 1.0
BN_SHIFT_STD = 0.2
MAX_BATCHES_TRACKED = 1000
BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

ARCHITECTURES = [
    pytest.param("resnet18", id="resnet18"),
    pytest.param("resnet50", id="resnet50"),
    pytest.param(PRETRAINED_CIFAR, id=PRETRAINED_CIFAR),
    pytest.param("vgg_small", id="vgg_small"),
]
# (transform, normalize): the fixed transforms the converter applies.
INFLATIONS = [("default", False), ("copy_x", False), ("copy_z", False), ("copy_z_transposed", False),
              ("default", True)]
# Kernel axes x, y, z of a 3D weight [Cout, Cin, K, K, K].
KERNEL_X, KERNEL_Y, KERNEL_Z = -3, -2, -1
# Random sparse input: two samples of a few hundred distinct sites in a small cube.
SPARSE_BATCH = 2
SITES_PER_SAMPLE = 300
CUBE_SIDE = 20



@pytest.fixture(autouse=True, scope="module")
def release_cached_models():
    """The 2D models and conversions are cached for this module only."""
    yield
    _cached_conversion.cache_clear()
    model_2d.cache_clear()


def copied_kernel(weight_2d: torch.Tensor, transform: str) -> torch.Tensor:
    """Index-level reference, independent of the T matrices: a copy transform writes
    W3[..., x, y, z] = W2[..., a, b] with (a, b) two of (x, y, z), so the 3D kernel is the 2D kernel,
    transposed or not, broadcast along the copy axis."""
    k = weight_2d.shape[-1]
    shape = (*weight_2d.shape[:-2], k, k, k)
    if transform == "copy_x":  # W3[x, y, z] = W2[y, z]
        return weight_2d.unsqueeze(KERNEL_X).expand(shape)
    if transform in ("default", "copy_y"):  # W3[x, y, z] = W2[z, x]
        return weight_2d.transpose(-1, -2).unsqueeze(KERNEL_Y).expand(shape)
    if transform == "copy_z":  # W3[x, y, z] = W2[x, y]
        return weight_2d.unsqueeze(KERNEL_Z).expand(shape)
    if transform == "copy_z_transposed":  # W3[x, y, z] = W2[y, x]
        return weight_2d.transpose(-1, -2).unsqueeze(KERNEL_Z).expand(shape)
    raise AssertionError(f"no reference layout for {transform!r}")


def randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(BN_SCALE_LOW + BN_SCALE_SPAN * torch.rand(n, generator=generator))
                module.bias.copy_(BN_SHIFT_STD * torch.randn(n, generator=generator))
                module.running_mean.copy_(BN_SHIFT_STD * torch.randn(n, generator=generator))
                module.running_var.copy_(BN_SCALE_LOW + BN_SCALE_SPAN * torch.rand(n, generator=generator))
                module.num_batches_tracked.fill_(int(torch.randint(1, MAX_BATCHES_TRACKED, (), generator=generator)))


def pretrained_cifar_path() -> Path:
    path = next(iter(sorted(SHARED_WEIGHTS.glob("resnet20-*.th"))), None)
    if path is None:
        pytest.skip(f"no shared CIFAR-10 ResNet-20 checkpoint in {SHARED_WEIGHTS}")
    return path


@functools.cache
def model_2d(architecture: str) -> nn.Module:
    """A 2D model shared by tests that only read it (tests that change a model build their own)."""
    if architecture == PRETRAINED_CIFAR:
        model = create_model_2d("cifar_resnet20")
        load_pretrained_2d(model, pretrained_cifar_path(), weights=CIFAR_WEIGHTS)
        return model
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        model = create_model_2d(architecture)
    randomize_batchnorm(model, torch.Generator().manual_seed(SEED))
    return model


@functools.lru_cache(maxsize=4)
def _cached_conversion(architecture: str, transform: str, normalize: bool, learnable_t: str, stride_mode: str):
    return convert_2d_to_3d(model_2d(architecture), transform, normalize=normalize, learnable_t=learnable_t,
                            stride_mode=stride_mode)


def converted(architecture: str, transform: str = "default", normalize: bool = False, learnable_t: str = "none",
              stride_mode: str = "floor"):
    """A conversion of ``model_2d(architecture)``, a private copy (tests may run, train or change it)."""
    return copy.deepcopy(_cached_conversion(architecture, transform, normalize, learnable_t, stride_mode))


def classifier_keys(architecture: str) -> set[str]:
    model = model_2d(architecture)
    return {key for key in model.state_dict() if key.startswith(model.classifier_name + ".")}


def modules_of(model: nn.Module, kind: type) -> dict[str, nn.Module]:
    return {name: module for name, module in model.named_modules() if isinstance(module, kind)}


# ---------------------------------------------------------------------------------------------------
# 1. Whole networks: the report, the inflated kernels, BatchNorm, module names.


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_report_accounts_for_every_2d_key_exactly_once(architecture):
    report = converted(architecture).report
    inflated = [kernel.name for kernel in report.inflated]
    keys_2d = list(model_2d(architecture).state_dict())
    assert sorted(inflated + report.carried + report.classifier + report.dropped) == sorted(keys_2d)
    assert report.accounted_2d_keys() == set(keys_2d)
    assert report.initialised == []


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_classifier_is_carried_over_and_reported_and_everything_has_a_3d_home(architecture):
    result = converted(architecture)
    head = classifier_keys(architecture)
    assert head, "every architecture here has a classifier"
    assert set(result.report.classifier) == head
    assert result.report.dropped == []
    assert set(result.model.state_dict()) == set(model_2d(architecture).state_dict())
    state_2d, state_3d = model_2d(architecture).state_dict(), result.model.state_dict()
    for key in head:
        assert torch.equal(state_3d[key], state_2d[key]), key


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_module_tree_conversion_leaves_the_classifier_out(architecture):
    model_3d = build_3d_like(model_2d(architecture))
    report = transfer_2d_weights(model_2d(architecture).state_dict(), model_3d)
    assert set(report.dropped) == classifier_keys(architecture)


@pytest.mark.parametrize("transform, normalize", INFLATIONS)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_3d_kernel_is_its_2d_kernel_inflated_by_the_named_transform(architecture, transform, normalize):
    result = converted(architecture, transform, normalize)
    state_3d = result.model.state_dict()
    kernels_2d = {key: value for key, value in model_2d(architecture).state_dict().items() if value.dim() == 4}
    assert {kernel.name for kernel in result.report.inflated} == set(kernels_2d)
    for kernel in result.report.inflated:
        weight_2d = kernels_2d[kernel.name]
        k = weight_2d.shape[-1]
        expected = inflate_weight(weight_2d, filter_transform(transform, k, normalize))
        assert torch.equal(state_3d[kernel.name], expected), kernel.name
        # normalize divides T by K: every copy is the 2D entry times float32(1 / K).
        scale = torch.tensor(1.0 / k if normalize else 1.0, dtype=weight_2d.dtype)
        assert torch.equal(state_3d[kernel.name], copied_kernel(weight_2d, transform) * scale), kernel.name
        assert kernel.shape_2d == tuple(weight_2d.shape)
        assert kernel.shape_3d == (*weight_2d.shape, k)


def test_pretrained_cifar_kernels_come_from_the_checkpoint_file():
    """Read the file directly: the 3D kernels are the stored 2D ones, not a fresh initialisation."""
    stored = torch.load(pretrained_cifar_path(), map_location="cpu", weights_only=True)["state_dict"]
    state_3d = converted(PRETRAINED_CIFAR).model.state_dict()
    checked = 0
    for key, value in stored.items():
        key = key.removeprefix(CIFAR_WEIGHTS.key_prefix)
        if value.dim() == 4:
            assert torch.equal(state_3d[key], copied_kernel(value, "default")), key
            checked += 1
        elif key in state_3d:
            assert torch.equal(state_3d[key], value), key
    assert checked == len(converted(PRETRAINED_CIFAR).report.inflated)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_batchnorm_tensors_are_carried_over_unchanged(architecture):
    result = converted(architecture)
    state_3d = result.model.state_dict()
    batchnorms = modules_of(model_2d(architecture), nn.BatchNorm2d)
    assert batchnorms
    for name, bn_2d in batchnorms.items():
        bn_3d = result.model.get_submodule(name)
        assert isinstance(bn_3d, SparseBatchNorm), name
        assert (bn_3d.eps, bn_3d.momentum) == (bn_2d.eps, bn_2d.momentum), name
        for tensor in BN_TENSORS:
            key = f"{name}.{tensor}"
            assert torch.equal(state_3d[key], bn_2d.state_dict()[tensor]), key
            assert key in result.report.carried


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_3d_modules_have_the_names_and_geometry_of_the_2d_modules(architecture):
    model_3d = converted(architecture).model
    names_3d = dict(model_3d.named_modules())
    convs = modules_of(model_2d(architecture), nn.Conv2d)
    assert convs
    for name, conv_2d in convs.items():
        conv_3d = names_3d[name]
        # Strided 1×1 convs read the children of each coarse site under the default setting.
        strided_1x1 = conv_2d.kernel_size == (1, 1) and conv_2d.stride == (2, 2)
        expected_type = SparseChildrenConv3d if strided_1x1 and DEFAULT_STRIDED_SHORTCUT.value != "center" else SparseConv3d
        assert type(conv_3d) is expected_type, name
        assert (conv_3d.in_channels, conv_3d.out_channels) == (conv_2d.in_channels, conv_2d.out_channels), name
        assert (conv_3d.kernel_size,) * 2 == conv_2d.kernel_size, name
        assert (conv_3d.stride,) * 2 == conv_2d.stride, name
        assert (conv_3d.bias is None) == (conv_2d.bias is None), name
    for name, pool_2d in modules_of(model_2d(architecture), nn.MaxPool2d).items():
        pool_3d = names_3d[name]
        assert isinstance(pool_3d, SparseMaxPool3d), name
        assert (pool_3d.kernel_size, pool_3d.stride) == (pool_2d.kernel_size, pool_2d.stride), name
    for name in modules_of(model_2d(architecture), nn.ReLU):
        assert isinstance(names_3d[name], SparseReLU), name
    for name in modules_of(model_2d(architecture), nn.AdaptiveAvgPool2d):
        assert isinstance(names_3d[name], SparseGlobalAvgPool), name


@pytest.mark.parametrize("name, in_channels, out_channels, stride", [
    ("layer1.0.conv1", 64, 64, 1),
    ("layer2.0.conv1", 64, 128, 2),
    ("layer2.0.downsample.0", 64, 128, 2),
    ("layer2.1.conv1", 128, 128, 1),
    ("layer4.1.conv2", 512, 512, 1),
])
def test_resnet18_convs_keep_torchvision_names_channels_and_strides(name, in_channels, out_channels, stride):
    """Spot checks against torchvision's ResNet-18 layout, not against the 2D model built here."""
    conv_3d = converted("resnet18").model.get_submodule(name)
    assert (conv_3d.in_channels, conv_3d.out_channels, conv_3d.stride) == (in_channels, out_channels, stride)


def test_summary_counts_match_the_report():
    report = converted("vgg_small").report
    summary = report.summary()
    assert f"inflated conv kernels : {len(report.inflated)}" in summary
    assert f"carried over (BN etc.): {len(report.carried)}" in summary
    assert "classifier.0.weight" in summary


# ---------------------------------------------------------------------------------------------------
# 2. Learnable T.


def three_by_three_conv_names(architecture: str) -> list[str]:
    return [name for name, conv in modules_of(model_2d(architecture), nn.Conv2d).items() if conv.kernel_size == (3, 3)]


def one_by_one_conv_names(architecture: str) -> list[str]:
    return [name for name, conv in modules_of(model_2d(architecture), nn.Conv2d).items() if conv.kernel_size == (1, 1)]


def test_shared_t_is_one_instance_for_all_3x3_convs_and_one_parameter():
    model_3d = converted("resnet18", learnable_t="shared").model
    names = three_by_three_conv_names("resnet18")
    convs = [model_3d.get_submodule(name) for name in names]
    assert all(isinstance(conv, InflatedSparseConv3d) for conv in convs)
    shared = convs[0].transform
    assert isinstance(shared, FilterTransform) and shared.kernel_size == 3
    assert all(conv.transform is shared for conv in convs)
    parameters = list(model_3d.named_parameters())
    assert sum(1 for _, parameter in parameters if parameter is shared.transform) == 1
    # The 7x7 stem has a T of its own kernel size.
    stem = model_3d.conv1
    assert isinstance(stem, InflatedSparseConv3d) and stem.transform.kernel_size == 7
    assert stem.transform is not shared
    transforms = [parameter for name, parameter in parameters if name.endswith(".transform")]
    assert len(transforms) == 2


def test_per_conv_t_gives_every_3x3_conv_its_own_instance():
    model_3d = converted("resnet18", learnable_t="per_conv").model
    names = three_by_three_conv_names("resnet18")
    transforms = [model_3d.get_submodule(name).transform for name in names]
    assert len({id(transform) for transform in transforms}) == len(names)
    parameter_ids = {id(parameter) for parameter in model_3d.parameters()}
    assert all(id(transform.transform) in parameter_ids for transform in transforms)


@pytest.mark.parametrize("learnable_t", ["shared", "per_conv"])
def test_1x1_convs_stay_plain_sparse_convs_under_learnable_t(learnable_t):
    result = converted("resnet18", learnable_t=learnable_t)
    names = one_by_one_conv_names("resnet18")
    assert names
    for name in names:
        conv_3d = result.model.get_submodule(name)
        assert isinstance(conv_3d, SparseConv3d) and not isinstance(conv_3d, InflatedSparseConv3d), name
        weight_2d = model_2d("resnet18").get_submodule(name).weight
        assert torch.equal(conv_3d.weight, weight_2d[..., None]), name


@pytest.mark.parametrize("t_init, normalize", [("default", False), ("copy_x", False), ("copy_z", True)])
def test_learnable_t_starts_as_the_named_transform(t_init, normalize):
    result = convert_2d_to_3d(model_2d("vgg_small"), learnable_t="shared", t_init=t_init, normalize=normalize)
    transform = result.model.features[0].transform.transform
    assert torch.equal(transform.detach(), filter_transform(t_init, 3, normalize))


def test_learnable_t_at_initialisation_gives_the_fixed_conversion_kernels():
    learned = converted("resnet18", learnable_t="per_conv").model
    fixed = converted("resnet18").model
    for name in three_by_three_conv_names("resnet18"):
        assert torch.equal(learned.get_submodule(name).conv_weight(), fixed.get_submodule(name).weight), name


def test_random_t_init_differs_from_the_default_transform():
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        result = convert_2d_to_3d(model_2d("vgg_small"), learnable_t="shared", t_init="random")
    transform = result.model.features[0].transform.transform.detach()
    assert transform.shape == filter_transform("default", 3).shape
    assert not torch.allclose(transform, filter_transform("default", 3))
    assert not torch.allclose(transform, filter_transform("default", 3, normalize=True))


def random_sparse_input(channels: int, seed: int = SEED) -> SparseTensor:
    """Two samples of SITES_PER_SAMPLE distinct random sites in a cube of side CUBE_SIDE."""
    generator = torch.Generator().manual_seed(seed)
    coords = []
    for sample in range(SPARSE_BATCH):
        flat = torch.randperm(CUBE_SIDE**3, generator=generator)[:SITES_PER_SAMPLE]
        xyz = torch.stack([flat // CUBE_SIDE**2, flat // CUBE_SIDE % CUBE_SIDE, flat % CUBE_SIDE], 1)
        coords.append(torch.cat([torch.full((SITES_PER_SAMPLE, 1), sample), xyz], 1))
    coords = torch.cat(coords)
    features = torch.randn(coords.shape[0], channels, generator=generator)
    return SparseTensor(features, coords, SPARSE_BATCH, backend="torch")


@pytest.mark.parametrize("learnable_t", ["shared", "per_conv"])
def test_backward_through_layer1_reaches_t_but_not_the_frozen_2d_kernels(learnable_t):
    model_3d = converted("resnet18", learnable_t=learnable_t).model
    layer1 = model_3d.layer1
    out = layer1(random_sparse_input(layer1[0].conv1.in_channels))
    out.features.square().mean().backward()
    convs = [module for module in layer1.modules() if isinstance(module, InflatedSparseConv3d)]
    assert convs
    for conv in convs:
        grad = conv.transform.transform.grad
        assert grad is not None and grad.abs().sum() > 0
        assert "weight_2d" in dict(conv.named_buffers())
        assert not conv.weight_2d.requires_grad and conv.weight_2d.grad is None
    assert all(parameter is not conv.weight_2d for conv in convs for parameter in model_3d.parameters())


@pytest.mark.parametrize("learnable_t", ["shared", "per_conv"])
def test_report_lists_t_as_initialised_and_2d_kernels_as_inflated(learnable_t):
    result = converted("resnet18", learnable_t=learnable_t)
    state_2d = model_2d("resnet18").state_dict()
    transform_names = {f"{name}.transform" for name in modules_of(result.model, FilterTransform)}
    assert len(transform_names) == (2 if learnable_t == "shared" else len(three_by_three_conv_names("resnet18")) + 1)
    assert sorted(result.report.initialised) == sorted(transform_names)
    assert {kernel.name for kernel in result.report.inflated} == {k for k, v in state_2d.items() if v.dim() == 4}
    for name in three_by_three_conv_names("resnet18") + ["conv1"]:
        assert torch.equal(result.model.get_submodule(name).weight_2d, state_2d[f"{name}.weight"]), name
    assert result.report.accounted_2d_keys() == set(state_2d)


# ---------------------------------------------------------------------------------------------------
# 3. transfer_2d_weights on its own.


class SmallNet(nn.Module):
    """conv → BN → ReLU as named attributes of a model root."""

    def __init__(self, channels: int, conv_name: str = "stem"):
        super().__init__()
        self.conv_name = conv_name
        self.add_module(conv_name, nn.Conv2d(3, channels, 3, padding=1, bias=False))
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(getattr(self, self.conv_name)(x)))


def test_transfer_shape_mismatch_raises_value_error_naming_both_keys():
    model_3d = build_3d_like(SmallNet(8))
    state_2d = SmallNet(4, conv_name="conv_a").state_dict()
    with pytest.raises(ValueError) as error:
        transfer_2d_weights(state_2d, model_3d, rename=lambda key: key.replace("conv_a.", "stem."))
    message = str(error.value)
    assert "conv_a.weight" in message and "stem.weight" in message


def test_transfer_shape_mismatch_of_a_carried_tensor_raises_value_error():
    model_3d = build_3d_like(SmallNet(8))
    state_2d = dict(SmallNet(8).state_dict())
    state_2d["bn.running_mean"] = torch.zeros(4)
    with pytest.raises(ValueError, match=r"bn\.running_mean"):
        transfer_2d_weights(state_2d, model_3d)


def test_transfer_reports_unknown_2d_keys_as_dropped():
    net = SmallNet(8)
    state_2d = dict(net.state_dict())
    extras = {"extra.weight": torch.randn(8, 3, 3, 3), "head.bias": torch.randn(5)}
    state_2d.update(extras)
    report = transfer_2d_weights(state_2d, build_3d_like(net))
    assert report.dropped == list(extras)
    assert [kernel.name for kernel in report.inflated] == ["stem.weight"]
    assert report.accounted_2d_keys() == set(state_2d)
    assert report.initialised == []


def test_transfer_reports_3d_tensors_without_a_2d_source_as_initialised():
    net = SmallNet(8)
    randomize_batchnorm(net, torch.Generator().manual_seed(SEED))
    model_3d = build_3d_like(net)
    fresh_bn = copy.deepcopy(model_3d.bn.state_dict())
    state_2d = {key: value for key, value in net.state_dict().items() if not key.startswith("bn.")}
    report = transfer_2d_weights(state_2d, model_3d)
    assert sorted(report.initialised) == sorted(f"bn.{tensor}" for tensor in BN_TENSORS)
    for tensor, value in model_3d.bn.state_dict().items():
        assert torch.equal(value, fresh_bn[tensor]), tensor
    assert torch.equal(model_3d.stem.weight, copied_kernel(net.stem.weight, "default"))


def test_transfer_with_learnable_t_writes_the_2d_kernel_to_weight_2d():
    net = SmallNet(8)
    settings = InflationSettings(learnable_t="per_conv")
    model_3d = build_3d_like(net, settings)
    report = transfer_2d_weights(net.state_dict(), model_3d, settings)
    assert isinstance(report, ConversionReport)
    assert torch.equal(model_3d.stem.weight_2d, net.stem.weight)
    assert report.initialised == ["stem.transform.transform"]


def test_learnable_t_mode_is_validated():
    with pytest.raises(ValueError, match="learnable_t"):
        InflationSettings(learnable_t="everywhere")


# ---------------------------------------------------------------------------------------------------
# 4. Layers the converter cannot map raise UnsupportedLayerError naming the module path.

UNSUPPORTED = [
    pytest.param(nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"), "padding_mode", id="conv-reflect-padding"),
    pytest.param(nn.Conv2d(8, 8, 3, padding=1, dilation=2), "padding", id="dilated-conv-padding-1"),
    pytest.param(nn.Conv2d(8, 8, 3, padding=0), "padding", id="conv-k3-padding-0"),
    pytest.param(nn.Conv2d(8, 8, (3, 1), padding=(1, 0)), "non-square", id="non-square-kernel"),
    pytest.param(nn.Conv2d(8, 8, 3, stride=3, padding=1), "stride 3", id="conv-stride-3"),
    pytest.param(nn.AdaptiveAvgPool2d(2), "global average pool", id="avgpool-2x2"),
    pytest.param(nn.Upsample(scale_factor=2), "Upsample", id="upsample"),
    pytest.param(nn.PixelShuffle(2), "PixelShuffle", id="pixel-shuffle"),
]
BAD_LAYER_PATH = "body.1"


def net_with(layer: nn.Module) -> nn.Sequential:
    """A network whose module ``body.1`` is ``layer``, after convertible layers."""
    body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), layer, nn.ReLU())
    return nn.Sequential(OrderedDict([("stem", nn.Conv2d(3, 8, 3, padding=1)), ("body", body)]))


@pytest.mark.parametrize("layer, reason", UNSUPPORTED)
def test_unsupported_layer_raises_naming_its_module_path(layer, reason):
    with pytest.raises(UnsupportedLayerError) as error:
        convert_2d_to_3d(net_with(layer))
    message = str(error.value)
    assert message.startswith(BAD_LAYER_PATH + ":"), message
    assert reason in message


def test_unsupported_conv_deep_in_a_resnet_is_named_by_its_full_path():
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        model = create_model_2d("cifar_resnet20")
    model.layer3[1].conv2 = nn.Conv2d(64, 64, 3, padding=0, bias=False)
    with pytest.raises(UnsupportedLayerError, match=r"^layer3\.1\.conv2:"):
        build_3d_like(model)
    with pytest.raises(UnsupportedLayerError, match=r"^layer3\.1\.conv2:"):
        convert_2d_to_3d(model)


def test_max_pool_with_padding_other_than_half_kernel_is_rejected():
    with pytest.raises(UnsupportedLayerError, match=r"^body\.1:"):
        build_3d_like(net_with(nn.MaxPool2d(3, 2, padding=0)))


def test_custom_block_inside_a_sequential_is_rejected():
    class ScaledResidual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            return x + 0.5 * self.conv(x)

    with pytest.raises(UnsupportedLayerError, match=r"^body\.1:"):
        build_3d_like(net_with(ScaledResidual()))


def test_named_sequential_children_keep_their_names():
    net = nn.Sequential(OrderedDict([("stem", nn.Conv2d(3, 8, 3, padding=1)), ("bn", nn.BatchNorm2d(8))]))
    result = convert_2d_to_3d(net)
    assert set(result.model.state_dict()) == set(net.state_dict())
    assert result.report.dropped == []


def test_conv_with_same_padding_string_is_converted():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding="same"))
    model_3d = build_3d_like(net)
    assert model_3d[0].kernel_size == 3


# ---------------------------------------------------------------------------------------------------
# 5. Forward through a converted ResNet-18 under both stride conventions.

STAGES = ("layer1", "layer2", "layer3", "layer4")
STRIDE_MODES = ("floor", "window")
STAGE_CHANNELS = (64, 128, 256, 512)
# layer1 keeps the resolution; layer2..4 each halve it.
STAGE_STRIDES = (1, 2, 4, 8)
# Stem conv (stride 2) and max pool (stride 2) before layer1: the 2D ResNet's output stride 32.
TRUNK_STRIDE = 32


def reference_downsample(coords: torch.Tensor, stride_mode: str) -> set[tuple[int, ...]]:
    """Coarse sites by definition: floor(c / 2) ("floor"), or every q with |c - 2q| <= 1 per axis ("window")."""
    sites = set()
    for batch, *xyz in coords.tolist():
        if stride_mode == "floor":
            sites.add((batch, *(c // 2 for c in xyz)))
            continue
        per_axis = [[q for q in ((c - 1) // 2, c // 2, (c + 1) // 2) if abs(c - 2 * q) <= 1] for c in xyz]
        sites.update((batch, *q) for q in itertools.product(*per_axis))
    return sites


def as_site_set(x: SparseTensor) -> set[tuple[int, ...]]:
    return {tuple(row) for row in x.coords.tolist()}


def run_stages(model_3d: nn.Module, x: SparseTensor) -> list[SparseTensor]:
    outputs = []
    with torch.no_grad():
        for stage in STAGES:
            x = getattr(model_3d, stage)(x)
            outputs.append(x)
    return outputs


@pytest.fixture(scope="module")
def stage_outputs() -> dict[str, list[SparseTensor]]:
    """Each stride convention gets its own input tensor (see the coordinate-cache test below)."""
    return {
        mode: run_stages(converted("resnet18", stride_mode=mode).model.eval(), random_sparse_input(STAGE_CHANNELS[0]))
        for mode in STRIDE_MODES
    }


@pytest.mark.parametrize("stride_mode", ["floor", "window"])
def test_resnet18_stages_halve_resolution_and_widen_channels(stage_outputs, stride_mode):
    outputs = stage_outputs[stride_mode]
    assert [x.stride for x in outputs] == list(STAGE_STRIDES)
    assert [x.num_channels for x in outputs] == list(STAGE_CHANNELS)
    assert all(torch.isfinite(x.features).all() for x in outputs)
    assert all(x.batch_size == SPARSE_BATCH for x in outputs)


@pytest.mark.parametrize("stride_mode", ["floor", "window"])
def test_resnet18_stage_sites_follow_the_stride_convention(stage_outputs, stride_mode):
    outputs = stage_outputs[stride_mode]
    sites = as_site_set(random_sparse_input(STAGE_CHANNELS[0]))
    assert as_site_set(outputs[0]) == sites
    for x in outputs[1:]:
        sites = reference_downsample(torch.tensor(sorted(sites)), stride_mode)
        assert as_site_set(x) == sites


def test_window_convention_keeps_more_sites_than_floor(stage_outputs):
    floor, window = stage_outputs["floor"], stage_outputs["window"]
    assert floor[0].num_sites == window[0].num_sites
    for floor_x, window_x in zip(floor[1:], window[1:]):
        assert window_x.num_sites > floor_x.num_sites


def test_resnet18_trunk_from_stem_to_global_pool_has_output_stride_32():
    model_3d = converted("resnet18").model.eval()
    x = random_sparse_input(model_3d.conv1.in_channels)
    with torch.no_grad():
        x = model_3d.maxpool(model_3d.relu(model_3d.bn1(model_3d.conv1(x))))
        x = run_stages(model_3d, x)[-1]
        pooled = model_3d.avgpool(x)
    assert x.stride == TRUNK_STRIDE
    # AdaptiveAvgPool2d(1) returns [B, C, 1, 1] in 2D, and so does its sparse counterpart.
    assert pooled.shape == (SPARSE_BATCH, STAGE_CHANNELS[-1], 1, 1)
    assert torch.isfinite(pooled).all()


def test_one_input_through_floor_then_window_networks_gives_the_window_result():
    floor_layer2 = converted("resnet18", stride_mode="floor").model.eval().layer2
    window_layer2 = converted("resnet18", stride_mode="window").model.eval().layer2
    with torch.no_grad():
        expected = window_layer2(random_sparse_input(STAGE_CHANNELS[0])).features
        shared_input = random_sparse_input(STAGE_CHANNELS[0])
        floor_layer2(shared_input)
        out = window_layer2(shared_input).features
    torch.testing.assert_close(out, expected)
